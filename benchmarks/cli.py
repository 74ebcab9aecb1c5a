"""``python -m benchmarks``: run every scenario for every implementation, side by side.

Each configuration (implementation x scenario, and x N for the S6 scale levels)
runs in its own worker process. How they share the 2 CPUs of the reference
machine depends on what they measure (``Scenario.kind``):

1. ``timing`` configurations (S1, S2, S4, S7: microseconds to a few hundred
   milliseconds) run first, strictly one at a time, on an otherwise idle machine;
2. then the ``long-wait`` configurations (S3, S5, S8: livekit's 5 s watchdog,
   the 12 s tool, the 2 s sink grace, 7 s of buffered audio; the processes sleep
   through them) run up to
   ``--jobs`` at a time, longest first, while the S6 ``scale`` levels (CPU-bound)
   run alongside, one level at a time.

``--quick`` is a smoke test, not a measurement: everything shares ``--jobs``
slots.

S6 levels run in increasing N per implementation; a level is skipped, with the
reason written down, when the previous level's wall time predicts (linearly) a
run longer than the level budget, or, for the default level list only, when the
implementation has a documented cap (``benchmarks.scenarios.SCALE_CAPS``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

from benchmarks._proc import LOAD_MODES, BusyLoad
from benchmarks.analysis import analyse, summary
from benchmarks.env import environment
from benchmarks.runner import Config, run_config
from benchmarks.scenarios import (
    IMPLS,
    SCALE_CAPS,
    SCALE_LEVELS,
    SCALE_LEVELS_QUICK,
    SCENARIOS,
)

SCHEMA_VERSION = 1
P5700 = "https://github.com/livekit/agents/pull/5700"


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    for v in items:
        if v not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Interrupt-to-return latency and scale: livekit, livekit-race (the "
        f"rejected race of {P5700}), trio-native, bridge. Writes results.json, "
        "report.md, table.txt and PNG plots into --out.",
    )
    p.add_argument("--quick", action="store_true", help="small N, a smoke run well under a minute")
    p.add_argument(
        "--impl", default=",".join(IMPLS),
        help=f"comma-separated implementations (default: all of {', '.join(IMPLS)})",
    )
    p.add_argument(
        "--scenario", default=",".join(SCENARIOS),
        help="comma-separated scenarios S1..S8 (default: all)",
    )
    p.add_argument(
        "--out", default="bench-results",
        help="output folder for results.json, report.md, table.txt and the plots "
        "(default: bench-results, in the current directory)",
    )
    p.add_argument("-n", type=int, default=None, help="samples per configuration (overrides the plan)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up samples (overrides the plan)")
    p.add_argument(
        "--levels", default=None,
        help="S6 conversation counts, comma-separated (default 1,10,100,1000,10000 with "
        "the per-implementation caps of benchmarks.scenarios.SCALE_CAPS; quick 1,10). "
        "Given explicitly, the caps do not apply",
    )
    p.add_argument(
        "--jobs", "-j", type=int, default=None,
        help="long-wait configurations (S3, S5, S8) run at once beside the one-at-a-time "
        "S6 levels (default 3); with --quick, all configurations run this many at once "
        "(default 4). Timing scenarios (S1, S2, S4, S7) always run alone in a default run",
    )
    p.add_argument(
        "--load", default="none", choices=tuple(LOAD_MODES),
        help="run every configuration beside a second process that keeps one core busy "
        "(a Python busy loop started once for the whole run, the same for every "
        "implementation): "
        + "; ".join(f"{k}: {v}" for k, v in LOAD_MODES.items()) + " (default none)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument(
        "--report-only", action="store_true",
        help="measure nothing: rewrite report.md, table.txt and the plots from "
        "<out>/results.json of an earlier run",
    )
    args = p.parse_args(argv)
    try:
        args.impls = _csv(args.impl, IMPLS, "implementation")
        args.scenarios = _csv(args.scenario, tuple(SCENARIOS), "scenario")
        args.level_list = (
            [int(x) for x in args.levels.split(",")] if args.levels
            else list(SCALE_LEVELS_QUICK if args.quick else SCALE_LEVELS)
        )
    except (argparse.ArgumentTypeError, ValueError) as exc:
        p.error(str(exc))
    if args.jobs is None:
        args.jobs = 4 if args.quick else 3
    args.caps = args.levels is None
    return args


def plan(args: argparse.Namespace) -> tuple[list[Config], dict[str, list[Config]]]:
    """The flat configurations (timing first, then long-wait, longest first), and the
    S6 chains (one per implementation)."""
    flat: list[Config] = []
    chains: dict[str, list[Config]] = {}
    pinned = BusyLoad(args.load).worker_cpus()
    cpus = tuple(sorted(pinned)) if pinned is not None else None
    for sid in args.scenarios:
        sc = SCENARIOS[sid]
        for impl in args.impls:
            if sid == "S6":
                chains[impl] = [
                    Config(impl, sid, 1, 0, sc.budget(args.quick), 0.0, args.quick, level,
                           cpus=cpus)
                    for level in args.level_list
                ]
                continue
            flat.append(
                Config(
                    impl=impl,
                    scenario=sid,
                    n=args.n if args.n is not None else sc.n(args.quick, impl),
                    warmup=args.warmup if args.warmup is not None else sc.warmup(args.quick),
                    budget_s=sc.budget(args.quick),
                    observe_s=sc.observe(args.quick),
                    quick=args.quick,
                    cpus=cpus,
                )
            )
    flat.sort(key=_order_key)
    return flat, chains


def _order_key(cfg: Config) -> tuple[int, float]:
    """Timing configurations first (in plan order), then long-wait ones, longest first."""
    sc = SCENARIOS[cfg.scenario]
    if sc.kind == "timing":
        return (0, 0.0)
    stock = cfg.impl in ("livekit", "livekit-race")  # the 5 s watchdog, the 12 s tool
    per_sample = {"S5": 13.0 if stock else 3.0, "S8": 8.0}.get(sc.id, 6.5 if stock else 3.0)
    return (1, -cfg.n * per_sample)


class Progress:
    """One line per configuration; an in-place sample counter on a terminal."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.lock = threading.Lock()
        self.tty = sys.stderr.isatty()
        self.t0 = time.perf_counter()

    def _write(self, text: str) -> None:
        sys.stderr.write(text)
        sys.stderr.flush()

    def sample(self, cfg: Config, done: int, total: int) -> None:
        if not self.tty:
            return
        with self.lock:
            self._write(f"\r  {cfg.key:<28} {done}/{total} samples   ")

    def started(self, cfg: Config) -> None:
        with self.lock:
            if self.tty:
                self._write(f"\r  {cfg.key:<28} starting...          ")

    def finished(self, cfg: Config, result: dict[str, object]) -> None:
        with self.lock:
            self.done += 1
            n = len(cast(list[object], result.get("samples") or []))
            wall = cast(float, result.get("process_wall_s", 0.0))
            status = str(result.get("status"))
            extra = "" if status == "ok" else f" ({result.get('reason')})"
            if self.tty:
                self._write("\r" + " " * 60 + "\r")
            elapsed = time.perf_counter() - self.t0
            self._write(
                f"[{self.done:>2}/{self.total}] {cfg.key:<28} {status:<7} "
                f"N={n:<4} {wall:6.1f} s   (elapsed {elapsed:5.0f} s){extra}\n"
            )


def _skip(cfg: Config, reason: str) -> dict[str, object]:
    return {
        "impl": cfg.impl, "scenario": cfg.scenario, "level": cfg.level,
        "status": "skipped", "reason": reason, "samples": [], "scale": None, "notes": [],
        "process_wall_s": 0.0,
    }


def run_chain(
    chain: list[Config], out: Path, progress: Progress, caps: bool = True
) -> list[dict[str, object]]:
    """S6 levels of one implementation, smallest first, with the budget rule."""
    results: list[dict[str, object]] = []
    prev: dict[str, object] | None = None
    prev_level = 0
    for cfg in chain:
        assert cfg.level is not None
        res: dict[str, object] | None = None
        cap = SCALE_CAPS.get(cfg.impl) if caps else None
        if cap is not None and cfg.level > cap[0]:
            res = _skip(cfg, f"capped at N={cap[0]}: {cap[1]}")
        elif prev is not None and prev.get("status") != "ok":
            res = _skip(cfg, f"N={prev_level} did not complete ({prev.get('status')})")
        else:
            scale = prev.get("scale") if prev is not None else None
            if isinstance(scale, dict):
                # the level's own cost (creating N conversations + interrupting them),
                # scaled linearly; process start-up is a constant on top
                level_s = cast(float, scale["setup_s"]) + cast(float, scale["all_done_ns"]) / 1e9
                predicted = level_s * cfg.level / max(prev_level, 1)
                if predicted > cfg.budget_s:
                    res = _skip(
                        cfg,
                        f"predicted {predicted:.0f} s (linear from N={prev_level}: "
                        f"{level_s:.1f} s) exceeds the {cfg.budget_s:.0f} s level budget",
                    )
            if res is None:
                progress.started(cfg)
                res = run_config(cfg, out, progress.sample)
        assert res is not None
        progress.finished(cfg, res)
        results.append(res)
        prev, prev_level = res, cfg.level
    return results


def write_outputs(out: Path, doc: dict[str, object], *, no_plots: bool = False) -> list[str]:
    """From a run's document: report.md, table.txt, the plots; print the table."""
    from benchmarks.report import console_table, markdown_report

    results = cast(list[dict[str, object]], doc["results"])
    an = analyse(results)
    env = cast(dict[str, object], doc["environment"])
    settings = cast(dict[str, object], doc["settings"])
    (out / "report.md").write_text(markdown_report(an, env, settings, results), encoding="utf-8")
    table = console_table(an)
    (out / "table.txt").write_text(table + "\n", encoding="utf-8")
    plots: list[str] = []
    if not no_plots:
        try:
            from benchmarks.plots import write_plots

            plots = write_plots(an, results, out)
        except ImportError as exc:  # matplotlib missing: the numbers still stand
            sys.stderr.write(f"plots skipped: {exc}\n")
    print(table)
    return plots


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    if args.report_only:
        with open(out / "results.json", encoding="utf-8") as fh:
            doc = json.load(fh)
        write_outputs(out, doc, no_plots=args.no_plots)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    flat, chains = plan(args)
    total = len(flat) + sum(len(c) for c in chains.values())
    env = environment()
    sys.stderr.write(
        f"benchmarks: {len(flat)} configurations + {sum(len(c) for c in chains.values())} "
        f"scale levels into {out}/ "
        f"({'quick' if args.quick else 'default'} run"
        + ("" if args.load == "none" else f", load: {LOAD_MODES[args.load]}") + ")\n"
    )
    progress = Progress(total)
    t0 = time.perf_counter()
    results: list[dict[str, object]] = []

    def one(cfg: Config) -> list[dict[str, object]]:
        progress.started(cfg)
        res = run_config(cfg, out, progress.sample)
        progress.finished(cfg, res)
        return [res]

    def chains_in_turn() -> list[dict[str, object]]:
        got: list[dict[str, object]] = []
        for chain in chains.values():
            got.extend(run_chain(chain, out, progress, args.caps))
        return got

    timing = [c for c in flat if SCENARIOS[c.scenario].kind == "timing"]
    waits = [c for c in flat if SCENARIOS[c.scenario].kind != "timing"]
    with BusyLoad(args.load):  # the same second process beside every configuration
        if args.quick:
            # a smoke test: everything shares the slots, the long ones first
            with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
                futures = [pool.submit(one, c) for c in waits]
                futures += [pool.submit(run_chain, ch, out, progress, args.caps)
                            for ch in chains.values()]
                futures += [pool.submit(one, c) for c in timing]
                for f in futures:
                    results.extend(f.result())
        else:
            # 1. timing configurations, alone on the machine
            for c in timing:
                results.extend(one(c))
            # 2. long-wait configurations, --jobs at a time, beside one S6 level at a time
            with ThreadPoolExecutor(max_workers=1) as scale_pool:
                scale_future = scale_pool.submit(chains_in_turn)
                with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as waits_pool:
                    wait_futures = [waits_pool.submit(one, c) for c in waits]
                    for f in wait_futures:
                        results.extend(f.result())
                results.extend(scale_future.result())
    wall = time.perf_counter() - t0

    order = {s: i for i, s in enumerate(SCENARIOS)}
    iorder = {s: i for i, s in enumerate(IMPLS)}
    results.sort(
        key=lambda r: (
            order.get(str(r["scenario"]), 99),
            iorder.get(str(r["impl"]), 99),
            cast(int, r.get("level") or 0),
        )
    )
    an = analyse(results)
    doc = {
        "schema": SCHEMA_VERSION,
        "environment": env,
        "settings": {
            "quick": args.quick, "jobs": args.jobs, "impls": args.impls,
            "scenarios": args.scenarios, "n_override": args.n, "levels": args.level_list,
            "load": args.load, "load_description": LOAD_MODES[args.load],
            "scale_caps": (
                {k: {"max_level": v[0], "reason": v[1]} for k, v in SCALE_CAPS.items()}
                if args.caps else {}
            ),
            "wall_s": wall,
        },
        "results": results,
        "summary": summary(an),
        "verdicts": [v.__dict__ for v in an.verdicts],
    }
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)
    plots = write_outputs(out, doc, no_plots=args.no_plots)
    sys.stderr.write(
        f"\ndone in {wall:.0f} s: {out / 'results.json'}, {out / 'report.md'}"
        + "".join(f", {p}" for p in plots)
        + "\n"
    )
    failed = [r for r in results if r.get("status") == "error"]
    return 1 if failed else 0
