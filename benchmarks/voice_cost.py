"""What the real Silero VAD costs, and how many conversations one core can listen to.

``python -m benchmarks.voice_cost`` (needs the ``vad`` extra; the ``espeak`` extra
for real speech, else it falls back to silence and noise and says so; livekit-agents
with ``livekit-plugins-silero`` for section 5). Real clock. ``--out DIR`` writes
``voice_cost.json`` (every trial, the environment) and ``voice_cost.md``.

1. **Per window.** One :class:`~trio_playout.silero.SileroModel` call per 32 ms
   window (512 samples at 16 kHz) over real speech and silence; warm-up discarded;
   N, min, p50, p90, p99, max in microseconds, as wall time and as the thread's CPU
   time (on a busy machine the wall-time tail is other processes taking the core;
   the CPU time is what the window itself costs). Also the whole
   :meth:`SileroVAD.stream <trio_playout.silero.SileroVAD.stream>` path per window
   (48 kHz input: downmix, resampling, model, rules), fed as fast as it goes.
2. **Estimate.** 32 ms divided by the per-window cost: conversations per core if
   nothing else ran.
3. **Measured, trio-native.** K trio tasks, each a microphone paced on the real
   clock (20 ms frames at 16 kHz, start times staggered) feeding its own
   ``SileroVAD``, in one trio thread. By default the ``SileroVAD`` objects share one
   onnxruntime session (as they do in the library); ``--own-sessions`` gives each
   its own, to show what that costs. Each window's lag is the clock time it was
   decided minus the time the frame completing its audio was delivered (so the
   20 ms framing is not counted). K doubles, then bisects, until the windows fall
   behind real time: more than 10% of the windows later than ``--max-lag`` (default
   32 ms, one window; i.e. p90 lag over it), or the lag growing (the median of the
   last second more than ``--max-lag`` over that of the second second). The far tail
   (p99, max) is printed but not judged: on a shared machine it is mostly other
   processes taking the CPU for a time slice.
   The CPU time over wall time is printed for each K (the trio thread's and the
   whole process's, which are the same here); K divided by the process's
   extrapolates to a whole core, and the process's CPU time divided by the windows
   decided is the cost of one window with everything around it.
4. **Measured, trio-native batched** (``--batched``, on by default): the same
   trial, the same K search and verdict, with the K ``SileroVAD`` objects sharing
   one :class:`~trio_playout.silero.SileroBatcher` (``--max-batch`` 16,
   ``--max-wait`` 2 ms): the windows of up to 16 conversations run in one model
   call. A window's lag now includes its wait for the batch (up to ``max_wait``),
   inside the same ``--max-lag`` bound. The mean and largest batch are recorded.
5. **Measured, livekit.** The same trial with the stock ``livekit-plugins-silero``
   VAD on plain asyncio, in its own process (:mod:`benchmarks.voice_cost_livekit`):
   the same audio (handed over as a file), the same microphone offsets, the same
   lag metric and K search. What the plugin forces differently is listed there and
   in the report (its own session and thread-pool executor, the smoothing). Its
   process runs the model in executor threads, so its CPU is the whole process's.
   The K are printed side by side, as ratios. ``--no-livekit`` skips it.
6. **Batching** (``--batch``, on by default; :mod:`benchmarks._silero_batch`): the
   model's cost per window when B conversations' windows go through one
   onnxruntime call, B = 1..64, and a check that the batched probabilities equal
   the unbatched ones over real speech.

The pieces: :mod:`benchmarks._voice_cost_common` (audio, offsets, lag, verdict, K
search, environment; shared with the livekit side), :mod:`benchmarks._voice_cost_trio`
(sections 1-4), :mod:`benchmarks._voice_cost_report` (the Markdown); this module
runs them in order and writes the JSON.

**One core.** Both processes are pinned to the same CPU (``--cpu``, default the last
one this process may use; ``--no-pin`` leaves them free): the livekit plugin's
executor threads would otherwise spread over every core, and the figure would not be
one core's. The trio side uses one thread anyway (onnxruntime with one thread). The
load average is recorded at the start and the end of every section: on a shared
machine another process on the pinned CPU halves what either side can hold.

onnxruntime runs with one intra-op and one inter-op thread, sequential, without
spinning (:func:`trio_playout.silero.new_session`; the plugin's session is set up
the same way): a 512-sample window is too small to split, and extra or spinning
threads would steal the core from the other conversations; a core's capacity is only
meaningful that way.
"""


from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from benchmarks._voice_cost_common import (
    FRAME,
    FRAME_BYTES,
    FRAME_SAMPLES,
    RATE,
    ROOT,
    WINDOW,
    Trial,
    decided_lag,
    environment,
    frame_at,
    frame_offsets,
    held_summary,
    judge,
    loadavg,
    pcm16,
    search,
    session_options,
    sha256,
    show,
    speech_signal,
)
from benchmarks._voice_cost_report import _fmt, markdown
from benchmarks._voice_cost_trio import capacity, per_window, projection, run_trial, stream_path

__all__ = ["FRAME", "FRAME_BYTES", "FRAME_SAMPLES", "RATE", "WINDOW", "Trial", "_signal", "capacity",
           "decided_lag", "environment", "frame_at", "frame_offsets", "held_summary", "judge", "main",
           "markdown", "pcm16", "per_window", "run_trial", "search", "session_options", "sha256", "show",
           "stream_path"]

_signal = speech_signal  # the name the tests and older scripts use
FULL: dict[str, int | float] = {"windows": 5000, "warmup": 300, "seconds": 6.0, "max_k": 1024}
#: the livekit section's own process (its default run takes about 2 minutes)
LIVEKIT_TIMEOUT_S = 1800
QUICK: dict[str, int | float] = {"windows": 500, "warmup": 50, "seconds": 3.0, "max_k": 8}


def run_livekit(args: argparse.Namespace, signal: Any, source: str) -> dict[str, Any]:
    """Section 5 (livekit) in its own process; its JSON document, or ``{"skipped": reason}``."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="voice_cost_") as tmp:
        npy, out = Path(tmp) / "signal.npy", Path(tmp) / "livekit.json"
        np.save(npy, signal)
        cmd = [sys.executable, "-m", "benchmarks.voice_cost_livekit", "--signal", str(npy),
               "--source", source, "--json", str(out), "--seconds", str(args.seconds),
               "--max-lag", str(args.max_lag), "--max-k", str(args.max_k)]
        cmd += ["--cpu", str(args.cpu)] if args.cpu is not None else ["--no-pin"]
        sys.stdout.flush()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                                          if p))
        try:  # the K search is bounded (max_k, seconds per trial); a hung child is not
            proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False, timeout=LIVEKIT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"skipped": f"benchmarks.voice_cost_livekit did not finish in {LIVEKIT_TIMEOUT_S} s"}
        if proc.returncode != 0 or not out.is_file():
            return {"skipped": f"benchmarks.voice_cost_livekit exited with {proc.returncode}"}
        doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return doc


def compare_batched(held: int, trio_held: dict[str, float | None], batched: dict[str, Any] | None,
                    comparison: dict[str, Any] | None) -> dict[str, Any] | None:
    """The batched K against the unbatched one and livekit's, all from this run."""
    if batched is None:
        return None
    b_k = int(batched["held"])
    lk_k = comparison["livekit_k"] if comparison else None
    return {"batched_k": b_k, "trio_k": held, "livekit_k": lk_k, "vs_trio": b_k / held if held else None,
            "vs_livekit": b_k / lk_k if lk_k else None,
            "per_full_core": batched["held_summary"].get("per_full_core"),
            "trio_per_full_core": trio_held.get("per_full_core")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.voice_cost", description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=None, help="timed model windows (default 5000; quick 500)")
    p.add_argument("--warmup", type=int, default=None, help="discarded first windows (default 300; quick 50)")
    p.add_argument("--seconds", type=float, default=None,
                   help="audio per conversation per trial (default 6; quick 3)")
    p.add_argument("--max-lag", type=float, default=0.032, help="p90 lag that counts as real time (s)")
    p.add_argument("--max-k", type=int, default=None, help="largest K tried (default 1024; quick 8)")
    p.add_argument("--cpu", type=int, default=None,
                   help="pin both processes to this CPU (default: the last CPU this process may use)")
    p.add_argument("--no-pin", action="store_true", help="do not pin (livekit's executor may use every core)")
    p.add_argument("--own-sessions", action="store_true",
                   help="give each trio conversation its own onnxruntime session (default: shared)")
    p.add_argument("--batched", action=argparse.BooleanOptionalAction, default=True,
                   help="section 4, trio-native with one SileroBatcher for the K conversations (default: on)")
    p.add_argument("--max-batch", type=int, default=16, help="the batcher's max_batch (default 16)")
    p.add_argument("--max-wait", type=float, default=0.002, help="the batcher's max_wait, s (default 0.002)")
    p.add_argument("--livekit", action=argparse.BooleanOptionalAction, default=True,
                   help="section 5, the livekit plugin in its own process (default: on)")
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="section 6, the model's cost per window batched (default: on)")
    p.add_argument("--quick", action="store_true",
                   help="small N and short trials (a smoke run); explicit options still win")
    p.add_argument("--json", default=None, help="also write the results to this file")
    p.add_argument("--out", type=Path, default=None, help="write voice_cost.json and voice_cost.md here")
    args = p.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    command = "python -m benchmarks.voice_cost" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    try:
        from trio_playout.silero import find_model, new_session
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.no_pin:
        args.cpu = None
    elif args.cpu is None:
        args.cpu = max(os.sched_getaffinity(0))
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    loads: dict[str, list[float] | None] = {"start": loadavg()}
    session = new_session()
    env = environment(session)
    model_sha256 = sha256(find_model())
    env["model"] = {"path": str(find_model()), "sha256": model_sha256}
    signal, source = _signal()
    print(f"Silero VAD cost  ({source}; {len(signal) / RATE:.1f} s of 16 kHz audio, looped)")
    print(f"environment: {json.dumps(env)}")

    window, cpu = per_window(signal, session, args.windows, args.warmup)
    assert window is not None and cpu is not None
    print("\n1. model call per 32 ms window, microseconds")
    for name, row in (("wall time", window), ("CPU time", cpu)):
        print(f"   {name:9s}: N={row['n']:.0f} min {row['min']:.0f} p50 {row['p50']:.0f} "
              f"p90 {row['p90']:.0f} p99 {row['p99']:.0f} max {row['max']:.0f}")
    path = stream_path(signal, 20.0 if not args.quick else 5.0)
    print(f"   SileroVAD.stream, 48 kHz stereo in, per window (mean): {path['mean_us']:.0f} us wall, "
          f"{path['cpu_mean_us']:.0f} us CPU, over {path['windows']:.0f} windows")

    estimate = {"cpu_p50": WINDOW * 1e6 / cpu["p50"], "cpu_p99": WINDOW * 1e6 / cpu["p99"],
                "wall_p50": WINDOW * 1e6 / window["p50"],
                "stream_cpu_mean": WINDOW * 1e6 / path["cpu_mean_us"]}
    print(f"\n2. estimate, conversations per core = 32 ms / cost: {estimate['cpu_p50']:.0f} at the CPU p50, "
          f"{estimate['cpu_p99']:.0f} at the CPU p99, {estimate['stream_cpu_mean']:.0f} with the whole "
          f"stream path from 48 kHz stereo (CPU mean)")

    pin = f"pinned to CPU {args.cpu}" if args.cpu is not None else "not pinned"
    print(f"\n3. measured, trio-native: K paced conversations in one trio thread ({args.seconds:g} s each, "
          f"real time = p90 lag <= {args.max_lag * 1e3:.0f} ms and not growing; {pin})")
    print(f"   onnxruntime sessions: {'one per conversation' if args.own_sessions else 'one shared'}")
    loads["trio"] = loadavg()
    held, trials = capacity(signal, args.seconds, args.max_lag, args.max_k, own_sessions=args.own_sessions)
    trio_held = held_summary(held, trials)
    print(f"   trio-native: one core holds {held} conversations with VAD in real time (measured)")
    if trio_held["per_full_core"] is not None:
        print(f"   at K={held} the process used {trio_held['proc_cpu_util']:.0%} of a core: "
              f"about {trio_held['per_full_core']:.0f} conversations per fully used core (extrapolated)")

    batched: dict[str, Any] | None = None
    if args.batched:
        print("\n4. measured, trio-native batched: the same with one "
              f"SileroBatcher(max_batch={args.max_batch}, max_wait={args.max_wait:g}) for the K "
              f"conversations (one shared session); the lag includes the batch wait ({pin})", flush=True)
        loads["batched"] = loadavg()
        b_held, b_trials = capacity(signal, args.seconds, args.max_lag, args.max_k,
                                    batch=(args.max_batch, args.max_wait))
        batched = {"max_batch": args.max_batch, "max_wait": args.max_wait, "held": b_held,
                   "held_summary": held_summary(b_held, b_trials), "trials": [asdict(t) for t in b_trials]}
        b_summary = batched["held_summary"]
        print(f"   trio-native batched: one core holds {b_held} conversations with VAD in real time "
              "(measured)")
        if b_summary["per_full_core"] is not None:
            print(f"   at K={b_held} the process used {b_summary['proc_cpu_util']:.0%} of a core: "
                  f"about {b_summary['per_full_core']:.0f} conversations per fully used core (extrapolated)")

    livekit: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    if args.livekit:
        print("\n5. measured, livekit: the same with livekit-plugins-silero on asyncio, its own process "
              f"({pin})", flush=True)
        loads["livekit"] = loadavg()
        livekit = run_livekit(args, signal, source)
        if "held" in livekit:
            lk_held = livekit["held_summary"]
            lk_k = int(livekit["held"])
            ratio = held / lk_k if lk_k else None
            lk_core = lk_held.get("per_full_core")
            core_ratio = (trio_held["per_full_core"] / lk_core
                          if lk_core and trio_held["per_full_core"] is not None else None)
            lk_model = (livekit.get("plugin") or {}).get("model") or {}
            comparison = {"trio_k": held, "livekit_k": lk_k, "ratio": ratio,
                          "same_model_file": lk_model.get("sha256") == model_sha256,
                          "trio_per_full_core": trio_held["per_full_core"], "livekit_per_full_core": lk_core,
                          "per_full_core_ratio": core_ratio}
            print("\n   side by side, conversations one core holds in real time:")
            print(f"     trio-native {held:5d}   livekit {lk_k:5d}   ratio {_fmt(ratio, '.2f')}x")
            print(f"     extrapolated to a fully used core: trio-native {_fmt(trio_held['per_full_core'])}   "
                  f"livekit {_fmt(lk_core)}   ratio {_fmt(core_ratio, '.2f')}x")
        else:
            print(f"   livekit skipped: {livekit.get('skipped')}")
    batched_comparison = compare_batched(held, trio_held, batched, comparison)
    if batched_comparison is not None:
        bc = batched_comparison
        vs_lk = (f"   livekit {bc['livekit_k']:5d}   batched/livekit {_fmt(bc['vs_livekit'], '.2f')}x"
                 if bc["vs_livekit"] is not None else "")
        print(f"\n   batched: trio-native {held:5d}   batched {bc['batched_k']:5d}   "
              f"batched/unbatched {_fmt(bc['vs_trio'], '.2f')}x{vs_lk}")

    batch: dict[str, Any] | None = None
    if args.batch:
        from benchmarks import _silero_batch

        print("\n6. batching: B conversations' windows in one onnxruntime call", flush=True)
        loads["batch"] = loadavg()
        batch = _silero_batch.run(session, signal, quick=args.quick)
        _silero_batch.show(batch)
    loads["end"] = loadavg()
    if batch is not None:
        batch["projection"] = projection(batch, trio_held)
        pr = batch["projection"]
        if pr is not None:
            print(f"   projection: at B={pr['batch']} the model would cost {pr['saving_us']:.0f} us less "
                  "per window; "
                  f"trio-native's {pr['cpu_per_window_us']:.0f} us per window at K={held} would become "
                  f"{pr['projected_cpu_per_window_us']:.0f} us: about {pr['projected_per_full_core']:.0f} "
                  f"conversations per fully used core instead of {pr['per_full_core']:.0f} (estimate)")

    doc: dict[str, Any] = {
        "run": {"command": command, "quick": args.quick, "cpu": args.cpu, "seconds": args.seconds,
                "max_lag": args.max_lag, "max_k": args.max_k, "windows": args.windows, "warmup": args.warmup,
                "batched": args.batched, "max_batch": args.max_batch, "max_wait": args.max_wait},
        "environment": env, "loadavg": loads, "source": source, "window_us": window, "window_cpu_us": cpu,
        "stream_path": path, "estimate": estimate, "held": held, "trio_held": trio_held,
        "own_sessions": args.own_sessions, "trials": [asdict(t) for t in trials],
        "batched": batched, "batched_comparison": batched_comparison,
        "livekit": livekit, "comparison": comparison, "batch": batch,
    }
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "voice_cost.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        (args.out / "voice_cost.md").write_text(markdown(doc), encoding="utf-8")
        print(f"\nwrote {args.out / 'voice_cost.json'} and {args.out / 'voice_cost.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
