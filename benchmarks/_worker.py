"""One configuration (implementation x scenario [x scale level]) in its own process.

Run as ``python -m benchmarks._worker --impl livekit --scenario S1 --out r.json``.
The parent (``benchmarks.cli``) starts one of these per configuration, because
importing ``trio_asyncio`` patches asyncio for the whole process: a process that
measures plain asyncio must never import it. This module checks that at the end
of the run and records what it saw; a violation turns the result into an error.

Only the implementation module that is asked for is imported, so the stock
``livekit`` processes never load trio_playout's or the bridge's code.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import json
import os
import sys
import time
import traceback
from typing import Protocol, cast

from benchmarks.model import RunOutput, WorkerConfig
from benchmarks.scenarios import IMPLS, RUNTIME, SCENARIOS

IMPL_MODULES: dict[str, str] = {
    "livekit": "benchmarks.impl_livekit",
    "livekit-race": "benchmarks.impl_livekit",
    "trio-native": "benchmarks.impl_trio",
    "bridge": "benchmarks.impl_bridge",
}


class ImplModule(Protocol):
    def run(self, cfg: WorkerConfig) -> RunOutput: ...


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks._worker")
    p.add_argument("--impl", required=True, choices=IMPLS)
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--warmup", type=int, required=True)
    p.add_argument("--budget", type=float, required=True)
    p.add_argument("--observe", type=float, required=True)
    p.add_argument("--level", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", required=True)
    return p.parse_args(argv)


def _print_progress(done: int, total: int) -> None:
    from benchmarks._proc import report_progress

    report_progress(done, total)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    scenario = SCENARIOS[args.scenario]
    cfg = WorkerConfig(
        impl=args.impl,
        scenario=scenario,
        n=args.n,
        warmup=args.warmup,
        budget_s=args.budget,
        observe_s=args.observe,
        quick=args.quick,
        level=args.level,
        progress=_print_progress,
    )
    runtime = RUNTIME[args.impl]
    result: dict[str, object] = {
        "impl": args.impl,
        "scenario": args.scenario,
        "level": args.level,
        "runtime": runtime,
        "pid": os.getpid(),
        "n_requested": args.n,
        "n_warmup": args.warmup,
        "budget_s": args.budget,
        "observe_s": args.observe,
        "gc": "collected, then disabled during warm-up and measurement",
        "params": {
            "clear_delay_s": None if scenario.clear_delay == float("inf") else scenario.clear_delay,
            "sink_never_confirms": scenario.clear_delay == float("inf"),
            "fresh_session_per_sample": scenario.fresh_session,
        },
    }
    t0 = time.perf_counter()
    gc.collect()
    gc.disable()
    try:
        module = cast(ImplModule, importlib.import_module(IMPL_MODULES[args.impl]))
        out = module.run(cfg)
        if out.skipped is not None:
            result.update(status="skipped", reason=out.skipped)
        else:
            result.update(status="ok", reason=None)
        result["samples"] = [s.as_dict() for s in out.samples]
        result["scale"] = out.scale.as_dict() if out.scale is not None else None
        result["notes"] = out.notes
        result["floor"] = out.floor
        result["budget_hit"] = out.budget_hit
    except BaseException as exc:
        result.update(
            status="error",
            reason=f"{type(exc).__name__}: {exc}",
            traceback=traceback.format_exc(),
            samples=[],
            scale=None,
            notes=[],
        )
    finally:
        gc.enable()
    result["wall_s"] = time.perf_counter() - t0
    imported = "trio_asyncio" in sys.modules
    result["trio_asyncio_imported"] = imported
    result["asyncio_event_loop_policy"] = type(asyncio.get_event_loop_policy()).__module__
    if runtime == "asyncio" and imported:
        result.update(
            status="error",
            reason="trio_asyncio was imported in a process measuring plain asyncio",
        )
    with open(args.out, "w", encoding="utf-8") as fh:
        json.dump(result, fh)
    return 0 if result["status"] != "error" else 1


if __name__ == "__main__":
    sys.exit(main())
