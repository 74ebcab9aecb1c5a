"""Start one worker process per configuration and collect its JSON.

The parent never imports an implementation: it only builds the worker's
arguments, relays progress messages and reads the result file. Workers are
forked from a ``multiprocessing`` fork server that preloaded livekit-agents
(:mod:`benchmarks._preload`), one fresh process per configuration; the worker's
stdout and stderr go to ``logs/<configuration>.log``. A
worker that dies or overruns its deadline becomes an ``error`` result with the
tail of its log, so a broken implementation shows up in the report instead of
stopping the run.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path

from benchmarks.scenarios import SCENARIOS

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """One configuration to run in its own process."""

    impl: str
    scenario: str
    n: int
    warmup: int
    budget_s: float
    observe_s: float
    quick: bool
    level: int | None = None
    #: CPUs the worker pins itself to (``--load shared``); None: not pinned.
    cpus: tuple[int, ...] | None = None

    @property
    def key(self) -> str:
        lvl = f"@{self.level}" if self.level is not None else ""
        return f"{self.impl}/{self.scenario}{lvl}"

    @property
    def slug(self) -> str:
        lvl = f"_{self.level}" if self.level is not None else ""
        return f"{self.impl}_{self.scenario}{lvl}"

    def deadline_s(self) -> float:
        """Wall-clock limit for the process: the budget plus room for warm-up and slow samples."""
        sc = SCENARIOS[self.scenario]
        per_sample = max(sc.observe_s, 13.0) if sc.fresh_session else 13.0
        return self.budget_s * 2 + per_sample * 2 + 60.0


ProgressFn = Callable[[Config, int, int], None]


def _child(argv: list[str], log_path: str, conn: Connection,
           cpus: tuple[int, ...] | None = None) -> None:
    """The configuration's own process (forked from the preloaded fork server)."""
    if cpus is not None:
        os.sched_setaffinity(0, set(cpus))
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from benchmarks import _proc, _worker

    def send(done: int, total: int) -> None:
        conn.send((done, total))

    _proc.set_progress_sink(send)
    try:
        rc = _worker.main(argv)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        conn.close()
    sys.exit(rc)


_CTX: ForkServerContext | None = None


def _context() -> ForkServerContext:
    """A fork server that has imported livekit-agents (never trio_asyncio) once.

    Every configuration is still its own process (a fresh fork of the server), so
    a bridge process importing trio_asyncio cannot leak into a plain asyncio one;
    what is shared is only the ~1.2 s import of livekit-agents, paid once per run
    instead of once per configuration.
    """
    global _CTX
    if _CTX is None:
        ctx = multiprocessing.get_context("forkserver")
        assert isinstance(ctx, ForkServerContext)
        ctx.set_forkserver_preload(["benchmarks._preload"])
        _CTX = ctx
    return _CTX


def run_config(cfg: Config, out_dir: Path, progress: ProgressFn) -> dict[str, object]:
    """Run one configuration in its own process; return its result dict."""
    raw_dir = out_dir / "raw"
    log_dir = out_dir / "logs"
    raw_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    result_path = raw_dir / f"{cfg.slug}.json"
    log_path = log_dir / f"{cfg.slug}.log"
    if result_path.exists():
        result_path.unlink()
    argv = [
        "--impl", cfg.impl,
        "--scenario", cfg.scenario,
        "--n", str(cfg.n),
        "--warmup", str(cfg.warmup),
        "--budget", str(cfg.budget_s),
        "--observe", str(cfg.observe_s),
        "--out", str(result_path.resolve()),
    ]
    if cfg.level is not None:
        argv += ["--level", str(cfg.level)]
    if cfg.quick:
        argv.append("--quick")
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    t0 = time.perf_counter()
    proc = ctx.Process(
        target=_child, args=(argv, str(log_path.resolve()), send, cfg.cpus), daemon=True
    )
    proc.start()
    send.close()
    deadline = t0 + cfg.deadline_s()
    while True:
        try:
            if recv.poll(0.2):
                done, total = recv.recv()
                progress(cfg, int(done), int(total))
        except EOFError:
            break
        if time.perf_counter() > deadline:
            proc.kill()
            break
    proc.join()
    recv.close()
    rc = proc.exitcode
    wall = time.perf_counter() - t0
    if result_path.exists():
        with open(result_path, encoding="utf-8") as fh:
            data: dict[str, object] = json.load(fh)
        data["process_wall_s"] = wall
        data["log"] = str(log_path.relative_to(out_dir))
        return data
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    reason = f"worker exited with code {rc} after {wall:.1f} s without a result"
    if wall >= cfg.deadline_s():
        reason = f"worker killed at its {cfg.deadline_s():.0f} s deadline"
    return {
        "impl": cfg.impl,
        "scenario": cfg.scenario,
        "level": cfg.level,
        "status": "error",
        "reason": reason,
        "log_tail": tail,
        "samples": [],
        "scale": None,
        "notes": [],
        "process_wall_s": wall,
        "log": str(log_path.relative_to(out_dir)),
    }
