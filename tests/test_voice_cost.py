"""Smoke test of ``python -m benchmarks.voice_cost`` (issue 11's S6-voice) and its parts.

Runs the real benchmark once in a tiny configuration (K = 1..2, 0.6 s of audio per
conversation, a lag bound nobody misses) in a subprocess, which runs the livekit
side in its own process, and checks the report's structure: the three sides
(trio-native, trio-native with a SileroBatcher, livekit) searched K the same way
over the same number of windows, the comparisons and the batching section are
there, and the batched model's outputs equal the unbatched ones. The
K search and the verdict are checked on made-up trials. No timing asserts: the
machine is shared (the older piece-by-piece smoke test is in ``test_silero.py``).
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

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")

from benchmarks import voice_cost as vc  # noqa: E402

SECONDS = 0.6
WINDOWS_PER_CONVERSATION = int(SECONDS / 0.02) * 320 // 512  # 30 frames of 320 samples -> 18 windows


def _trial(k: int, ok: bool) -> vc.Trial:
    return vc.Trial(k, 10, 1.0, 2.0, 3.0, 0.0 if ok else 0.5, False, ok, 0.1)


def test_search_doubles_then_bisects() -> None:
    tried: list[int] = []

    def run(k: int) -> vc.Trial:
        tried.append(k)
        return _trial(k, k <= 5)

    held, trials = vc.search(run, max_k=1024)
    assert held == 5
    assert tried == [1, 2, 4, 8, 6, 5]
    assert [t.k for t in trials] == tried


def test_search_stops_at_max_k() -> None:
    held, trials = vc.search(lambda k: _trial(k, True), max_k=2)
    assert held == 2 and [t.k for t in trials] == [1, 2]


def test_judge_late_and_growing() -> None:
    on_time = [[(0.032 * (n + 1), 0.001) for n in range(100)]]
    trial = vc.judge(1, on_time, 3.2, 0.032, cpu_util=0.1, proc_cpu_util=0.2, proc_cpu_s=0.01)
    assert trial.ok and not trial.growing and trial.late_fraction == 0.0 and trial.windows == 100
    assert trial.cpu_per_window_us == pytest.approx(100.0)
    # lag climbing 5 ms per window: the last second is far behind the second second
    drifting = [[(0.032 * (n + 1), 0.005 * n) for n in range(100)]]
    trial = vc.judge(1, drifting, 3.2, 0.032, cpu_util=0.1, proc_cpu_util=0.2, proc_cpu_s=0.01)
    assert trial.growing and not trial.ok


def test_same_microphone_bytes_on_both_sides() -> None:
    pcm = vc.pcm16(np.linspace(-1.0, 1.0, 16000, dtype=np.float32))
    offsets = vc.frame_offsets(3, pcm)
    assert offsets == vc.frame_offsets(3, pcm)  # deterministic per K: the livekit process gets the same
    assert all(o % vc.FRAME_BYTES == 0 for o in offsets)
    assert len(vc.frame_at(pcm, offsets[0], 1000)) == vc.FRAME_BYTES  # looped
    assert vc.decided_lag(0.064, 10.0, 9.0) == pytest.approx(1.0 - 0.08)  # completed by the 4th frame


def test_batched_model_matches_unbatched() -> None:
    from benchmarks import _silero_batch
    from trio_playout.silero import new_session

    signal, _ = vc._signal()
    doc = _silero_batch.run(new_session(), signal, batches=(1, 2, 4), windows=8, min_calls=3, check_steps=12)
    assert doc["matched"] and doc["max_abs_diff"] <= 1e-5 and doc["state_max_abs_diff"] <= 1e-5
    assert [c["batch"] for c in doc["checks"]] == [1, 2, 4]
    assert [c["windows"] for c in doc["checks"]] == [12, 24, 48]
    assert [r["batch"] for r in doc["rows"]] == [0, 1, 2, 4]
    for row in doc["rows"]:
        assert row["calls"] >= 3 and row["windows"] == row["calls"] * max(row["batch"], 1)
        assert set(row["cpu_us"]) >= {"n", "min", "p50", "p99", "max", "mean"}
    assert "| 4 | 48 |" in "\n".join(_silero_batch.markdown_section(doc))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    pytest.importorskip("livekit.plugins.silero")
    out = tmp_path_factory.mktemp("voice_cost")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.voice_cost", "--quick", "--seconds", str(SECONDS), "--max-k", "2",
         "--max-lag", "10", "--windows", "20", "--warmup", "5", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "voice_cost.json").read_text(encoding="utf-8")), proc.stdout


def test_side_by_side_structure(tiny_run: tuple[Path, dict[str, Any], str]) -> None:
    out, doc, stdout = tiny_run
    assert doc["run"]["quick"] is True and doc["run"]["max_k"] == 2
    assert doc["window_us"]["n"] == 20
    lk = doc["livekit"]
    assert "held" in lk, lk
    assert lk["trio_imported"] is False  # its own process, plain asyncio
    batched = doc["batched"]
    assert (batched["max_batch"], batched["max_wait"]) == (16, 0.002) and batched["held"] == 2
    for t in batched["trials"]:
        extra = t["extra"]
        assert extra["batches"] > 0 and 1.0 <= extra["mean_batch"] <= extra["largest_batch"] <= 2
    for trials in (doc["trials"], batched["trials"], lk["trials"]):
        assert [t["k"] for t in trials] == [1, 2]
        assert [t["windows"] for t in trials] == [k * WINDOWS_PER_CONVERSATION for k in (1, 2)]
        for t in trials:
            assert t["ok"] and t["lag_max_ms"] >= t["lag_p99_ms"] >= t["lag_p50_ms"]
            assert t["proc_cpu_util"] > 0 and t["cpu_per_window_us"] > 0
    assert set(lk["trials"][0]["extra"]) >= {"inference_p50_ms", "inference_p99_ms"}
    assert doc["held"] == lk["held"] == 2
    comp = doc["comparison"]
    assert comp["trio_k"] == comp["livekit_k"] == 2 and comp["ratio"] == 1.0
    assert comp["same_model_file"] is True
    assert lk["plugin"]["options"]["activation_threshold"] == 0.5
    assert lk["plugin"]["options"]["deactivation_threshold"] == pytest.approx(0.35)
    assert lk["plugin"]["onnxruntime"]["intra_op_num_threads"] == 1
    assert doc["batch"]["matched"] is True
    assert [r["batch"] for r in doc["batch"]["rows"]] == [0, 1, 2, 4, 8, 16, 32, 64]
    assert set(doc["loadavg"]) >= {"start", "trio", "batched", "livekit", "batch", "end"}
    bc = doc["batched_comparison"]
    assert (bc["batched_k"], bc["trio_k"], bc["livekit_k"]) == (2, 2, 2)
    assert bc["vs_trio"] == bc["vs_livekit"] == 1.0
    assert "ratio 1.00x" in stdout and "batched/unbatched 1.00x" in stdout
    md = (out / "voice_cost.md").read_text(encoding="utf-8")
    for heading in ("## Side by side", "## trio-native trials", "## trio-native, batched (",
                    "## livekit trials", "## Batching the model", "What the plugin forces differently",
                    "**Batched, trio-native"):
        assert heading in md, heading
    assert "| trio-native, batched (`SileroBatcher`, max_batch 16, max_wait 2 ms) | 2 |" in md


def test_a_batched_trial_runs_and_counts() -> None:
    signal = np.zeros(16000 * 2, dtype=np.float32)
    trial = vc.run_trial(3, signal, seconds=0.5, max_lag=10.0, batch=(2, 0.002))
    assert trial.k == 3 and trial.windows == 3 * int(0.5 / 0.032)
    assert trial.extra["largest_batch"] <= 2 and trial.extra["batches"] >= trial.windows / 2
