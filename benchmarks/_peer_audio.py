"""The user's microphone for :mod:`benchmarks.voice_peers`: speech and noise in silence.

Every trial gets its own 16 kHz mono int16 WAV: a sound placed at a known onset in
a -60 dBFS noise floor. The sounds:

- *speech*: espeak-ng (:class:`trio_playout.espeak.EspeakTTS`) saying a short
  sentence; leading and trailing silence trimmed, so ``onset``/``end`` are the
  first and last audible sample (above -40 dBFS).
- *babble* (the S9 "noise burst" and "click"): four time-reversed copies of the
  same speech, offset and summed. It has no words (reversed speech is not
  language, a scripted STT gives no transcript) but Silero scores it as speech
  (p >= 0.5 in 21 of 22 windows of a 0.7 s burst, 6-7 of 0.2 s), so a burst is
  long enough to pause the agent. White, brown noise and clicks score below 0.1
  on this model: they would test nothing, since no framework would react.

Why espeak and reversed speech: deterministic, offline, and the same file goes to
every implementation.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 16000
FLOOR_DBFS = -60.0
_EDGE = 10 ** (-40 / 20)  # -40 dBFS: audible edge of a sound

Int16Array = npt.NDArray[np.int16]
FloatArray = npt.NDArray[np.float64]

S8_TEXT = "please stop I have a question"
S10_TEXT = "what time is it"


def _render(text: str) -> FloatArray:
    from trio_playout.espeak import EspeakTTS

    frame = EspeakTTS().render_sync(text, sample_rate=RATE)
    x = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64) / 32768.0
    loud = np.flatnonzero(np.abs(x) >= _EDGE)
    return x[loud[0]: loud[-1] + 1] if len(loud) else x


_cache: dict[str, FloatArray] = {}


def speech(text: str) -> FloatArray:
    """espeak-ng's rendering of ``text`` at 16 kHz, trimmed to its audible part."""
    if text not in _cache:
        _cache[text] = _render(text)
    return _cache[text]


def babble(seconds: float) -> FloatArray:
    """``seconds`` of wordless, speech-like babble (see the module docstring)."""
    rev = speech(S8_TEXT)[::-1]
    n = round(seconds * RATE)
    out = np.zeros(n)
    for k in range(4):
        out += np.roll(rev, k * 3000)[:n]
    out /= 2.0
    ramp = min(80, n // 4)  # 5 ms fades: no click of our own at the edges
    if ramp:
        out[:ramp] *= np.linspace(0, 1, ramp)
        out[-ramp:] *= np.linspace(1, 0, ramp)
    return out


@dataclass(frozen=True)
class TrialAudio:
    path: Path
    onset: float
    end: float
    seconds: float


def place(sound: FloatArray, onset: float, seconds: float, seed: int) -> Int16Array:
    """``sound`` at ``onset`` in ``seconds`` of noise floor, as int16."""
    rng = np.random.default_rng(seed)
    n = round(seconds * RATE)
    x = rng.normal(0.0, 10 ** (FLOOR_DBFS / 20), n)
    i = round(onset * RATE)
    m = min(len(sound), n - i)
    x[i: i + m] += sound[:m]
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def write_wav(path: Path, samples: Int16Array) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(samples.tobytes())


def read_wav(path: str | Path) -> Int16Array:
    """A 16 kHz mono int16 WAV (what :func:`write_wav` writes)."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != RATE or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16 kHz mono int16")
        out: Int16Array = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).copy()
        return out


def make(kind: str, onset: float, out_dir: Path, name: str, seed: int) -> TrialAudio:
    """Write the WAV of one trial: ``kind`` is speech-s8, speech-s10, burst (0.7 s) or click (0.2 s)."""
    if kind == "speech-s8":
        sound = speech(S8_TEXT)
    elif kind == "speech-s10":
        sound = speech(S10_TEXT)
    elif kind == "burst":
        sound = babble(0.7)
    elif kind == "click":
        sound = babble(0.2)
    else:
        raise ValueError(f"unknown sound {kind!r}")
    length = len(sound) / RATE
    seconds = onset + length + 0.5
    path = out_dir / f"{name}.wav"
    write_wav(path, place(sound, onset, seconds, seed))
    return TrialAudio(path, onset, onset + length, seconds)
