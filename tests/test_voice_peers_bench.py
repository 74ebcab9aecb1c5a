"""Smoke test of ``python -m benchmarks.voice_peers --quick`` (issue 11's S8/S9/S10).

Runs the real harness once (every implementation whose peer module exists, each in its
own process, two at a time, about 50 s on the real clock) and checks the report's
structure and that the records make sense: every trial of every configuration is
there, times are ordered (onset <= VAD decision <= stop), trio-native stops on the
barge-in, resumes the false interruption without skipping or replaying audio and
with history unchanged, and answers the S10 turn exactly once. No latency bound is
asserted: the machine is shared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("livekit.agents")
try:
    from trio_playout.espeak import EspeakTTS

    EspeakTTS()
except Exception as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"espeak-ng unavailable: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("voice_peers")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.voice_peers", "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text(encoding="utf-8"))


def test_files_and_structure(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, doc = quick_run
    assert (out / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text(encoding="utf-8")
    assert "## Setting `fast`" in md and "S8 onset -> stopped" in md and "S10 t1 -> first answer frame" in md
    assert doc["run"]["quick"] is True and doc["environment"]["cpu_count"]
    for impl in ("trio", "livekit", "bridge"):
        assert f"{impl}/fast" in doc["results"], sorted(doc["results"])
        assert not doc["results"][f"{impl}/fast"].get("skipped"), doc["results"][f"{impl}/fast"]
    assert "trio+pos/fast" in doc["results"]
    for key, res in doc["results"].items():
        if res.get("skipped"):
            assert isinstance(res["skipped"], str) and res["skipped"]
            continue
        ids = [t["id"] for t in res["trials"]]
        assert ids == [t["id"] for t in res["spec_trials"]], key
        assert key in doc["summary"]


def test_records_are_sane(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _out, doc = quick_run
    for key, res in doc["results"].items():
        if res.get("skipped"):
            continue
        spec = {t["id"]: t for t in res["spec_trials"]}
        for t in res["trials"]:
            s = spec[t["id"]]
            assert t["scenario"] == s["scenario"]
            if t.get("error"):
                continue
            if t.get("vad_decision") is not None:
                assert t["vad_decision"] >= s["onset"] - 0.05, (key, t)
            if t.get("stopped") is not None and t.get("vad_decision") is not None and t["scenario"] == "S8":
                assert t["stopped"] >= t["vad_decision"], (key, t)
                assert t["stop_kind"] in ("pause", "clear")
            if t.get("resumed_at") is not None:
                assert t["resumed_at"] > t["stopped"], (key, t)


def test_trio_native_behaviour(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _out, doc = quick_run
    for key in ("trio/fast", "trio+pos/fast"):
        by = {t["scenario"]: t for t in doc["results"][key]["trials"]}
        assert by["S8"]["error"] is None and by["S8"]["stopped"] is not None, by["S8"]
        assert by["S8"]["stop_kind"] == "pause"
        burst = by["S9-burst"]
        assert burst["stopped"] is not None and burst["resumed"] is True, burst
        assert burst["skipped"] == 0.0 and burst["replayed"] == 0.0
        assert burst["history_equal"] is True
    s10 = next(t for t in doc["results"]["trio/fast"]["trials"] if t["scenario"] == "S10")
    assert s10["replies"] == 1 and s10["reply_first_frame"] > s10["transcript_at"], s10
    for key in ("livekit/fast", "bridge/fast"):
        s10 = next(t for t in doc["results"][key]["trials"] if t["scenario"] == "S10")
        assert s10["error"] is None and s10["replies"] == 1, (key, s10)


def test_report_only_renders_the_same_report_from_results_json(
    quick_run: tuple[Path, dict[str, Any]], tmp_path: Path,
) -> None:
    out, _doc = quick_run
    for name in ("results.json", "report.md"):
        (tmp_path / name).write_bytes((out / name).read_bytes())
    (tmp_path / "report.md").write_text("stale", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.voice_peers", "--report-only", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the run's own environment is kept, so the report comes out as it was written
    assert (tmp_path / "report.md").read_text(encoding="utf-8") == (out / "report.md").read_text(
        encoding="utf-8")
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "results.json").read_text(encoding="utf-8") == (out / "results.json").read_text(
        encoding="utf-8")
