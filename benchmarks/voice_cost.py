"""What the real Silero VAD costs, and how many conversations one core can listen to.

``python -m benchmarks.voice_cost`` (needs the ``vad`` extra; the ``espeak`` extra
for real speech, else it falls back to silence and noise and says so). Real clock.

1. **Per window.** One :class:`~trio_playout.silero.SileroModel` call per 32 ms
   window (512 samples at 16 kHz) over real speech and silence; warm-up discarded;
   N, min, p50, p90, p99, max in microseconds, as wall time and as the thread's CPU
   time (on a busy machine the wall-time tail is other processes taking the core;
   the CPU time is what the window itself costs). Also the whole
   :meth:`SileroVAD.stream <trio_playout.silero.SileroVAD.stream>` path per window
   (48 kHz input: downmix, resampling, model, rules), fed as fast as it goes.
2. **Estimate.** 32 ms divided by the per-window cost: conversations per core if
   nothing else ran.
3. **Measured.** K trio tasks, each a microphone paced on the real clock (20 ms
   frames at 16 kHz, start times staggered) feeding its own ``SileroVAD``, in one
   trio thread pinned to one CPU. By default the ``SileroVAD`` objects share one
   onnxruntime session (as they do in the library); ``--own-sessions`` gives each
   its own, to show what that costs. Each window's lag is the clock time it was
   decided minus the time the frame completing its audio was delivered (so the
   20 ms framing is not counted). K doubles, then bisects, until the windows fall
   behind real time: more than 10% of the windows later than ``--max-lag`` (default
   32 ms, one window; i.e. p90 lag over it), or the lag growing (the median of the
   last second more than ``--max-lag`` over that of the second second). The far tail
   (p99, max) is printed but not judged: on a shared machine it is mostly other
   processes taking the CPU for a time slice.
   The trio thread's CPU time over wall time is printed for each K; K divided by it
   extrapolates to a whole core. The load average is recorded. The process is not
   pinned by default (it uses one core at a time anyway: one trio thread, onnxruntime
   with one thread); ``--cpu N`` pins it.

onnxruntime runs with one intra-op and one inter-op thread, sequential, without
spinning (:func:`trio_playout.silero.new_session`): a 512-sample window is too small
to split, and extra or spinning threads would steal the core from the other
conversations and from trio; a core's capacity is only meaningful that way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import trio

from benchmarks.stats import Summary, summarize

WINDOW = 0.032
FRAME = 0.02
RATE = 16000
PHRASES = [
    "Hello there, I would like to book a table for two people tonight please.",
    "Could you tell me what the weather will be like in Paris tomorrow?",
    "No, stop, wait a second.",
    "Yes.",
]


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _environment(session: Any) -> dict[str, object]:
    try:
        cpus: list[int] | None = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    opts = session.get_session_options()
    return {
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_count": os.cpu_count(),
        "affinity": cpus,
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {n: _version(n) for n in ("onnxruntime", "numpy", "trio", "livekit-plugins-silero",
                                               "espeakng-loader")},
        "onnxruntime": {
            "intra_op_num_threads": opts.intra_op_num_threads,
            "inter_op_num_threads": opts.inter_op_num_threads,
            "execution_mode": str(opts.execution_mode),
            "providers": session.get_providers(),
        },
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _signal() -> tuple[Any, str]:
    """16 kHz float32 mono: phrases separated by silence (or noise if no espeak)."""
    import numpy as np

    parts = []
    try:
        from trio_playout._resample import pcm16_to_float_mono
        from trio_playout.espeak import EspeakTTS

        tts = EspeakTTS()
        for text in PHRASES:
            frame = tts.render_sync(text, sample_rate=RATE)
            parts += [pcm16_to_float_mono(frame.data, 1), np.zeros(int(0.8 * RATE), np.float32)]
        source = "espeak-ng speech (4 phrases) and silence"
    except Exception as exc:  # no espeak: still measure, and say so
        rng = np.random.default_rng(0)
        for _ in range(4):
            parts += [rng.normal(0, 0.1, 2 * RATE).astype(np.float32), np.zeros(RATE, np.float32)]
        source = f"noise and silence (espeak unavailable: {exc})"
    return np.concatenate(parts).astype(np.float32), source


def _us(summary: Summary | None) -> dict[str, float] | None:
    if summary is None:
        return None
    return {k: (v / 1000.0 if k != "n" else v) for k, v in summary.as_dict().items()}


def per_window(signal: Any, session: Any, windows: int, warmup: int
               ) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """(wall, thread CPU) time per model call, in microseconds."""
    from trio_playout.silero import SileroModel

    model = SileroModel(session, RATE)
    count = len(signal) // 512
    wall: list[float] = []
    cpu: list[float] = []
    for i in range(windows + warmup):
        k = i % count
        window = signal[k * 512:(k + 1) * 512]
        c = time.thread_time_ns()
        t = time.perf_counter_ns()
        model(window)
        dt = time.perf_counter_ns() - t
        dc = time.thread_time_ns() - c
        if i >= warmup:
            wall.append(dt)
            cpu.append(dc)
    return _us(summarize(wall)), _us(summarize(cpu))


def stream_path(signal: Any, seconds: float) -> dict[str, float]:
    """Mean cost per window of SileroVAD.stream on 48 kHz stereo input, unpaced."""
    import numpy as np

    from trio_playout import AudioFrame
    from trio_playout._resample import StreamResampler, float_to_pcm16
    from trio_playout.silero import SileroVAD

    up = StreamResampler(RATE, 48000).push(signal)
    pcm = float_to_pcm16(np.repeat(up, 2))
    step = int(48000 * FRAME) * 4
    repeats = max(1, math.ceil(seconds * 48000 * 4 / len(pcm)))
    vad = SileroVAD()

    async def frames() -> AsyncIterator[AudioFrame]:
        for _ in range(repeats):
            for i in range(0, len(pcm) - step + 1, step):
                yield AudioFrame(pcm[i:i + step], 48000, 2)

    async def main() -> tuple[int, float, float]:
        n = 0
        c = time.thread_time()
        t = time.perf_counter()
        async for event in vad.stream(frames()):
            n += event.type.value == "inference"
        return n, time.perf_counter() - t, time.thread_time() - c

    n, elapsed, cpu = trio.run(main)
    return {"windows": n, "mean_us": elapsed / n * 1e6, "cpu_mean_us": cpu / n * 1e6, "audio_s": n * WINDOW}


@dataclass
class Trial:
    k: int
    windows: int
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    late_fraction: float  # windows decided more than max_lag after their audio
    growing: bool
    ok: bool
    cpu_util: float  # CPU time of the trio thread / wall time


def run_trial(k: int, signal: Any, seconds: float, max_lag: float, *, own_sessions: bool = False) -> Trial:
    from trio_playout import AudioFrame
    from trio_playout._resample import float_to_pcm16
    from trio_playout.silero import SileroVAD

    pcm = float_to_pcm16(signal)
    frame_bytes = int(RATE * FRAME) * 2
    vads = [SileroVAD(share_session=not own_sessions) for _ in range(k)]
    lags: list[list[tuple[float, float]]] = [[] for _ in range(k)]
    rng = random.Random(k)

    async def conversation(i: int, t_start: float) -> None:
        offset = rng.randrange(0, len(pcm) // frame_bytes) * frame_bytes
        frames_total = int(seconds / FRAME)

        async def microphone() -> AsyncIterator[AudioFrame]:
            for n in range(frames_total):
                await trio.sleep_until(t_start + (n + 1) * FRAME)
                at = (offset + n * frame_bytes) % (len(pcm) - frame_bytes)
                yield AudioFrame(pcm[at:at + frame_bytes], RATE)

        async for event in vads[i].stream(microphone()):
            if event.type.value == "inference":
                now = trio.current_time()
                delivered = math.ceil(event.timestamp / FRAME - 1e-6) * FRAME  # the completing frame
                lags[i].append((event.timestamp, now - (t_start + delivered)))

    async def main() -> None:
        t0 = trio.current_time() + 0.2
        async with trio.open_nursery() as nursery:
            for i in range(k):
                nursery.start_soon(conversation, i, t0 + (i % 50) * FRAME / 50)

    c, w = time.thread_time(), time.perf_counter()
    trio.run(main)
    cpu_util = (time.thread_time() - c) / (time.perf_counter() - w)
    flat = sorted(lag for per in lags for _, lag in per)
    summary = summarize(flat)
    assert summary is not None
    tail = sorted(lag for per in lags for ts, lag in per if ts > seconds - 1.0)
    head = sorted(lag for per in lags for ts, lag in per if 1.0 <= ts < 2.0)
    growing = bool(tail and head and tail[len(tail) // 2] > head[len(head) // 2] + max_lag)
    late = sum(1 for lag in flat if lag > max_lag) / len(flat)
    ok = summary.p90 <= max_lag and not growing
    return Trial(k, len(flat), summary.p50 * 1e3, summary.p99 * 1e3, summary.max * 1e3, late, growing, ok,
                 cpu_util)


def _show(trial: Trial) -> None:
    print(f"  K={trial.k:4d}: lag p50 {trial.lag_p50_ms:7.2f} ms  p99 {trial.lag_p99_ms:8.2f} ms  "
          f"max {trial.lag_max_ms:8.2f} ms  late {trial.late_fraction:6.1%}  "
          f"CPU {trial.cpu_util:5.0%}  {'ok' if trial.ok else 'BEHIND'}", flush=True)


def capacity(signal: Any, seconds: float, max_lag: float, max_k: int, *,
             own_sessions: bool = False) -> tuple[int, list[Trial]]:
    trials: list[Trial] = []
    good, bad = 0, None
    k = 1
    while k <= max_k:
        trial = run_trial(k, signal, seconds, max_lag, own_sessions=own_sessions)
        trials.append(trial)
        _show(trial)
        if not trial.ok:
            bad = k
            break
        good = k
        k *= 2
    while bad is not None and bad - good > max(1, good // 16):
        k = (good + bad) // 2
        trial = run_trial(k, signal, seconds, max_lag, own_sessions=own_sessions)
        trials.append(trial)
        _show(trial)
        if trial.ok:
            good = k
        else:
            bad = k
    return good, trials


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.voice_cost", description=__doc__.split("\n")[0])
    p.add_argument("--windows", type=int, default=5000, help="timed model windows (default 5000)")
    p.add_argument("--warmup", type=int, default=300, help="discarded first windows (default 300)")
    p.add_argument("--seconds", type=float, default=6.0, help="audio per conversation per trial (default 6)")
    p.add_argument("--max-lag", type=float, default=0.032, help="p99 lag that counts as real time (s)")
    p.add_argument("--max-k", type=int, default=1024, help="largest K tried")
    p.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU (default: not pinned)")
    p.add_argument("--own-sessions", action="store_true",
                   help="give each conversation its own onnxruntime session (default: shared)")
    p.add_argument("--quick", action="store_true", help="small N and short trials (a smoke run)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.windows, args.warmup, args.seconds, args.max_k = 500, 50, 3.0, 8
    try:
        from trio_playout.silero import new_session
    except ImportError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    session = new_session()
    env = _environment(session)
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

    print(f"\n3. measured: K paced conversations in one trio thread ({args.seconds:.0f} s each, "
          f"real time = p90 lag <= {args.max_lag * 1e3:.0f} ms and not growing)")
    print(f"   onnxruntime sessions: {'one per conversation' if args.own_sessions else 'one shared'}")
    held, trials = capacity(signal, args.seconds, args.max_lag, args.max_k, own_sessions=args.own_sessions)
    best = max((t for t in trials if t.ok and t.k == held), key=lambda t: t.k, default=None)
    print(f"   one core holds {held} conversations with VAD in real time (measured)")
    if best is not None and best.cpu_util > 0:
        print(f"   at K={held} the trio thread used {best.cpu_util:.0%} of a core: "
              f"about {held / best.cpu_util:.0f} conversations per fully used core (extrapolated)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"environment": env, "source": source, "window_us": window, "window_cpu_us": cpu,
                       "stream_path": path,
                       "estimate": estimate, "held": held, "own_sessions": args.own_sessions,
                       "trials": [t.__dict__ for t in trials]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
