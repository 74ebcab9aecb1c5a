"""The voice demo's script and its audio: live from espeak-ng, or the recorded copies.

The demo needs speech for both sides: the agent's replies (with word timings, so the
heard text can be cut at the right word) and the user's microphone (a question, a
short "hmm" and a long "hmmm" without words, a barge-in). With the optional ``espeak`` extra it is
synthesized live (:class:`~trio_playout.espeak.EspeakTTS`); without it the demo plays
the copies shipped in ``trio_playout/data/``: 16 kHz mono WAV files and
``script.json`` (the texts and the agent's word timings). Nothing is downloaded.

The copies were made once with ``python -m trio_playout._demo_data`` (it needs the
``espeak`` extra) and committed; running it again rewrites them (espeak-ng's output
may differ by a few samples from run to run, so the files may not be byte-identical).
"""

from __future__ import annotations

import json
import re
import sys
import wave
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import trio

from ._audio import AudioFrame
from ._models import TTS, SynthesizedAudio, WordTiming

RATE = 16000  # the recorded copies' rate (the VAD's rate)
AGENT_VOICE, AGENT_WPM = "en-us+f3", 175
USER_VOICE, USER_WPM = "en+m3", 165


@dataclass(frozen=True)
class Line:
    """One thing said in the script. ``words``: what a speech-to-text hears (None: no words)."""

    name: str
    text: str
    words: str | None


QUESTION = Line("user_question", "What should I see in Paris tomorrow?",
                "What should I see in Paris tomorrow?")
HMM = Line("user_hmm", "Hmm.", None)  # a short sound the VAD hears (0.3 s of voice), no words
HUM = Line("user_hum", "Hmmmmm.", None)  # a long thinking "hmmm" (0.9 s of voice), no words
BARGE_IN = Line("user_barge_in", "Wait, what about London?", "Wait, what about London?")
REPLY_PARIS = Line("agent_paris", "Start with the Louvre in the morning, then walk along the Seine "
                   "to Notre Dame, have lunch in the Latin Quarter, and end the day at the Eiffel Tower.",
                   None)
REPLY_LONDON = Line("agent_london", "London is cloudy today, so take an umbrella to the British Museum.",
                    None)
USER_LINES = (QUESTION, HMM, HUM, BARGE_IN)
AGENT_LINES = (REPLY_PARIS, REPLY_LONDON)


def espeak_available() -> bool:
    """Whether the espeak-ng engine loads (the ``espeak`` extra or a system library)."""
    try:
        from .espeak import EspeakTTS

        EspeakTTS(AGENT_VOICE, AGENT_WPM)
    except Exception:
        return False
    return True


# -- the recorded copies ------------------------------------------------------------------
def _data_dir() -> Path:
    return Path(str(resources.files("trio_playout"))) / "data"


def read_wav(path: Path) -> AudioFrame:
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: 16-bit PCM expected")
        return AudioFrame(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())


def write_wav(path: Path | str, frame: AudioFrame) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(frame.num_channels)
        w.setsampwidth(2)
        w.setframerate(frame.sample_rate)
        w.writeframes(frame.data)


@dataclass(frozen=True)
class Voices:
    """Audio for one run of the demo: the user's clips and the agent's TTS."""

    user: Mapping[str, AudioFrame]  # line name -> 16 kHz mono audio
    tts: TTS
    kind: str  # "espeak" or "recorded"


def recorded_voices() -> Voices:
    """The shipped copies (no espeak needed)."""
    folder = _data_dir()
    script = json.loads((folder / "script.json").read_text(encoding="utf-8"))
    user = {line.name: read_wav(folder / f"{line.name}.wav") for line in USER_LINES}
    clips: dict[str, tuple[AudioFrame, tuple[WordTiming, ...]]] = {}
    for line in AGENT_LINES:
        words = tuple(WordTiming(*w) for w in script["words"][line.name])
        clips[line.text] = (read_wav(folder / f"{line.name}.wav"), words)
    return Voices(user, RecordedTTS(clips), "recorded")


def espeak_voices() -> Voices:
    """Live espeak-ng for the agent (streamed, real word timings) and the user (rendered now)."""
    from .espeak import EspeakTTS

    user_tts = EspeakTTS(USER_VOICE, USER_WPM)
    user = {line.name: user_tts.render_sync(line.text, sample_rate=RATE) for line in USER_LINES}
    return Voices(user, EspeakTTS(AGENT_VOICE, AGENT_WPM), "espeak")


class RecordedTTS:
    """The TTS protocol over recorded sentences: each known text plays its recording.

    Frames of ``frame_duration`` carry the word timings that start in them, as a
    streaming TTS's would. A text it has no recording for (never in the demo's
    script) gets silence of a plausible length, so it cannot crash the demo.
    """

    def __init__(self, clips: Mapping[str, tuple[AudioFrame, tuple[WordTiming, ...]]],
                 frame_duration: float = 0.02) -> None:
        self._clips = {text.strip(): clip for text, clip in clips.items()}
        self.frame_duration = frame_duration
        self.sample_rate = RATE

    def _clip(self, text: str) -> tuple[AudioFrame, tuple[WordTiming, ...]]:
        found = self._clips.get(text.strip())
        if found is not None:
            lead = len(text) - len(text.lstrip())  # timings index the stripped text
            return found[0], tuple(WordTiming(w.start, w.end, w.start_char + lead, w.end_char + lead)
                                   for w in found[1])
        spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        words = tuple(WordTiming(0.3 * i, 0.3 * (i + 1), s, e) for i, (s, e) in enumerate(spans))
        return AudioFrame.silence(0.3 * len(spans), sample_rate=RATE), words

    async def synthesize(self, text: str) -> AsyncIterator[SynthesizedAudio]:
        audio, words = self._clip(text)
        n = round(self.frame_duration * audio.sample_rate)
        pending = list(words)
        total = audio.samples_per_channel
        await trio.lowlevel.checkpoint()
        for start in range(0, total, n):
            end = min(total, start + n)
            end_t = end / audio.sample_rate
            due = tuple(w for w in pending if w.start < end_t)
            pending = pending[len(due):]
            yield SynthesizedAudio(AudioFrame(audio.data[2 * start:2 * end], audio.sample_rate), due)


def regenerate(folder: Path | None = None) -> None:
    """Write the recorded copies with espeak-ng (run once; needs the ``espeak`` extra)."""
    from .espeak import EspeakTTS

    folder = folder or Path(__file__).resolve().parent / "data"
    folder.mkdir(exist_ok=True)
    user_tts, agent_tts = EspeakTTS(USER_VOICE, USER_WPM), EspeakTTS(AGENT_VOICE, AGENT_WPM)
    for line in USER_LINES:
        write_wav(folder / f"{line.name}.wav", user_tts.render_sync(line.text, sample_rate=RATE))
    words: dict[str, list[list[float]]] = {}
    for line in AGENT_LINES:
        audio, timings = agent_tts.render_words_sync(line.text, sample_rate=RATE)
        write_wav(folder / f"{line.name}.wav", audio)
        words[line.name] = [[round(w.start, 4), round(w.end, 4), w.start_char, w.end_char] for w in timings]
    script = {
        "made_with": f"espeak-ng through espeakng-loader; agent voice {AGENT_VOICE} at {AGENT_WPM} wpm, "
                     f"user voice {USER_VOICE} at {USER_WPM} wpm; resampled to {RATE} Hz mono",
        "texts": {line.name: line.text for line in (*USER_LINES, *AGENT_LINES)},
        "words": words,
    }
    (folder / "script.json").write_text(json.dumps(script, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    regenerate(Path(sys.argv[1]) if len(sys.argv) > 1 else None)
