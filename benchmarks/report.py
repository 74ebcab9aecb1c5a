"""The console table and the Markdown report.

The headline metric in every row is *interrupt -> SpeechHandle.wait_for_playout()
returns*, summarised as N, min, p50, p90, p99, max and the ratio of p50 and p99
to stock ``livekit`` in the same scenario. The correctness columns count
samples, not events: "early" is how many waits returned while the sink was still
playing; "early: gave up" is how many of those returned because the implementation
stopped waiting for the sink (its grace ran out, ``sink_timed_out``; or livekit's
watchdog fired) while buffered audio played on: flagged, but still early, never
clean; "lost" is the number of expected history records missing; "after done"
is how many samples had speech code running (or writing history) after the wait
returned. Skips and errors are printed with their reasons, never as numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

from benchmarks.analysis import Analysis, Row, floor_summaries
from benchmarks.scenarios import SCENARIOS
from benchmarks.stats import Summary, format_ns, format_ratio

HEADERS = (
    "scenario", "impl", "N", "min", "p50", "p90", "p99", "max", "p50/lk", "p99/lk",
    "sink stop p50", "tool stop p50", "early", "early: gave up", "lost", "after done",
)

#: Upstream pages the report names.
UPSTREAM = (
    ("#5359", "https://github.com/livekit/agents/issues/5359"),
    ("#5700", "https://github.com/livekit/agents/pull/5700"),
    ("#5425", "https://github.com/livekit/agents/pull/5425"),
)


def _cells(r: Row) -> list[str]:
    w: Summary | None = r.wait
    if r.status != "ok" or w is None:
        reason = (r.reason or "").replace("|", "/")
        return [r.scenario, r.impl, str(r.n), f"{r.status}: {reason}"] + [""] * (len(HEADERS) - 4)
    tool = format_ns(r.tool_stop.p50) if r.tool_stop else "-"
    sink = format_ns(r.sink_stop.p50) if r.sink_stop else "-"
    if r.sink_still_playing:
        sink += f" ({r.sink_still_playing} still playing)"
    return [
        r.scenario, r.impl, str(w.n), format_ns(w.min), format_ns(w.p50), format_ns(w.p90),
        format_ns(w.p99), format_ns(w.max), format_ratio(r.ratio_p50), format_ratio(r.ratio_p99),
        sink, tool, f"{r.early[0]}/{r.early[1]}", str(r.early_gave_up), str(r.lost_records),
        f"{r.running_after_done}/{r.n}",
    ]


def _grid(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        for i, c in enumerate(row[: len(widths)]):
            widths[i] = max(widths[i], len(c))
    fmt = "  ".join("{:<" + str(w) + "}" for w in widths)
    lines = [fmt.format(*headers), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*(list(row) + [""] * (len(headers) - len(row)))) for row in rows]
    return "\n".join(lines)


def _md(rows: Sequence[Sequence[str]], headers: Sequence[str]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def _scale_rows(an: Analysis) -> list[list[str]]:
    rows: list[list[str]] = []
    for impl, pts in an.scale.items():
        for p in pts:
            rows.append([
                impl, str(p["n"]), format_ns(cast(float, p["all_done_ns"])),
                format_ns(cast(float, p["per_conversation_ns"])),
                f"{cast(float, p['bytes_per_conversation']) / 1024:.0f} KiB",
                f"{cast(float, p['setup_s']):.1f} s",
                str(p["early_returns"]), str(p["running_at_done"]),
            ])
    return rows


SCALE_HEADERS = (
    "impl", "N", "all done", "per conversation", "peak RSS / conversation", "setup",
    "early", "running at done",
)


def _link_upstream(text: str) -> str:
    """Markdown links for the upstream issue and PR numbers in ``text``."""
    for name, url in UPSTREAM:
        text = text.replace(name, f"[{name}]({url})")
    return text


def _extra_rows(an: Analysis) -> list[list[str]]:
    """Secondary metrics: the tool's own wait (S4), tool stop, watchdog, grace flags."""
    rows: list[list[str]] = []
    for r in an.rows:
        if r.n == 0:
            continue
        ctx = "-"
        if r.ctx_wait is not None:
            outcomes = ", ".join(f"{k} {v}" for k, v in sorted(r.ctx_outcomes.items()))
            ctx = f"p50 {format_ns(r.ctx_wait.p50)}, max {format_ns(r.ctx_wait.max)} ({outcomes})"
        tool = (
            f"p50 {format_ns(r.tool_stop.p50)}, max {format_ns(r.tool_stop.max)}"
            if r.tool_stop else "-"
        )
        sink = (
            f"p50 {format_ns(r.sink_stop.p50)}, max {format_ns(r.sink_stop.max)}"
            if r.sink_stop else "-"
        )
        rows.append([
            r.scenario, r.impl, ctx, f"{r.ctx_early[0]}/{r.ctx_early[1]}", tool, sink,
            f"{r.watchdog[0]}/{r.watchdog[1]}" if r.watchdog[1] else "-",
            f"{r.sink_timed_out[0]}/{r.sink_timed_out[1]}" if r.sink_timed_out[1] else "-",
            str(r.late_writes),
        ])
    return rows


EXTRA_HEADERS = (
    "scenario", "impl", "tool's ctx.wait_for_playout()", "ctx wait early",
    "interrupt -> tool stopped", "interrupt -> sink stopped", "5 s watchdog fired",
    "sink_timed_out", "late history writes",
)


def console_table(an: Analysis) -> str:
    parts = [
        "interrupt -> wait_for_playout() returns (per scenario; ratios are to stock livekit)",
        _grid([_cells(r) for r in an.rows], HEADERS),
    ]
    if an.scale or an.scale_skips:
        parts += ["", "S6 scale", _grid(_scale_rows(an), SCALE_HEADERS)]
        for impl, skips in an.scale_skips.items():
            for s in skips:
                parts.append(f"  {impl}: {s}")
    if an.verdicts:
        parts += ["", "targets"]
        parts += [f"  [{v.status:^12}] {v.target}: {v.detail}" for v in an.verdicts]
    return "\n".join(parts)


def _env_lines(env: Mapping[str, object]) -> list[str]:
    versions = cast(Mapping[str, object], env.get("versions", {}))
    return [
        f"- date (UTC): {env.get('date_utc')}",
        f"- CPU: {env.get('cpu_count')} x {env.get('cpu_model')} "
        f"({env.get('cpu_usable')} usable)",
        f"- platform: {env.get('platform')}",
        f"- Python {env.get('python')}, sys.getswitchinterval() = {env.get('switchinterval_s')}",
        "- " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]


def _floor_lines(results: Sequence[Mapping[str, object]], an: Analysis) -> list[str]:
    s1 = next((r for r in results if r.get("scenario") == "S1" and r.get("impl") == "trio-native"
               and r.get("level") is None), None)
    floors = floor_summaries(s1)
    if not floors:
        return []
    row = an.row("S1", "trio-native")
    names = {"two_hop": "bare trio: `Event.set()` -> a task wakes and sets an event -> "
                        "the waiter returns (two task steps)",
             "cancel_exit": "bare trio: cancel a nursery whose child sleeps -> the nursery exited"}
    rows = [[names.get(kind, kind), str(sm.n), format_ns(sm.min), format_ns(sm.p50),
             format_ns(sm.p90), format_ns(sm.p99), format_ns(sm.max)]
            for kind, sm in floors.items()]
    if row is not None and row.wait is not None:
        w = row.wait
        rows.insert(0, ["trio-native S1 (above)", str(w.n), format_ns(w.min), format_ns(w.p50),
                        format_ns(w.p90), format_ns(w.p99), format_ns(w.max)])
    return [
        "", "## The floor under S1 on this machine", "",
        "Measured by the trio-native S1 worker after its series, in the same process and "
        "after the same idle as an S1 sample (the interrupt offset). A loop that slept "
        "runs its next few hundred microseconds on cold caches, so these rows, not zero, are "
        "what S1 is compared with.",
        "", _md(rows, ["window", "N", "min", "p50", "p90", "p99", "max"]),
    ]


def markdown_report(
    an: Analysis,
    env: Mapping[str, object],
    settings: Mapping[str, object],
    results: Sequence[Mapping[str, object]],
) -> str:
    lines = ["# Interrupt benchmarks: livekit, livekit-race, trio-native, bridge", ""]
    lines += ["## Environment", "", *_env_lines(env)]
    if settings.get("quick"):
        how = f"quick (a smoke test: up to {settings.get('jobs')} configurations at a time)"
    else:
        how = (
            "default: S1, S2, S4, S7 one configuration at a time on an otherwise idle "
            f"machine, then S3, S5 and S8 up to {settings.get('jobs')} at a time beside one "
            "S6 level at a time"
        )
    lines += [
        f"- run: {how}; each configuration in its own process (forked from a fork server "
        "that preloaded livekit-agents; never trio_asyncio in a plain asyncio process); "
        f"wall {cast(float, settings.get('wall_s', 0.0)):.0f} s",
        *(
            [f"- **under load** (`--load {settings.get('load')}`): "
             f"{settings.get('load_description')}, started once for the whole run, beside "
             "every implementation alike"]
            if settings.get("load", "none") != "none" else []
        ),
        "",
        "*sink stop* is when the audio actually stopped, as the sink recorded it, in every "
        "implementation: at the clear for a sink that confirms at once, 150 ms later for the "
        "avatar (it plays on until the clear reaches it, then stops and confirms), and, for "
        "a sink that never confirms (the clear never arrives), when its buffered audio ran "
        "out. Every sink buffers at most 0.2 s ahead of playback (trio_playout's "
        "RealtimeAudioSink default; bridge.testing.FakeAudioSink(buffer=0.2) for livekit "
        "and the bridge), except in S8, where the sink took the whole reply.",
        "",
        "## interrupt -> `wait_for_playout()` returns",
        "",
        "Each sample: `perf_counter_ns()` right before `interrupt()`, and right after the "
        "external waiter's `wait_for_playout()` returned; warm-up discarded; gc collected then "
        "disabled. *early* = the wait returned while the sink was still playing; *early: "
        "gave up* = of those, the returns where the implementation stopped waiting for the "
        "sink (its grace ran out: `sink_timed_out`; or livekit's 5 s watchdog fired) while "
        "buffered audio played on. They are flagged, but they are early returns, not clean "
        "ones; *lost* = expected history records missing; *after done* = samples with "
        "speech code running or writing history after the wait returned.",
        "",
        _md([_cells(r) for r in an.rows], HEADERS),
        "",
        "## Other metrics",
        "",
        _md(_extra_rows(an), EXTRA_HEADERS),
    ]
    lines += _floor_lines(results, an)
    if an.scale or an.scale_skips:
        lines += ["", "## S6 scale", "", _md(_scale_rows(an), SCALE_HEADERS), ""]
        for impl, skips in an.scale_skips.items():
            lines += [f"- {impl}: {s}" for s in skips]
    lines += ["", "## Targets", ""]
    lines += [f"- **{v.status}**: {v.target}. {v.detail}" for v in an.verdicts]
    lines += ["", "## Scenarios", ""]
    lines += [f"- **{s.id}**: {_link_upstream(s.title)}" for s in SCENARIOS.values()]
    lines += ["", "livekit-race is the wait that PR [#5700](" + dict(UPSTREAM)["#5700"] + ") "
              "(and [#5425](" + dict(UPSTREAM)["#5425"] + ")) proposed for issue [#5359]("
              + dict(UPSTREAM)["#5359"] + "); the maintainers rejected it."]
    notes = [
        (str(r.get("impl")), str(r.get("scenario")), n)
        for r in results
        for n in cast(list[str], r.get("notes") or [])
    ]
    if notes:
        lines += ["", "## Notes from the workers", ""]
        seen: set[str] = set()
        for impl, sc, n in notes:
            key = f"{impl}: {n}"
            if key not in seen:
                seen.add(key)
                lines.append(f"- {impl} ({sc}): {n}")
    errors = [r for r in results if r.get("status") == "error"]
    if errors:
        lines += ["", "## Errors", ""]
        for r in errors:
            lines.append(f"- {r.get('impl')}/{r.get('scenario')}: {r.get('reason')} "
                         f"(log: {r.get('log')})")
    lines += ["", "Plots: `latency.png`, `latency_S1.png`, `scale.png`.", ""]
    return "\n".join(lines)
