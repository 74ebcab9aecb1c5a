"""Issue 11's voice scenarios side by side: S8 barge-in, S9 false interruption, S10 answer.

``python -m benchmarks.voice_peers [--quick] [--settings default,fast]
[--impl trio,livekit,bridge,pipecat] [--out DIR]``

One run generates the user's audio (:mod:`benchmarks._peer_audio`), writes one
SPEC.json per configuration, runs each implementation (``benchmarks.peer_<impl>``)
in its own process, one after the other, and writes the report
(:mod:`benchmarks._peer_report`): ``report.md``, ``results.json`` (raw per-trial
records and the environment) and ``timeline.png`` into ``benchmarks/results/peers/``
(``--out`` to change). The contract between this harness and the peers is
``benchmarks/PEERS.md``.

Configurations: each implementation at each setting (livekit's defaults:
``min_interruption_duration`` 0.5 s; fast: 0.2 s; false-interruption timeout 2 s in
both), and trio-native a second time with ``pause_on_speech_start`` (issue 12;
shown as ``trio+pos``, S8 and S9 only). The first S8 trial of every process is a
warm-up and is discarded. An implementation whose module does not import is
skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _peer_audio as audio
from benchmarks._peer_report import SETTINGS, rerender, write_report

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "peers"
IMPLS = ("trio", "livekit", "bridge", "pipecat")
FALSE_TIMEOUT = 2.0
# 8.3 s of agent audio: it outlasts every trial's playout (S9 plays ~2 s of it, around a ~3 s pause)
AGENT_TEXT = ("this is a long answer that keeps the agent talking while the user decides to speak "
              "and it goes on and on without a full stop anywhere in it")
SECONDS_PER_CHAR = 0.06
VAD = {
    "activation_threshold": 0.5,
    "min_speech_duration": 0.05,
    "min_silence_duration": 0.55,
    "sample_rate": 16000,
}


@dataclass(frozen=True)
class Plan:
    """Trials per configuration (the warm-up S8 trial comes on top)."""

    s8: int = 12
    s9_burst: int = 2
    s9_click: int = 1
    s10: int = 3
    false_timeout: float = FALSE_TIMEOUT
    warmup: bool = True
    tail: float = 0.8  # audio after the resume is due (S9), after the answer is due (S10)


DEFAULT_PLAN = Plan()
QUICK_PLAN = Plan(s8=1, s9_burst=1, s9_click=0, s10=1, false_timeout=0.5, warmup=True, tail=0.4)


@dataclass(frozen=True)
class Config:
    impl: str
    setting: str
    pause_on_speech_start: bool = False

    @property
    def label(self) -> str:
        return self.impl + ("+pos" if self.pause_on_speech_start else "")

    @property
    def key(self) -> str:
        return f"{self.label}/{self.setting}"


def settings_of(name: str, plan: Plan, pos: bool) -> dict[str, Any]:
    return {
        "name": name,
        "min_interruption_duration": SETTINGS[name],
        "false_interruption_timeout": plan.false_timeout,
        "pause_on_speech_start": pos,
        "vad": dict(VAD),
    }


def build_trials(
    plan: Plan, mid: float, wav_dir: Path, rng: random.Random, *, s10: bool = True
) -> list[dict[str, Any]]:
    """The trials of one configuration (fresh onsets, so VAD windows fall at every phase)."""
    trials: list[dict[str, Any]] = []
    # S9 trials share one length, so one silent reference run serves both kinds
    s9_len = 0.6 + 0.1 + 0.7 + VAD["min_silence_duration"] + plan.false_timeout + plan.tail

    def add(
        tid: str,
        scenario: str,
        kind: str,
        onset: float,
        speak_at: float | None,
        transcript: str | None,
        tail: float | None,
        duration: float | None = None,
    ) -> None:
        a = audio.make(kind, onset, wav_dir, tid, seed=rng.randrange(1 << 30))
        trials.append(
            {
                "id": tid,
                "scenario": scenario,
                "wav": str(a.path),
                "speak_at": speak_at,
                "onset": round(a.onset, 6),
                "end": round(a.end, 6),
                "transcript": transcript,
                "duration": round(duration if duration is not None else a.end + (tail or 0.0), 3),
            }
        )

    # S8 ends 0.8 s after the barge-in is due: a later stop counts as none
    if plan.warmup:
        add(
            "warmup-s8",
            "S8",
            "speech-s8",
            0.6 + rng.uniform(0, 0.1),
            0.0,
            audio.S8_TEXT,
            None,
            duration=0.6 + 0.1 + mid + 0.8,
        )
    for i in range(plan.s8):
        onset = 0.6 + rng.uniform(0, 0.1)
        add(f"s8-{i}", "S8", "speech-s8", onset, 0.0, audio.S8_TEXT, None, duration=onset + mid + 0.8)
    for i in range(plan.s9_burst):
        add(f"s9b-{i}", "S9-burst", "burst", 0.6 + rng.uniform(0, 0.1), 0.0, None, None, duration=s9_len)
    for i in range(plan.s9_click):
        add(f"s9c-{i}", "S9-click", "click", 0.6 + rng.uniform(0, 0.1), 0.0, None, None, duration=s9_len)
    if s10:
        for i in range(plan.s10):
            add(
                f"s10-{i}",
                "S10",
                "speech-s10",
                0.3 + rng.uniform(0, 0.1),
                None,
                audio.S10_TEXT,
                VAD["min_silence_duration"] + 0.5 + plan.tail + 0.1,
            )
    return trials


def available(impl: str) -> str | None:
    """None if ``benchmarks.peer_<impl>`` can be found, else why not."""
    try:
        found = importlib.util.find_spec(f"benchmarks.peer_{impl}")
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if found is not None else f"benchmarks/peer_{impl}.py does not exist"


def run_config(cfg: Config, spec: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run one peer process; its OUT.json, or a record of why it failed."""
    spec_path = work / f"spec-{cfg.label}-{cfg.setting}.json"
    out_path = work / f"out-{cfg.label}-{cfg.setting}.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        f"benchmarks.peer_{cfg.impl}",
        "--spec",
        str(spec_path),
        "--out",
        str(out_path),
    ]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"impl": cfg.impl, "skipped": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out_path.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-12:]
        return {"impl": cfg.impl, "skipped": f"exit {proc.returncode}: " + " | ".join(tail), "wall_s": wall}
    out: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    out["wall_s"] = wall
    return out


def source_state() -> dict[str, Any]:
    """The commit measured and the tracked files that differed from it (other work in the tree)."""
    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return proc.stdout  # not stripped: porcelain lines start with a status column
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD").strip(),
            "modified": [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
                         if len(ln) > 3]}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.voice_peers", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="one trial per scenario, fast setting, 1 s false timeout"
    )
    ap.add_argument("--settings", default=None, help="comma list of default,fast (quick: fast)")
    ap.add_argument("--impl", default=",".join(IMPLS), help="comma list of " + ",".join(IMPLS))
    ap.add_argument("--out", default=str(RESULTS), help="directory for report.md, results.json, timeline.png")
    ap.add_argument("--s8", type=int, default=None, help="S8 trials per configuration")
    ap.add_argument("--no-pos", action="store_true", help="skip trio with pause_on_speech_start")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="configurations run at once (default 1; --quick: 2, a smoke test, not a measurement)",
    )
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="measure nothing: write report.md, timeline.png and results.json's summary again "
        "from --out's results.json (its records, run and environment are kept)",
    )
    a = ap.parse_args(argv)
    if a.report_only:
        rerender(Path(a.out))
        print(f"[voice_peers] report rendered again in {a.out}", flush=True)
        return 0
    plan = QUICK_PLAN if a.quick else DEFAULT_PLAN
    if a.s8 is not None:
        plan = dataclasses.replace(plan, s8=a.s8)
    settings = (a.settings or ("fast" if a.quick else "default,fast")).split(",")
    impls = [i for i in a.impl.split(",") if i]
    for name in settings:
        if name not in SETTINGS:
            ap.error(f"unknown setting {name!r}")
    for i in impls:
        if i not in IMPLS:
            ap.error(f"unknown implementation {i!r}")
    configs = [Config(i, s) for s in settings for i in impls]
    if "trio" in impls and not a.no_pos:
        configs += [Config("trio", s, True) for s in settings]
    configs.sort(key=lambda c: (settings.index(c.setting), IMPLS.index(c.impl), c.pause_on_speech_start))
    rng = random.Random(a.seed)
    started = time.time()
    source = source_state()
    load_before = load_average()
    results: dict[str, Any] = {}
    jobs = a.jobs if a.jobs is not None else (2 if a.quick else 1)
    with tempfile.TemporaryDirectory(prefix="voice_peers_") as tmp:
        work = Path(tmp)
        todo: list[tuple[Config, dict[str, Any]]] = []
        for cfg in configs:
            why = available(cfg.impl)
            if why is not None:
                results[cfg.key] = {"impl": cfg.impl, "skipped": why}
                print(f"[voice_peers] {cfg.key}: skipped ({why})", flush=True)
                continue
            wav_dir = work / cfg.label / cfg.setting
            wav_dir.mkdir(parents=True)
            trials = build_trials(
                plan, SETTINGS[cfg.setting], wav_dir, rng, s10=not cfg.pause_on_speech_start
            )
            todo.append(
                (
                    cfg,
                    {
                        "settings": settings_of(cfg.setting, plan, cfg.pause_on_speech_start),
                        "agent_text": AGENT_TEXT,
                        "agent_seconds_per_char": SECONDS_PER_CHAR,
                        "trials": trials,
                    },
                )
            )

        def one(item: tuple[Config, dict[str, Any]]) -> None:
            cfg, spec = item
            budget = sum(t["duration"] for t in spec["trials"]) * 2.5 + 60
            print(f"[voice_peers] {cfg.key}: {len(spec['trials'])} trials ...", flush=True)
            out = run_config(cfg, spec, work, budget)
            out["config"] = {
                "impl": cfg.impl,
                "label": cfg.label,
                "setting": cfg.setting,
                "pause_on_speech_start": cfg.pause_on_speech_start,
            }
            out["spec_trials"] = spec["trials"]
            results[cfg.key] = out
            done = out.get("skipped") or f"{out.get('wall_s', 0.0):.1f} s"
            print(f"[voice_peers] {cfg.key}: {done}", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, todo))
    results = {c.key: results[c.key] for c in configs if c.key in results}
    run_info = {
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "quick": a.quick,
        "jobs": jobs,
        "source": source,
        "plan": plan.__dict__,
        "settings": settings,
        "impls": impls,
        "load_before": load_before,
        "load_after": load_average(),
        "agent_text_chars": len(AGENT_TEXT),
        "seconds_per_char": SECONDS_PER_CHAR,
    }
    write_report(Path(a.out), results, run_info)
    print(f"[voice_peers] report in {a.out} ({run_info['wall_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
