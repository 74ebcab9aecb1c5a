"""Turn the workers' raw results into summaries, ratios and target verdicts.

Only measured samples are summarised; a configuration that was skipped or
failed carries its reason into the report instead of a number. Every target is
evaluated against the numbers of *this* run and reported as met, missed or not
measured - never assumed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

from benchmarks.model import gave_up_early
from benchmarks.stats import Summary, format_ns, summarize

BASELINE = "livekit"
MS = 1_000_000

Result = Mapping[str, object]


def samples_of(result: Result) -> list[dict[str, object]]:
    raw = result.get("samples") or []
    return cast("list[dict[str, object]]", raw)


def metric_values(result: Result, metric: str) -> list[float]:
    """All non-None values of an integer metric over a configuration's samples."""
    out: list[float] = []
    for s in samples_of(result):
        v = s.get(metric)
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
    return out


def count_true(result: Result, metric: str) -> tuple[int, int]:
    """(samples where the flag is True, samples where it was observed)."""
    hits = seen = 0
    for s in samples_of(result):
        v = s.get(metric)
        if isinstance(v, bool):
            seen += 1
            hits += int(v)
    return hits, seen


def count_gave_up_early(result: Result) -> int:
    """Samples whose wait returned while the audio still played because the
    implementation stopped waiting for the sink (grace or watchdog): early returns
    the handle owns up to (``sink_timed_out``), still early. Computed from the
    sample's flags, so results.json files from before ``early_gave_up`` work too."""
    return sum(
        1
        for s in samples_of(result)
        if gave_up_early(s.get("early_return"), s.get("sink_timed_out"), s.get("watchdog_fired"))
    )


def sum_int(result: Result, metric: str) -> int:
    total = 0
    for s in samples_of(result):
        v = s.get(metric)
        if isinstance(v, int) and not isinstance(v, bool):
            total += v
    return total


@dataclass
class Row:
    """One (scenario, implementation) line of the main table."""

    scenario: str
    impl: str
    status: str
    reason: str | None
    wait: Summary | None
    sink_stop: Summary | None
    tool_stop: Summary | None
    ctx_wait: Summary | None
    ctx_outcomes: dict[str, int]
    sink_still_playing: int
    early: tuple[int, int]
    #: of ``early``: returns at the grace or the watchdog while the audio played on
    early_gave_up: int
    ctx_early: tuple[int, int]
    lost_records: int
    running_after_done: int
    late_writes: int
    watchdog: tuple[int, int]
    sink_timed_out: tuple[int, int]
    n: int
    ratio_p50: float | None = None
    ratio_p99: float | None = None


def make_row(result: Result) -> Row:
    ctx_outcomes: dict[str, int] = {}
    for s in samples_of(result):
        o = s.get("ctx_wait_outcome")
        if isinstance(o, str):
            ctx_outcomes[o] = ctx_outcomes.get(o, 0) + 1
    still = sum(
        1 for s in samples_of(result) if s.get("sink_stop_ns") is None and s.get("wait_ns") is not None
    )
    return Row(
        scenario=str(result["scenario"]),
        impl=str(result["impl"]),
        status=str(result.get("status")),
        reason=cast("str | None", result.get("reason")),
        wait=summarize(metric_values(result, "wait_ns")),
        sink_stop=summarize(metric_values(result, "sink_stop_ns")),
        tool_stop=summarize(metric_values(result, "tool_stop_ns")),
        ctx_wait=summarize(metric_values(result, "ctx_wait_ns")),
        ctx_outcomes=ctx_outcomes,
        sink_still_playing=still,
        early=count_true(result, "early_return"),
        early_gave_up=count_gave_up_early(result),
        ctx_early=count_true(result, "ctx_wait_early"),
        lost_records=sum_int(result, "lost_records"),
        running_after_done=sum(
            1
            for s in samples_of(result)
            if (cast(int, s.get("running_at_done") or 0) + cast(int, s.get("late_writes") or 0)) > 0
        ),
        late_writes=sum_int(result, "late_writes"),
        watchdog=count_true(result, "watchdog_fired"),
        sink_timed_out=count_true(result, "sink_timed_out"),
        n=len(samples_of(result)),
    )


@dataclass
class Verdict:
    """One target: met, missed, or not measured, and why."""

    target: str
    status: str  # "met" | "missed" | "not measured"
    detail: str


@dataclass
class Analysis:
    rows: list[Row] = field(default_factory=list)
    scale: dict[str, list[dict[str, object]]] = field(default_factory=dict)
    scale_skips: dict[str, list[str]] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)

    def row(self, scenario: str, impl: str) -> Row | None:
        for r in self.rows:
            if r.scenario == scenario and r.impl == impl:
                return r
        return None


def analyse(results: Sequence[Result], *, sink_grace_s: float = 2.0) -> Analysis:
    an = Analysis()
    for res in results:
        if res.get("scenario") == "S6":
            impl = str(res["impl"])
            scale = res.get("scale")
            done_before = scale.get("done_before_interrupt", 0) if isinstance(scale, dict) else 0
            if res.get("status") == "ok" and isinstance(scale, dict) and done_before:
                an.scale_skips.setdefault(impl, []).append(
                    f"N={res.get('level')}: invalid, {done_before} conversations had already "
                    "finished playing before the interrupt (setup slower than the audio)"
                )
            elif res.get("status") == "ok" and isinstance(scale, dict):
                an.scale.setdefault(impl, []).append(cast("dict[str, object]", scale))
            else:
                lvl = res.get("level")
                an.scale_skips.setdefault(impl, []).append(
                    f"N={lvl}: {res.get('status')}: {res.get('reason')}"
                )
            continue
        an.rows.append(make_row(res))
    for pts in an.scale.values():
        pts.sort(key=lambda p: cast(int, p["n"]))
    for row in an.rows:
        base = an.row(row.scenario, BASELINE)
        if base is not None and base.wait is not None and row.wait is not None:
            row.ratio_p50 = row.wait.p50 / base.wait.p50 if base.wait.p50 > 0 else None
            row.ratio_p99 = row.wait.p99 / base.wait.p99 if base.wait.p99 > 0 else None
    an.verdicts = list(_verdicts(an, results, sink_grace_s))
    return an


def summary(an: Analysis) -> list[dict[str, object]]:
    """Per scenario and implementation, the counts the report's table shows, for
    results.json: how many waits returned before the audio stopped (``early``), how
    many of those were the grace or the watchdog giving up (``early_gave_up``), and
    what else went wrong."""
    return [
        {
            "scenario": r.scenario, "impl": r.impl, "status": r.status, "n": r.n,
            "early": r.early[0], "early_observed": r.early[1],
            "early_gave_up": r.early_gave_up,
            "clean": r.n - r.early[0] if r.early[1] == r.n else None,
            "sink_timed_out": r.sink_timed_out[0] if r.sink_timed_out[1] else None,
            "watchdog_fired": r.watchdog[0] if r.watchdog[1] else None,
            "lost_records": r.lost_records, "after_done": r.running_after_done,
        }
        for r in an.rows
    ]


def _lag_after_stop(result: Result, *, include_tool: bool) -> list[float]:
    """wait - (moment the sink stopped [or the tool stopped, if later]) per sample."""
    lags: list[float] = []
    for s in samples_of(result):
        w = s.get("wait_ns")
        sink = s.get("sink_stop_ns")
        if not isinstance(w, int) or not isinstance(sink, int):
            continue
        ref = sink
        tool = s.get("tool_stop_ns")
        if include_tool and isinstance(tool, int):
            ref = max(ref, tool)
        lags.append(float(w - ref))
    return lags


def _early_text(r: Row) -> str:
    """'returned before the audio stopped: 3/3 (3 when the grace or watchdog gave up)'."""
    text = f"returned before the audio stopped: {r.early[0]}/{r.early[1]}"
    if r.early_gave_up:
        text += f" ({r.early_gave_up} when the grace or watchdog gave up)"
    return text


def _find(results: Iterable[Result], scenario: str, impl: str) -> Result | None:
    for r in results:
        if r.get("scenario") == scenario and r.get("impl") == impl and r.get("level") is None:
            return r
    return None


def floor_summaries(result: Result | None) -> dict[str, Summary]:
    """The bare-trio floor a trio-native S1 worker measured after its series, per kind."""
    raw = cast(dict[str, list[int]], (result or {}).get("floor") or {})
    out: dict[str, Summary] = {}
    for kind, values in raw.items():
        summary = summarize(values)
        if summary is not None:
            out[kind] = summary
    return out


def _floor_text(result: Result | None, p50: float) -> str:
    floors = floor_summaries(result)
    hop = floors.get("two_hop")
    if hop is None or hop.p50 <= 0:
        return ""
    text = (f"; bare trio in the same process after the same idle: two task hops p50 "
            f"{format_ns(hop.p50)}")
    if "cancel_exit" in floors:
        text += f", cancel -> nursery exit p50 {format_ns(floors['cancel_exit'].p50)}"
    return text + f"; S1 p50 is {p50 / hop.p50:.1f}x the two-hop floor"


def _verdicts(an: Analysis, results: Sequence[Result], grace_s: float) -> Iterable[Verdict]:
    def missing(target: str, *parts: str) -> Verdict:
        return Verdict(target, "not measured", "no samples for " + ", ".join(parts))

    # 1. trio-native S1 p50 <= 100 us, p99 <= 1 ms
    t = "trio-native S1: p50 <= 100 us and p99 <= 1 ms"
    r = an.row("S1", "trio-native")
    if r is None or r.wait is None:
        yield missing(t, "trio-native/S1")
    else:
        ok = r.wait.p50 <= 100_000 and r.wait.p99 <= 1_000_000
        yield Verdict(
            t, "met" if ok else "missed",
            f"p50 {format_ns(r.wait.p50)}, p99 {format_ns(r.wait.p99)} (N={r.wait.n})"
            + _floor_text(_find(results, "S1", "trio-native"), r.wait.p50),
        )

    # 2. bridge S1 p99 within 2x of livekit S1 p99
    t = "bridge S1: p99 within 2x of stock livekit's S1 p99"
    b, lk = an.row("S1", "bridge"), an.row("S1", BASELINE)
    if b is None or b.wait is None or lk is None or lk.wait is None:
        yield missing(t, "bridge/S1", "livekit/S1")
    else:
        ratio = b.wait.p99 / lk.wait.p99
        yield Verdict(
            t, "met" if ratio <= 2.0 else "missed",
            f"bridge p99 {format_ns(b.wait.p99)} vs livekit p99 {format_ns(lk.wait.p99)} "
            f"= {ratio:.2f}x",
        )

    # 3. bridge ahead of livekit in S3..S5 (p50 of the handle's wait)
    for sc in ("S3", "S4", "S5"):
        t = f"bridge ahead of stock livekit in {sc} (p50 of interrupt -> wait_for_playout)"
        b, lk = an.row(sc, "bridge"), an.row(sc, BASELINE)
        if b is None or b.wait is None or lk is None or lk.wait is None:
            yield missing(t, f"bridge/{sc}", f"livekit/{sc}")
        else:
            yield Verdict(
                t, "met" if b.wait.p50 < lk.wait.p50 else "missed",
                f"bridge p50 {format_ns(b.wait.p50)} vs livekit p50 {format_ns(lk.wait.p50)}",
            )

    # 4. S2 and S4: within 5 ms after the sink confirms (all but livekit-race);
    #    trio-native and bridge never before the sink stopped.
    for sc in ("S2", "S4"):
        for impl in ("livekit", "trio-native", "bridge"):
            t = f"{sc} {impl}: wait_for_playout returns within 5 ms after the sink stopped"
            res = _find(results, sc, impl)
            if res is None or not samples_of(res):
                yield missing(t, f"{impl}/{sc}")
                continue
            lags = _lag_after_stop(res, include_tool=(sc == "S4"))
            early, seen = count_true(res, "early_return")
            worst = max(lags) if lags else math.nan
            ok = bool(lags) and len(lags) == len(samples_of(res)) and worst <= 5 * MS
            if impl != "livekit":
                ok = ok and early == 0
            detail = (
                f"max lag after the sink{' (or the tool, if later)' if sc == 'S4' else ''} "
                f"stopped: {format_ns(worst) if lags else '-'}; "
                f"returned while audio still playing: {early}/{seen}"
            )
            if sc == "S4":
                ce, cseen = count_true(res, "ctx_wait_early")
                detail += f"; tool's ctx.wait_for_playout() returned while playing: {ce}/{cseen}"
                if impl != "livekit":
                    ok = ok and ce == 0
            yield Verdict(t, "met" if ok else "missed", detail)

    # 5. S3 and S5: trio-native and bridge bounded (grace / cancellation), zero lost.
    for sc in ("S3", "S5"):
        lk = an.row(sc, BASELINE)
        lk_txt = f"; stock livekit p50 {format_ns(lk.wait.p50)}" if lk and lk.wait else ""
        for impl in ("trio-native", "bridge"):
            bound = (grace_s + 0.05) if sc == "S3" else 0.1
            what = f"sink_grace ({grace_s:g} s)" if sc == "S3" else "the tool's cancellation"
            t = f"{sc} {impl}: bounded by {what}, zero lost records, no unflagged early return"
            r = an.row(sc, impl)
            if r is None or r.wait is None:
                yield missing(t, f"{impl}/{sc}")
                continue
            ok = r.wait.max <= bound * 1e9 and r.lost_records == 0 and r.wait.n == r.n
            # an early return counts against the target unless the handle says so
            ok = ok and r.early[0] == r.early_gave_up
            yield Verdict(
                t, "met" if ok else "missed",
                f"max {format_ns(r.wait.max)} (bound {bound:g} s), lost records "
                f"{r.lost_records}; {_early_text(r)}{lk_txt}",
            )

    # 5b. S8: a deaf sink that buffered the whole reply plays on past the grace. The
    #     wait then returns before the audio stopped; that must never be silent.
    lk = an.row("S8", BASELINE)
    lk_txt = f"; stock livekit: {_early_text(lk)}" if lk and lk.wait else ""
    for impl in ("trio-native", "bridge"):
        t = (f"S8 {impl}: bounded by sink_grace ({grace_s:g} s), and every return before the "
             "audio stopped is flagged (sink_timed_out)")
        r = an.row("S8", impl)
        if r is None or r.wait is None:
            yield missing(t, f"{impl}/S8")
            continue
        bound = grace_s + 0.05
        ok = (r.wait.max <= bound * 1e9 and r.lost_records == 0 and r.wait.n == r.n
              and r.early[0] == r.early_gave_up)
        yield Verdict(
            t, "met" if ok else "missed",
            f"max {format_ns(r.wait.max)} (bound {bound:g} s), lost records {r.lost_records}; "
            f"{_early_text(r)}{lk_txt}",
        )

    # 6. S6: trio-native 10,000 concurrent, per-conversation cost at most linear.
    t = "S6 trio-native: 10,000 concurrent interrupted conversations, per-conversation cost flat"
    pts = an.scale.get("trio-native", [])
    by_n = {cast(int, p["n"]): p for p in pts}
    attempted = any(
        r.get("scenario") == "S6" and r.get("impl") == "trio-native" and r.get("level") == 10000
        for r in results
    )
    if 10000 not in by_n:
        yield Verdict(t, "missed" if attempted else "not measured",
                      "no 10,000 level: " + "; ".join(an.scale_skips.get("trio-native", [])))
    else:
        ref_n = 100 if 100 in by_n else min(by_n)
        ref = cast(float, by_n[ref_n]["per_conversation_ns"])
        top = cast(float, by_n[10000]["per_conversation_ns"])
        ok = top <= 2.0 * ref
        yield Verdict(
            t, "met" if ok else "missed",
            f"per conversation {format_ns(top)} at N=10000 vs {format_ns(ref)} at N={ref_n} "
            f"({top / ref:.2f}x; linear total time means <= 2x)",
        )
