"""The benchmark harness: its accounting, its plots, and ``python -m benchmarks --quick``.

No timing asserts (timing belongs in the benchmarks; tests prove behaviour). This
checks the harness: a wait that returns before the audio stopped is counted as early,
also when the implementation's grace gave up on a deaf sink (sample flags, report and
results.json); the plots show every curve; every implementation x scenario produced
samples or a documented skip, the JSON has the expected shape, the report and plots
were written, and the plain-asyncio processes never imported trio_asyncio.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

import benchmarks.model
from benchmarks import impl_trio, plots
from benchmarks.analysis import analyse, summary
from benchmarks.cli import parse_args
from benchmarks.model import Probe, Sample
from benchmarks.report import console_table, markdown_report
from benchmarks.scenarios import IMPLS, SCENARIOS
from benchmarks.stats import percentile, summarize

ROOT = Path(__file__).resolve().parents[1]

SAMPLE_KEYS = {
    "wait_ns", "ctx_wait_ns", "ctx_wait_outcome", "tool_stop_ns", "sink_stop_ns",
    "early_return", "ctx_wait_early", "lost_records", "running_at_done", "late_writes",
    "sink_timed_out", "watchdog_fired", "early_gave_up",
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


def test_trio_s1_worker_measures_the_bare_trio_floor_and_the_report_shows_it(
    quick_run: tuple[Path, dict[str, Any], str],
) -> None:
    out, doc, _ = quick_run
    (s1,) = [r for r in doc["results"] if r["scenario"] == "S1" and r["impl"] == "trio-native"]
    assert set(s1["floor"]) == {"two_hop", "cancel_exit"}
    for values in s1["floor"].values():
        assert len(values) == len(s1["samples"])  # quick N is below the floor's cap
        assert all(isinstance(v, int) and v > 0 for v in values)
    # other implementations measure no floor
    assert all(not r.get("floor") for r in doc["results"] if r is not s1)
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "## The floor under S1 on this machine" in report
    (verdict,) = [v for v in doc["verdicts"] if v["target"].startswith("trio-native S1")]
    assert "two-hop floor" in verdict["detail"]


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


# --- a return at the grace while a deaf sink still plays is early, not clean -----------

S = 1_000_000_000


def _sample(wait_s: float, sink_stop_s: float | None, *, timed_out: bool | None = None,
            watchdog: bool | None = None) -> dict[str, object]:
    return Sample(
        wait_ns=round(wait_s * S),
        sink_stop_ns=None if sink_stop_s is None else round(sink_stop_s * S),
        early_return=sink_stop_s is None or sink_stop_s > wait_s,
        sink_timed_out=timed_out,
        watchdog_fired=watchdog,
    ).as_dict()


def _result(scenario: str, impl: str, samples: list[dict[str, object]]) -> dict[str, object]:
    return {"scenario": scenario, "impl": impl, "level": None, "status": "ok",
            "samples": samples, "notes": []}


def _deaf_run() -> list[dict[str, object]]:
    """S8 as measured: the sink buffered the whole reply and played on 7 s after the
    interrupt; livekit's watchdog ends its wait at 5 s, the graces at 2 s. The samples
    are written the way results.json files before ``early_gave_up`` were."""
    def old(sample: dict[str, object]) -> dict[str, object]:
        return {k: v for k, v in sample.items() if k != "early_gave_up"}

    return [
        _result("S8", "livekit", [old(_sample(5.0, 6.0, watchdog=True)) for _ in range(3)]),
        _result("S8", "livekit-race", [old(_sample(3e-5, 6.0, watchdog=False)) for _ in range(3)]),
        _result("S8", "trio-native", [old(_sample(2.0, 6.0, timed_out=True)) for _ in range(3)]),
        _result("S8", "bridge", [old(_sample(2.0, None, timed_out=True, watchdog=False))
                                 for _ in range(3)]),
        # S3: the 0.2 s buffer ran out long before the grace: late, but not early
        _result("S3", "trio-native", [_sample(2.0, 0.25, timed_out=True) for _ in range(3)]),
        # an early return the implementation does not own up to
        _result("S3", "bridge", [_sample(2.0, 2.5, timed_out=False, watchdog=False)] * 3),
    ]


def test_return_at_the_grace_while_audio_plays_is_counted_early() -> None:
    an = analyse(_deaf_run())
    rows = {(r.scenario, r.impl): r for r in an.rows}
    assert rows["S8", "trio-native"].early == (3, 3)
    assert rows["S8", "trio-native"].early_gave_up == 3
    assert rows["S8", "bridge"].early_gave_up == 3  # still playing when we stopped watching
    assert rows["S8", "livekit"].early_gave_up == 3  # the watchdog gave up
    assert rows["S8", "livekit-race"].early == (3, 3)
    assert rows["S8", "livekit-race"].early_gave_up == 0  # it just raced: not flagged
    assert rows["S3", "trio-native"].early == (0, 3)
    assert rows["S3", "trio-native"].early_gave_up == 0  # timed out, but the audio had stopped
    assert rows["S3", "bridge"].early_gave_up == 0


def test_results_json_summary_counts_early_and_gave_up_per_scenario_and_impl() -> None:
    by = {(e["scenario"], e["impl"]): e for e in summary(analyse(_deaf_run()))}
    assert by["S8", "trio-native"]["early"] == 3
    assert by["S8", "trio-native"]["early_gave_up"] == 3
    assert by["S8", "trio-native"]["clean"] == 0
    assert by["S8", "trio-native"]["sink_timed_out"] == 3
    assert by["S3", "trio-native"]["clean"] == 3
    assert by["S8", "livekit"]["watchdog_fired"] == 3


def test_report_shows_the_early_returns_and_the_verdicts_count_them() -> None:
    results = _deaf_run()
    an = analyse(results)
    md = markdown_report(an, {"versions": {}}, {"wall_s": 1.0}, results)
    header = next(line for line in md.splitlines() if line.startswith("| scenario | impl | N"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    assert "early: gave up" in cols
    row = next(line for line in md.splitlines() if line.startswith("| S8 | trio-native |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[cols.index("early")] == "3/3"
    assert cells[cols.index("early: gave up")] == "3"
    assert "early: gave up" in console_table(an)
    verdicts = {v.target.split(":")[0]: v for v in an.verdicts}
    assert verdicts["S8 trio-native"].status == "met"  # early, but flagged
    assert "returned before the audio stopped: 3/3 (3 when the grace or watchdog gave up)" in (
        verdicts["S8 trio-native"].detail
    )
    assert verdicts["S3 bridge"].status == "missed"  # early and not flagged


def test_sample_flags_a_return_at_the_grace_before_the_audio_stopped() -> None:
    p = Probe(t_interrupt=0, t_wait_returned=2 * S, t_sink_stopped=6 * S)
    s = p.finish(lost_records=0, running_at_done=0, late_writes=0, sink_timed_out=True)
    assert s.early_return is True and s.early_gave_up is True
    p = Probe(t_interrupt=0, t_wait_returned=2 * S, t_sink_stopped=S // 4)
    s = p.finish(lost_records=0, running_at_done=0, late_writes=0, sink_timed_out=True)
    assert s.early_return is False and s.early_gave_up is False


@pytest.mark.parametrize(("sid", "early"), [("S3", False), ("S8", True)])
async def test_trio_worker_sees_the_deaf_sink_play_on_past_the_grace(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, sid: str, early: bool
) -> None:
    # the worker stamps perf_counter_ns; in virtual time, stamp trio's clock instead
    def virtual_ns() -> int:
        return round(trio.current_time() * S)

    monkeypatch.setattr(benchmarks.model, "now_ns", virtual_ns)
    monkeypatch.setattr(impl_trio, "now_ns", virtual_ns)
    sc = SCENARIOS[sid]
    current = impl_trio._Current()
    async with impl_trio.conversation(sc, current, 1) as conv:
        sample = await impl_trio.one_sample(conv, sc, sc.observe(False))
    assert sample.sink_timed_out is True
    assert sample.wait_ns is not None and sample.sink_stop_ns is not None
    assert sample.wait_ns == pytest.approx(2 * S, rel=0.01)  # the grace
    assert sample.early_return is early
    assert sample.early_gave_up is early
    if early:  # 8 s of speech interrupted 1 s in: the buffered rest plays 7 s
        assert sample.sink_stop_ns == pytest.approx(7 * S, rel=0.05)


# --- plots --------------------------------------------------------------------------------


def _plot_results() -> list[dict[str, object]]:
    same = [_sample(0.151, 0.150) for _ in range(5)]
    return [
        _result("S2", "livekit", same), _result("S2", "trio-native", same),
        _result("S2", "bridge", same),
        _result("S4", "livekit", [_sample(0.65, 0.15)]),  # one sample
        _result("S4", "trio-native", [_sample(0.151, 0.15)]),
    ]


def test_plots_show_single_samples_distinguish_coinciding_curves_and_fit_titles() -> None:
    import matplotlib.pyplot as plt

    fig = plots.latency_figure(_plot_results(), ["S4", "S2"])  # S4 at the left edge
    try:
        fig.canvas.draw()
        s4, s2 = fig.axes[0], fig.axes[1]
        # one-sample CDFs: a marker on the sample, not a lone invisible point
        for line in s4.get_lines():
            assert line.get_marker() not in (None, "None", "", " "), line.get_label()
            assert len(line.get_xdata()) >= 2, line.get_label()
        # coinciding curves: each implementation has its own dash pattern and marker
        styles = {(line.get_linestyle(), line.get_marker()) for line in s2.get_lines()}
        assert len(styles) == 3
        legend = s2.get_legend()
        assert legend is not None and "coincide" in legend.get_title().get_text()
        # no clipped titles: every title lies inside the figure
        box = fig.bbox
        renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
        for ax in (s2, s4):
            ext = ax.title.get_window_extent(renderer)
            assert ext.x0 >= box.x0 and ext.x1 <= box.x1, ax.title.get_text()
        assert "\n" in s4.title.get_text()  # the long S4 title was wrapped
    finally:
        plt.close(fig)


# --- text users can see -----------------------------------------------------------------------


def test_cli_help_and_report_name_no_internal_documents(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    help_text = capsys.readouterr().out
    assert "bench-results" in help_text  # where the output goes
    results = _deaf_run()
    md = markdown_report(analyse(results), {"versions": {}}, {"wall_s": 1.0}, results)
    for text in (help_text, md, console_table(analyse(results))):
        for hidden in ("issue 4", "DESIGN", "section 3"):
            assert hidden not in text
    assert "[#5359](https://github.com/livekit/agents/issues/5359)" in md
    assert "[#5700](https://github.com/livekit/agents/pull/5700)" in md


def test_load_option_plans_and_runs_the_busy_neighbour() -> None:
    """``--load``: one busy-loop process for the whole run; ``shared`` pins it and every
    worker to the same CPU, the other modes leave the workers unpinned."""
    import os
    import time

    from benchmarks._proc import LOAD_MODES, BusyLoad
    from benchmarks.cli import plan

    assert parse_args([]).load == "none"
    with pytest.raises(SystemExit):
        parse_args(["--load", "bogus"])
    last = max(os.sched_getaffinity(0))
    for mode in LOAD_MODES:
        flat, chains = plan(parse_args(["--load", mode, "--scenario", "S1,S6", "--impl", "trio-native"]))
        cpus = {c.cpus for c in flat} | {c.cpus for ch in chains.values() for c in ch}
        assert cpus == ({(last,)} if mode == "shared" else {None}), mode

    with BusyLoad("none") as load:
        assert load._proc is None
    with BusyLoad("shared") as load:
        proc = load._proc
        assert proc is not None and proc.poll() is None
        assert os.sched_getaffinity(proc.pid) == {last}
        # it burns CPU: its utime grows while we sleep
        def utime() -> int:
            with open(f"/proc/{proc.pid}/stat", encoding="ascii") as fh:
                return int(fh.read().rsplit(")", 1)[1].split()[11])
        before = utime()
        time.sleep(0.3)
        assert utime() > before
    assert proc.poll() is not None  # killed and reaped on exit
