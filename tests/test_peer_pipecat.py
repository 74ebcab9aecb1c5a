"""Smoke test of ``python -m benchmarks.peer_pipecat`` (issue 11, the pipecat peer).

A tiny SPEC (one short S8 barge-in, one S9 noise burst, the fast setting) runs in
a subprocess exactly as the harness runs it, and OUT.json must be well formed:
every contract field present with its type, no trial error, and the facts that
do not depend on timing (pipecat stops by clearing and never resumes). No timing
asserts. Skipped without pipecat-ai (an optional extra of the benchmarks).
"""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pipecat", reason="pipecat-ai is not installed (the pipecat benchmark peer needs it)")
np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("espeakng_loader", reason="espeak-ng (extra espeak) makes the user's speech")

from benchmarks._pipecat_record import Played, analyse, decode_frame, encode_frame  # noqa: E402

RATE = 16000
ROOT = Path(__file__).resolve().parent.parent
FIELDS: dict[str, Any] = {
    "id": str, "scenario": str, "vad_decision": (float, type(None)), "stopped": (float, type(None)),
    "stop_kind": (str, type(None)), "played_after_decision": (float, type(None)),
    "resumed": (bool, type(None)), "resumed_at": (float, type(None)),
    "skipped": (float, type(None)), "replayed": (float, type(None)),
    "history_equal": (bool, type(None)), "reply_first_frame": (float, type(None)),
    "replies": int, "error": (str, type(None)),
}


def _speech(text: str) -> Any:
    from trio_playout.espeak import EspeakTTS

    frame = EspeakTTS().render_sync(text, sample_rate=RATE)
    x = np.frombuffer(frame.data, dtype=np.int16).astype(np.float64) / 32768.0
    loud = np.flatnonzero(np.abs(x) >= 0.01)
    return x[loud[0]: loud[-1] + 1]


def _write(path: Path, sound: Any, onset: float, seconds: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 0.001, round(seconds * RATE))  # -60 dBFS floor
    i = round(onset * RATE)
    m = min(len(sound), len(x) - i)
    x[i: i + m] += sound[:m]
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16).tobytes())
    return onset, onset + m / RATE


def _spec(tmp: Path) -> dict[str, Any]:
    words = _speech("please stop I have a question")
    # wordless but speech-like: reversed speech, four copies offset and summed
    rev = words[::-1]
    burst = sum(np.roll(rev, k * 3000)[: round(0.7 * RATE)] for k in range(4)) / 2.0
    s8_on, s8_end = _write(tmp / "s8.wav", words, 1.0, 3.0, 1)
    s9_on, s9_end = _write(tmp / "s9.wav", burst, 1.0, 2.0, 2)
    return {
        "settings": {"name": "fast", "min_interruption_duration": 0.2,
                     "false_interruption_timeout": 2.0, "pause_on_speech_start": False,
                     "vad": {"activation_threshold": 0.5, "min_speech_duration": 0.05,
                             "min_silence_duration": 0.55, "sample_rate": 16000}},
        "agent_text": "Hello there. " + "This sentence keeps the agent talking for a while. " * 4,
        "agent_seconds_per_char": 0.06,
        "trials": [
            {"id": "s8-0", "scenario": "S8", "wav": str(tmp / "s8.wav"), "speak_at": 0.0,
             "onset": s8_on, "end": s8_end, "transcript": "please stop I have a question",
             "duration": 3.0},
            {"id": "s9-0", "scenario": "S9-burst", "wav": str(tmp / "s9.wav"), "speak_at": 0.0,
             "onset": s9_on, "end": s9_end, "transcript": None, "duration": 2.0},
        ],
    }


def test_peer_pipecat_writes_a_well_formed_out(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out_path = tmp_path / "out.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.peer_pipecat", "--spec", str(tmp_path / "spec.json"),
         "--out", str(out_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(out_path.read_text())
    assert out["impl"] == "pipecat"
    assert out["versions"]["pipecat-ai"]
    assert out["settings"]["name"] == "fast"
    assert out["settings"]["forced_differences"]
    assert [t["id"] for t in out["trials"]] == ["s8-0", "s9-0"]
    for trial in out["trials"]:
        for name, kind in FIELDS.items():
            assert name in trial, name
            value = trial[name]
            if isinstance(value, int) and not isinstance(value, bool) and kind == (float, type(None)):
                value = float(value)
            assert isinstance(value, kind), (name, value)
        assert trial["error"] is None, trial["error"]
    s8, s9 = out["trials"]
    # the speech crosses the threshold, pipecat interrupts by clearing, never resumes
    assert s8["vad_decision"] is not None
    assert s8["stop_kind"] == "clear" and s8["stopped"] is not None
    assert s8["stopped"] > s8["vad_decision"]
    assert s8["resumed"] is False and s8["replayed"] == 0.0
    assert s8["played_after_decision"] is not None and s8["played_after_decision"] >= 0.0
    assert s9["history_equal"] is not None  # compared with a run without the burst
    if s9["stopped"] is not None:  # a burst that interrupts costs the rest of the reply
        assert s9["resumed"] is False and s9["history_equal"] is False


def test_frames_name_themselves_and_the_record_reads_a_clear() -> None:
    frame = encode_frame(3, 70000, 24000)
    assert len(frame) == 960 and decode_frame(frame) == (3, 70000 % 32768)
    assert decode_frame(bytes(960)) is None
    # agent reply 1 plays frames 0..9 from t=0, is cleared, then frames 10.. never come;
    # reply 2 (an answer) starts at 1.0
    played = [Played(k * 0.02, (k + 1) * 0.02, 1, k) for k in range(10)]
    played += [Played(1.0 + k * 0.02, 1.02 + k * 0.02, 2, k) for k in range(5)]
    facts = analyse(played, w0=0.0, onset=0.1, trial_end=2.0, vad_decision=0.15, agent_reply=1,
                    agent_frames=100, answer_replies=[2])
    assert facts.stopped == pytest.approx(0.2) and facts.stop_kind == "clear"
    assert facts.resumed is False and facts.replayed == 0.0
    assert facts.skipped == pytest.approx(1.8)  # what would have played until the trial's end
    assert facts.played_after_decision == pytest.approx(0.05)
    assert facts.reply_first_frame == pytest.approx(1.0)
    # the same reply continuing after a gap, one frame replayed: resumed
    played = [Played(k * 0.02, (k + 1) * 0.02, 1, k) for k in range(10)]
    played += [Played(1.0 + k * 0.02, 1.02 + k * 0.02, 1, 9 + k) for k in range(5)]
    facts = analyse(played, w0=0.0, onset=0.1, trial_end=2.0, vad_decision=None, agent_reply=1,
                    agent_frames=100, answer_replies=[])
    assert facts.resumed is True and facts.resumed_at == pytest.approx(1.0)
    assert facts.replayed == pytest.approx(0.02) and facts.skipped == 0.0
    # playing through to the trial's end is no stop
    played = [Played(k * 0.02, (k + 1) * 0.02, 1, k) for k in range(100)]
    facts = analyse(played, w0=0.0, onset=0.1, trial_end=2.0, vad_decision=0.2, agent_reply=1,
                    agent_frames=200, answer_replies=[])
    assert facts.stopped is None and facts.resumed is None
    assert facts.played_after_decision == pytest.approx(1.8)
