"""Smoke test of ``python -m benchmarks.voice_latency``: its cycles and its report.

No timing asserts: the numbers are whatever this machine gives. What is checked is
that every cycle did what it measures (one pause and one resume per barge-in, one
confirmed clear per interrupt, nothing invalid), in virtual time for the cycles
themselves, and, for one tiny real run in subprocesses, that the report has every
row, that intervals are positive (a stop never precedes its decision), that the
summaries are ordered and that the clear comes before ``wait_for_playout()`` returns.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks import _voice_runs as runs
from benchmarks.voice_latency import ROWS, SPECS

ROOT = Path(__file__).resolve().parents[1]
HAVE_SILERO = all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "espeakng_loader"))


def _no_progress(done: int, total: int) -> None:
    assert 0 < done <= total


async def test_pause_cycles_in_virtual_time(autojump_clock: Any) -> None:
    res = await runs.run_pause(6, 1, _no_progress)
    assert res.invalid == 0, res.notes
    assert len(res.metrics["decision_to_pause"]) == 6
    assert len(res.metrics["resume_late"]) == 6
    assert all(v > 0 for v in res.metrics["decision_to_pause"])


async def test_pause_on_start_cycles_in_virtual_time(autojump_clock: Any) -> None:
    res = await runs.run_pause(4, 1, _no_progress, on_start=True)
    assert res.invalid == 0, res.notes
    assert res.params["decision"] == "START_OF_SPEECH"
    assert len(res.metrics["decision_to_pause"]) == 4


async def test_interrupt_cycles_in_virtual_time(autojump_clock: Any) -> None:
    res = await runs.run_interrupt(5, 1, _no_progress)
    assert res.invalid == 0, res.notes
    clear, done = res.metrics["decision_to_clear"], res.metrics["decision_to_playout_done"]
    assert len(clear) == len(done) == 5
    assert all(0 < c <= d for c, d in zip(clear, done, strict=True))


def test_audible_onset_finds_the_first_loud_block() -> None:
    quiet, loud = b"\0\0" * 1600, (b"\xff\x3f" * 1600)  # 0.1 s silence, then 0.1 s of 16383
    assert runs.audible_onset(quiet + loud) == pytest.approx(0.1)
    assert runs.audible_onset(loud) == 0.0


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("voice")
    configs = [name for name in SPECS if not name.startswith("silero") or HAVE_SILERO]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.voice_latency", "--quick", "--n", "8",
         "--configs", ",".join(configs), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "voice_latency.json").read_text(encoding="utf-8"))
    return out, doc


def test_quick_run_structure(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, doc = quick_run
    assert doc["schema"] == 1 and doc["quick"] is True
    env = doc["environment"]
    for key in ("cpu_model", "cpu_count", "python", "versions", "loadavg_at_start", "loadavg_at_end"):
        assert key in env
    for name, cfg in doc["configs"].items():
        assert cfg["status"] == "ok", (name, cfg.get("reason"), cfg.get("traceback"))
        assert cfg["invalid"] == 0, cfg["notes"]
        for metric, values in cfg["metrics"].items():
            summary = cfg["summary"][metric]
            assert summary["n"] == len(values) > 0
            assert summary["min"] <= summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]
    report = (out / "voice_latency.md").read_text(encoding="utf-8")
    for cfg, _metric, label, _judged in ROWS:
        if cfg in doc["configs"]:
            assert label in report


def test_quick_run_intervals_are_causal(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, doc = quick_run
    configs = doc["configs"]
    for name in ("pause", "pause-start"):
        m = configs[name]["metrics"]
        assert len(m["decision_to_pause"]) == 8
        assert all(v > 0 for v in m["decision_to_pause"] + m["frame_to_decision"])
        assert all(v >= 0 for v in m["resume_late"])  # the resume never precedes its timer
    m = configs["interrupt"]["metrics"]
    pairs = zip(m["decision_to_clear"], m["decision_to_playout_done"], strict=True)
    assert all(0 < c <= d for c, d in pairs)
    m = configs["floor"]["metrics"]
    assert all(v > 0 for v in m["yield_to_consumer"] + m["frame_to_decision"])
    for name in ("silero", "silero-start"):
        if name not in configs:
            continue
        m = configs[name]["metrics"]
        assert m["onset_to_pause"], configs[name]["notes"]
        triples = zip(m["onset_to_pause"], m["onset_to_decision"], m["decision_to_pause"], strict=True)
        for total, vad, core in triples:
            assert vad > 0 and core > 0 and total == vad + core
    if "silero" in configs and "silero-start" in configs:
        # pausing at the start of speech is sooner than after 0.5 s of voiced speech
        start, full = configs["silero-start"]["summary"], configs["silero"]["summary"]
        assert start["onset_to_decision"]["max"] < full["onset_to_decision"]["min"]
        assert configs["silero"]["params"]["pauses_per_cycle"].keys() == {"1"}
