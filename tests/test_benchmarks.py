"""Smoke test of the benchmark harness: ``python -m benchmarks --quick`` end to end.

No timing asserts (DESIGN 6: timing belongs in the benchmarks, not in tests). This
checks the harness: every implementation x scenario produced samples or a documented
skip, the JSON has the expected shape, the report and plots were written, and the
plain-asyncio processes never imported trio_asyncio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.scenarios import IMPLS, SCENARIOS
from benchmarks.stats import percentile, summarize

ROOT = Path(__file__).resolve().parents[1]

SAMPLE_KEYS = {
    "wait_ns", "ctx_wait_ns", "ctx_wait_outcome", "tool_stop_ns", "sink_stop_ns",
    "early_return", "ctx_wait_early", "lost_records", "running_at_done", "late_writes",
    "sink_timed_out", "watchdog_fired",
}


def test_stats_percentiles() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    s = summarize([float(x) for x in range(1, 101)])
    assert s is not None
    assert (s.n, s.min, s.max) == (100, 1.0, 100.0)
    assert s.p50 == pytest.approx(50.5)
    assert summarize([]) is None


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str]:
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / "results.json", encoding="utf-8") as fh:
        doc = json.load(fh)
    return out, doc, proc.stdout


def test_outputs_exist(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    out, _, stdout = quick_run
    for name in ("results.json", "report.md", "table.txt", "latency.png", "latency_S1.png", "scale.png"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    assert "interrupt -> wait_for_playout() returns" in stdout
    assert "## Targets" in (out / "report.md").read_text(encoding="utf-8")


def test_json_shape(quick_run: tuple[Path, dict[str, Any], str]) -> None:
    _, doc, _ = quick_run
    assert doc["schema"] == 1
    env = doc["environment"]
    for key in ("cpu_count", "cpu_model", "python", "switchinterval_s", "date_utc"):
        assert key in env
    for pkg in ("trio", "trio-asyncio", "livekit-agents"):
        assert pkg in env["versions"]
    assert doc["verdicts"], "targets were evaluated"
    for v in doc["verdicts"]:
        assert v["status"] in {"met", "missed", "not measured"}


def test_every_configuration_has_samples_or_a_reason(
    quick_run: tuple[Path, dict[str, Any], str],
) -> None:
    _, doc, _ = quick_run
    results = doc["results"]
    for sid in SCENARIOS:
        for impl in IMPLS:
            mine = [r for r in results if r["scenario"] == sid and r["impl"] == impl]
            assert mine, f"{impl}/{sid} missing"
            for r in mine:
                assert r["status"] in {"ok", "skipped"}, (impl, sid, r.get("reason"))
                if r["status"] == "skipped":
                    assert r["reason"], (impl, sid)
                elif sid == "S6":
                    assert r["scale"]["n"] == r["level"]
                else:
                    assert r["samples"], (impl, sid)
                    assert set(r["samples"][0]) == SAMPLE_KEYS
                    assert all(s["wait_ns"] is not None for s in r["samples"])


def test_asyncio_processes_never_imported_trio_asyncio(
    quick_run: tuple[Path, dict[str, Any], str],
) -> None:
    _, doc, _ = quick_run
    measured = [
        r for r in doc["results"]
        if r["impl"] in ("livekit", "livekit-race") and r["status"] == "ok"
    ]
    assert measured
    for r in measured:
        assert r["runtime"] == "asyncio"
        assert r["trio_asyncio_imported"] is False, (r["impl"], r["scenario"])
    bridge_runs = [r for r in doc["results"] if r["impl"] == "bridge" and r["status"] == "ok"]
    assert any(r["trio_asyncio_imported"] for r in bridge_runs)
