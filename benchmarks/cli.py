"""``python -m benchmarks``: run every scenario for every implementation, side by side.

Each configuration (implementation x scenario, and x N for the S6 scale levels)
runs in its own worker process, one after the other by default so the
measurements do not compete for the 2 CPUs of the reference machine. ``--jobs
2`` runs two at a time, which ``--quick`` uses because its numbers are a smoke
test, not a measurement.

S6 levels run in increasing N per implementation; a level is skipped, with the
reason written down, when the previous level's wall time predicts (linearly) a
run longer than the level budget, or when the implementation has a documented
cap (``benchmarks.scenarios.SCALE_CAPS``).
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

from benchmarks.analysis import analyse
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


def _csv(value: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [v.strip() for v in value.split(",") if v.strip()]
    for v in items:
        if v not in allowed:
            raise argparse.ArgumentTypeError(f"unknown {what} {v!r}; choose from {', '.join(allowed)}")
    return items


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Interrupt-to-return latency and scale: livekit, livekit-race, "
        "trio-native, bridge (issue 4).",
    )
    p.add_argument("--quick", action="store_true", help="small N, a smoke run well under a minute")
    p.add_argument(
        "--impl", default=",".join(IMPLS),
        help=f"comma-separated implementations (default: all of {', '.join(IMPLS)})",
    )
    p.add_argument(
        "--scenario", default=",".join(SCENARIOS),
        help="comma-separated scenarios S1..S7 (default: all)",
    )
    p.add_argument("--out", default="bench-results", help="output folder (default: bench-results)")
    p.add_argument("-n", type=int, default=None, help="samples per configuration (overrides the plan)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up samples (overrides the plan)")
    p.add_argument(
        "--levels", default=None,
        help="S6 conversation counts, comma-separated (default 1,10,100,1000,10000; quick 1,10)",
    )
    p.add_argument(
        "--jobs", "-j", type=int, default=None,
        help="configurations run at once (default 1; 2 with --quick)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
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
        args.jobs = 2 if args.quick else 1
    return args


def plan(args: argparse.Namespace) -> tuple[list[Config], dict[str, list[Config]]]:
    """The flat configurations, and the S6 chains (one per implementation)."""
    flat: list[Config] = []
    chains: dict[str, list[Config]] = {}
    for sid in args.scenarios:
        sc = SCENARIOS[sid]
        for impl in args.impls:
            if sid == "S6":
                chains[impl] = [
                    Config(impl, sid, 1, 0, sc.budget(args.quick), 0.0, args.quick, level)
                    for level in args.level_list
                ]
                continue
            flat.append(
                Config(
                    impl=impl,
                    scenario=sid,
                    n=args.n if args.n is not None else sc.n(args.quick),
                    warmup=args.warmup if args.warmup is not None else sc.warmup(args.quick),
                    budget_s=sc.budget(args.quick),
                    observe_s=sc.observe(args.quick),
                    quick=args.quick,
                )
            )
    return flat, chains


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


def run_chain(chain: list[Config], out: Path, progress: Progress) -> list[dict[str, object]]:
    """S6 levels of one implementation, smallest first, with the budget rule."""
    results: list[dict[str, object]] = []
    prev: dict[str, object] | None = None
    prev_level = 0
    for cfg in chain:
        assert cfg.level is not None
        res: dict[str, object] | None = None
        cap = SCALE_CAPS.get(cfg.impl)
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


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    flat, chains = plan(args)
    total = len(flat) + sum(len(c) for c in chains.values())
    env = environment()
    sys.stderr.write(
        f"benchmarks: {len(flat)} configurations + {sum(len(c) for c in chains.values())} "
        f"scale levels, {args.jobs} at a time, into {out}/ "
        f"({'quick' if args.quick else 'default'} run)\n"
    )
    progress = Progress(total)
    t0 = time.perf_counter()
    results: list[dict[str, object]] = []

    def one(cfg: Config) -> list[dict[str, object]]:
        progress.started(cfg)
        res = run_config(cfg, out, progress.sample)
        progress.finished(cfg, res)
        return [res]

    jobs: list[tuple[str, object]] = [("flat", c) for c in flat] + [
        ("chain", c) for c in chains.values()
    ]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [
            pool.submit(one, cast(Config, j)) if kind == "flat"
            else pool.submit(run_chain, cast(list[Config], j), out, progress)
            for kind, j in jobs
        ]
        for f in futures:
            results.extend(f.result())
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
            "wall_s": wall,
        },
        "results": results,
        "verdicts": [v.__dict__ for v in an.verdicts],
    }
    with open(out / "results.json", "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1)

    from benchmarks.report import console_table, markdown_report

    md = markdown_report(an, env, doc["settings"], results)  # type: ignore[arg-type]
    (out / "report.md").write_text(md, encoding="utf-8")
    plots: list[str] = []
    if not args.no_plots:
        try:
            from benchmarks.plots import write_plots

            plots = write_plots(an, results, out)
        except ImportError as exc:  # matplotlib missing: the numbers still stand
            sys.stderr.write(f"plots skipped: {exc}\n")
    print(console_table(an))
    sys.stderr.write(
        f"\ndone in {wall:.0f} s: {out / 'results.json'}, {out / 'report.md'}"
        + "".join(f", {p}" for p in plots)
        + "\n"
    )
    failed = [r for r in results if r.get("status") == "error"]
    return 1 if failed else 0
