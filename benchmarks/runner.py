"""Start one worker process per configuration and collect its JSON.

The parent never imports an implementation: it only builds command lines,
relays progress lines (``PROGRESS done total``) and reads the result file. A
worker that dies or overruns its deadline becomes an ``error`` result with the
tail of its log, so a broken implementation shows up in the report instead of
stopping the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
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


def run_config(cfg: Config, out_dir: Path, progress: ProgressFn) -> dict[str, object]:
    """Run one configuration in a fresh interpreter; return its result dict."""
    raw_dir = out_dir / "raw"
    log_dir = out_dir / "logs"
    raw_dir.mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    result_path = raw_dir / f"{cfg.slug}.json"
    log_path = log_dir / f"{cfg.slug}.log"
    if result_path.exists():
        result_path.unlink()
    cmd = [
        sys.executable,
        "-m",
        "benchmarks._worker",
        "--impl", cfg.impl,
        "--scenario", cfg.scenario,
        "--n", str(cfg.n),
        "--warmup", str(cfg.warmup),
        "--budget", str(cfg.budget_s),
        "--observe", str(cfg.observe_s),
        "--out", str(result_path),
    ]
    if cfg.level is not None:
        cmd += ["--level", str(cfg.level)]
    if cfg.quick:
        cmd.append("--quick")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
    )
    env.setdefault("PYTHONUNBUFFERED", "1")
    t0 = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO_ROOT, env=env
        )
        timer = threading.Timer(cfg.deadline_s(), proc.kill)
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                parts = line.split()
                if len(parts) == 3 and parts[0] == "PROGRESS":
                    progress(cfg, int(parts[1]), int(parts[2]))
            rc = proc.wait()
        finally:
            timer.cancel()
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
