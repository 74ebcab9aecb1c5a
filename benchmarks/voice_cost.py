"""What the real Silero VAD costs, and how many conversations one core can listen to.

``python -m benchmarks.voice_cost`` (needs the ``vad`` extra; the ``espeak`` extra
for real speech, else it falls back to silence and noise and says so; livekit-agents
with ``livekit-plugins-silero`` for section 4). Real clock. ``--out DIR`` writes
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
4. **Measured, livekit.** The same trial with the stock ``livekit-plugins-silero``
   VAD on plain asyncio, in its own process (:mod:`benchmarks.voice_cost_livekit`):
   the same audio (handed over as a file), the same microphone offsets, the same
   lag metric and K search. What the plugin forces differently is listed there and
   in the report (its own session and thread-pool executor, the smoothing). Its
   process runs the model in executor threads, so its CPU is the whole process's.
   The two K are printed side by side, as a ratio. ``--no-livekit`` skips it.
5. **Batching** (``--batch``, on by default; :mod:`benchmarks._silero_batch`): the
   model's cost per window when B conversations' windows go through one
   onnxruntime call, B = 1..64, and a check that the batched probabilities equal
   the unbatched ones over real speech.

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
import datetime as _dt
import hashlib
import json
import math
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.stats import Summary, summarize

WINDOW = 0.032
FRAME = 0.02
RATE = 16000
FRAME_SAMPLES = int(RATE * FRAME)
FRAME_BYTES = FRAME_SAMPLES * 2
ROOT = Path(__file__).resolve().parents[1]
FULL: dict[str, int | float] = {"windows": 5000, "warmup": 300, "seconds": 6.0, "max_k": 1024}
QUICK: dict[str, int | float] = {"windows": 500, "warmup": 50, "seconds": 3.0, "max_k": 8}
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


def loadavg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def sha256(path: str | Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.sha256(fh.read()).hexdigest()


def session_options(session: Any) -> dict[str, object]:
    opts = session.get_session_options()
    return {
        "intra_op_num_threads": opts.intra_op_num_threads,
        "inter_op_num_threads": opts.inter_op_num_threads,
        "execution_mode": str(opts.execution_mode),
        "intra_op.allow_spinning": opts.get_session_config_entry("session.intra_op.allow_spinning"),
        "inter_op.allow_spinning": opts.get_session_config_entry("session.inter_op.allow_spinning"),
        "providers": session.get_providers(),
    }


def environment(session: Any = None) -> dict[str, object]:
    """The machine, interpreter, packages and (when given) the onnxruntime session."""
    try:
        cpus: list[int] | None = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = None
    env: dict[str, object] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "loadavg": loadavg(),
        "cpu_count": os.cpu_count(),
        "affinity": cpus,
        "cpu_model": _cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {n: _version(n) for n in ("onnxruntime", "numpy", "trio", "livekit", "livekit-agents",
                                               "livekit-plugins-silero", "espeakng-loader")},
    }
    if session is not None:
        env["onnxruntime"] = session_options(session)
    return env


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


def pcm16(signal: Any) -> bytes:
    """float [-1, 1] -> 16-bit little-endian PCM, the microphone's bytes on both sides."""
    import numpy as np

    scaled = np.clip(np.rint(np.asarray(signal, dtype=np.float64) * 32768.0), -32768, 32767)
    return bytes(scaled.astype("<i2").tobytes())


def frame_offsets(k: int, pcm: bytes) -> list[int]:
    """Where each of K conversations starts in the audio (bytes): the same on both sides."""
    rng = random.Random(k)
    return [rng.randrange(0, len(pcm) // FRAME_BYTES) * FRAME_BYTES for _ in range(k)]


def frame_at(pcm: bytes, offset: int, n: int) -> bytes:
    """Frame ``n`` of the conversation starting at ``offset`` (the audio looped)."""
    at = (offset + n * FRAME_BYTES) % (len(pcm) - FRAME_BYTES)
    return pcm[at:at + FRAME_BYTES]


def decided_lag(timestamp: float, now: float, t_start: float) -> float:
    """Clock time a window was decided minus the time its completing frame was delivered."""
    delivered = math.ceil(timestamp / FRAME - 1e-6) * FRAME
    return now - (t_start + delivered)


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
    import trio

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
    cpu_util: float  # CPU time of the thread running the loop (trio or asyncio) / wall time
    proc_cpu_util: float = 0.0  # CPU time of the whole process (every thread) / wall time
    cpu_per_window_us: float = 0.0  # the process's CPU time / windows decided
    extra: dict[str, float] = field(default_factory=dict)


def judge(k: int, lags: Sequence[Sequence[tuple[float, float]]], seconds: float, max_lag: float, *,
          cpu_util: float, proc_cpu_util: float, proc_cpu_s: float) -> Trial:
    """A trial's verdict from each conversation's (window end in audio s, lag s) pairs.

    Behind real time: more than 10% of the windows later than ``max_lag``, or the
    median lag of the last second more than ``max_lag`` over that of the second second.
    """
    flat = sorted(lag for per in lags for _, lag in per)
    summary = summarize(flat)
    if summary is None:
        raise RuntimeError(f"K={k}: no window was decided")
    tail = sorted(lag for per in lags for ts, lag in per if ts > seconds - 1.0)
    head = sorted(lag for per in lags for ts, lag in per if 1.0 <= ts < 2.0)
    growing = bool(tail and head and tail[len(tail) // 2] > head[len(head) // 2] + max_lag)
    late = sum(1 for lag in flat if lag > max_lag) / len(flat)
    ok = summary.p90 <= max_lag and not growing
    return Trial(k, len(flat), summary.p50 * 1e3, summary.p99 * 1e3, summary.max * 1e3, late, growing, ok,
                 cpu_util, proc_cpu_util, proc_cpu_s / len(flat) * 1e6)


def run_trial(k: int, signal: Any, seconds: float, max_lag: float, *, own_sessions: bool = False) -> Trial:
    import trio

    from trio_playout import AudioFrame
    from trio_playout.silero import SileroVAD

    pcm = pcm16(signal)
    vads = [SileroVAD(share_session=not own_sessions) for _ in range(k)]
    lags: list[list[tuple[float, float]]] = [[] for _ in range(k)]
    offsets = frame_offsets(k, pcm)
    frames_total = int(seconds / FRAME)

    async def conversation(i: int, t_start: float) -> None:
        async def microphone() -> AsyncIterator[AudioFrame]:
            for n in range(frames_total):
                await trio.sleep_until(t_start + (n + 1) * FRAME)
                yield AudioFrame(frame_at(pcm, offsets[i], n), RATE)

        async for event in vads[i].stream(microphone()):
            if event.type.value == "inference":
                lags[i].append((event.timestamp, decided_lag(event.timestamp, trio.current_time(), t_start)))

    async def main() -> None:
        t0 = trio.current_time() + 0.2
        async with trio.open_nursery() as nursery:
            for i in range(k):
                nursery.start_soon(conversation, i, t0 + (i % 50) * FRAME / 50)

    c, p, w = time.thread_time(), time.process_time(), time.perf_counter()
    trio.run(main)
    wall = time.perf_counter() - w
    proc = time.process_time() - p
    return judge(k, lags, seconds, max_lag, cpu_util=(time.thread_time() - c) / wall,
                 proc_cpu_util=proc / wall, proc_cpu_s=proc)


def show(trial: Trial) -> None:
    print(f"  K={trial.k:4d}: lag p50 {trial.lag_p50_ms:7.2f} ms  p99 {trial.lag_p99_ms:8.2f} ms  "
          f"max {trial.lag_max_ms:8.2f} ms  late {trial.late_fraction:6.1%}  "
          f"CPU {trial.proc_cpu_util:5.0%} (loop thread {trial.cpu_util:4.0%})  "
          f"{trial.cpu_per_window_us:5.0f} us/window  {'ok' if trial.ok else 'BEHIND'}", flush=True)


def search(run: Callable[[int], Trial], max_k: int) -> tuple[int, list[Trial]]:
    """The largest K that ``run`` holds: K doubles from 1, then bisects to within K/16."""
    trials: list[Trial] = []
    good, bad = 0, None
    k = 1
    while k <= max_k:
        trial = run(k)
        trials.append(trial)
        show(trial)
        if not trial.ok:
            bad = k
            break
        good = k
        k *= 2
    while bad is not None and bad - good > max(1, good // 16):
        k = (good + bad) // 2
        trial = run(k)
        trials.append(trial)
        show(trial)
        if trial.ok:
            good = k
        else:
            bad = k
    return good, trials


def capacity(signal: Any, seconds: float, max_lag: float, max_k: int, *,
             own_sessions: bool = False) -> tuple[int, list[Trial]]:
    return search(lambda k: run_trial(k, signal, seconds, max_lag, own_sessions=own_sessions), max_k)


def held_summary(held: int, trials: Sequence[Trial]) -> dict[str, float | None]:
    """The trial at the K held: its CPU share, and K per fully used core."""
    best = next((t for t in trials if t.ok and t.k == held), None)
    if best is None:
        return {"held": held, "proc_cpu_util": None, "per_full_core": None, "cpu_per_window_us": None}
    per_core = held / best.proc_cpu_util if best.proc_cpu_util > 0 else None
    return {"held": held, "proc_cpu_util": best.proc_cpu_util, "per_full_core": per_core,
            "cpu_per_window_us": best.cpu_per_window_us}


def projection(batch: dict[str, Any], trio_held: dict[str, float | None], size: int = 16
               ) -> dict[str, float] | None:
    """What batching ``size`` windows per call would give trio-native (an estimate, not measured)."""
    rows = {r["batch"]: r for r in batch["rows"]}
    cpw, per_core = trio_held.get("cpu_per_window_us"), trio_held.get("per_full_core")
    if size not in rows or 0 not in rows or cpw is None or per_core is None:
        return None
    saving = rows[0]["cpu_us"]["p50"] - rows[size]["cpu_us"]["p50"]
    after = cpw - saving
    if after <= 0:
        return None
    return {"batch": size, "saving_us": saving, "cpu_per_window_us": cpw,
            "projected_cpu_per_window_us": after, "per_full_core": per_core,
            "projected_per_full_core": WINDOW * 1e6 / after}


def run_livekit(args: argparse.Namespace, signal: Any, source: str) -> dict[str, Any]:
    """Section 4 in its own process; its JSON document, or ``{"skipped": reason}``."""
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
        proc = subprocess.run(cmd, cwd=ROOT, env=env, check=False)
        if proc.returncode != 0 or not out.is_file():
            return {"skipped": f"benchmarks.voice_cost_livekit exited with {proc.returncode}"}
        doc: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return doc


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def _trial_rows(trials: Sequence[dict[str, Any]]) -> list[str]:
    rows = ["| K | windows | lag p50 | lag p99 | lag max | later than max-lag | growing | process CPU | "
            "loop thread CPU | CPU per window | verdict |",
            "|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|:---:|"]
    for t in trials:
        rows.append(f"| {t['k']} | {t['windows']} | {t['lag_p50_ms']:.2f} ms | {t['lag_p99_ms']:.2f} ms | "
                    f"{t['lag_max_ms']:.2f} ms | {t['late_fraction']:.1%} | "
                    f"{'yes' if t['growing'] else 'no'} | "
                    f"{t['proc_cpu_util']:.0%} | {t['cpu_util']:.0%} | {t['cpu_per_window_us']:.0f} us | "
                    f"{'ok' if t['ok'] else 'behind'} |")
    return rows


def markdown(doc: dict[str, Any]) -> str:
    """The report of one run (the JSON document of :func:`main`)."""
    env = doc["environment"]
    run = doc["run"]
    lines = [
        "# S6-voice: conversations one core holds with the Silero VAD on every input (real time)",
        "",
        f"Command: `{run['command']}`. {env['cpu_model']}, {env['cpu_count']} CPUs, "
        f"pinned to CPU {run['cpu'] if run['cpu'] is not None else '(not pinned)'}; Python {env['python']} "
        f"({env['platform']}); {env['date_utc']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        f"Audio: {doc['source']}, looped; each conversation starts at its own offset (the same offsets "
        "on both sides), 20 ms frames at 16 kHz paced on the real clock.",
        "",
        "Load average (1/5/15 min) at the start of each section: "
        + "; ".join(f"{name} {'/'.join(f'{x:.2f}' for x in la)}" for name, la in doc["loadavg"].items() if la)
        + ". The machine is shared: another process on the pinned CPU takes part of the core from "
        "either side, so K moves with the load; the ratio of two runs taken minutes apart is only "
        "as steady as the load between them.",
        "",
        f"Real time = at most 10% of the windows decided more than {run['max_lag'] * 1e3:.0f} ms after "
        "the frame completing them was delivered, and the lag not growing (median of the last second "
        "within max-lag of the second second's). K doubles, then bisects to within K/16. "
        f"Each trial is {run['seconds']:g} s of audio per conversation.",
        "",
        "## Side by side",
        "",
        "| implementation | K held in real time | process CPU at that K | K per fully used core "
        "(extrapolated) | process CPU per window at that K |",
        "|---|---:|---:|---:|---:|",
    ]
    sides = [("trio-native (`trio_playout.silero.SileroVAD`)", doc["trio_held"])]
    lk = doc.get("livekit") or {}
    if "held" in lk:
        sides.append(("livekit (`livekit.plugins.silero.VAD`, asyncio)", lk["held_summary"]))
    for name, h in sides:
        util = h.get("proc_cpu_util")
        lines.append(f"| {name} | {h['held']} | {_fmt(util * 100 if util is not None else None)}% | "
                     f"{_fmt(h.get('per_full_core'))} | {_fmt(h.get('cpu_per_window_us'))} us |")
    comp = doc.get("comparison")
    if comp:
        lines += ["", f"**trio-native holds {comp['trio_k']} conversations, livekit {comp['livekit_k']}: "
                  f"{_fmt(comp['ratio'], '.2f')}x.** Extrapolated to a fully used core: "
                  f"{_fmt(comp['per_full_core_ratio'], '.2f')}x. Same model file on both sides (sha256): "
                  f"{'yes' if comp.get('same_model_file') else 'NO'}."]
    elif lk.get("skipped"):
        lines += ["", f"livekit: skipped ({lk['skipped']})."]
    w, c = doc["window_us"], doc["window_cpu_us"]
    lines += [
        "",
        "## Per window (trio-native)",
        "",
        "| what | N | min | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| `SileroModel` call, wall | {w['n']:.0f} | {w['min']:.0f} us | {w['p50']:.0f} us | "
        f"{w['p90']:.0f} us | {w['p99']:.0f} us | {w['max']:.0f} us |",
        f"| `SileroModel` call, thread CPU | {c['n']:.0f} | {c['min']:.0f} us | {c['p50']:.0f} us | "
        f"{c['p90']:.0f} us | {c['p99']:.0f} us | {c['max']:.0f} us |",
        "",
        f"`SileroVAD.stream` from 48 kHz stereo (downmix, resampling, model, rules), unpaced: "
        f"{doc['stream_path']['cpu_mean_us']:.0f} us CPU per window (mean of "
        f"{doc['stream_path']['windows']:.0f}). Estimate 32 ms / cost: {doc['estimate']['cpu_p50']:.0f} "
        f"conversations per core at the model's CPU p50, {doc['estimate']['stream_cpu_mean']:.0f} with the "
        "whole stream path.",
        "",
        "## trio-native trials (sessions: "
        f"{'one per conversation' if doc['own_sessions'] else 'one shared'})",
        "",
        *_trial_rows(doc["trials"]),
    ]
    if "held" in lk:
        plugin = lk.get("plugin", {})
        lines += ["", "## livekit trials", "", *_trial_rows(lk["trials"]), "",
                  "The plugin's own `inference_duration` (window start -> probability back on the loop, "
                  "through the executor) per trial, ms: "
                  + ", ".join(f"K={t['k']}: p50 {t['extra'].get('inference_p50_ms', 0):.2f}, "
                              f"p99 {t['extra'].get('inference_p99_ms', 0):.2f}" for t in lk["trials"]) + ".",
                  "", "What the plugin forces differently:", ""]
        lines += [f"- {d}" for d in lk.get("differences", [])]
        if plugin:
            lines += ["", f"Plugin setup: `{json.dumps(plugin)}`"]
    batch = doc.get("batch")
    if batch:
        from benchmarks._silero_batch import markdown_section

        lines += ["", *markdown_section(batch)]
        pr = batch.get("projection")
        if pr:
            lines += ["", f"Would it pay (estimate, not measured): at B={pr['batch']} the model costs "
                      f"{pr['saving_us']:.0f} us less per window than today's call; trio-native's "
                      f"{pr['cpu_per_window_us']:.0f} us of process CPU per window at the K it held would "
                      f"become {pr['projected_cpu_per_window_us']:.0f} us, about "
                      f"{pr['projected_per_full_core']:.0f} conversations per fully used core instead of "
                      f"{pr['per_full_core']:.0f}. A batcher collecting the windows that are ready on a "
                      "tick adds up to one tick of lag to each window."]
    return "\n".join(lines) + "\n"


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
    p.add_argument("--livekit", action=argparse.BooleanOptionalAction, default=True,
                   help="section 4, the livekit plugin in its own process (default: on)")
    p.add_argument("--batch", action=argparse.BooleanOptionalAction, default=True,
                   help="section 5, the model's cost per window batched (default: on)")
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

    livekit: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    if args.livekit:
        print("\n4. measured, livekit: the same with livekit-plugins-silero on asyncio, its own process "
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

    batch: dict[str, Any] | None = None
    if args.batch:
        from benchmarks import _silero_batch

        print("\n5. batching: B conversations' windows in one onnxruntime call", flush=True)
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
                "max_lag": args.max_lag, "max_k": args.max_k, "windows": args.windows, "warmup": args.warmup},
        "environment": env, "loadavg": loads, "source": source, "window_us": window, "window_cpu_us": cpu,
        "stream_path": path, "estimate": estimate, "held": held, "trio_held": trio_held,
        "own_sessions": args.own_sessions, "trials": [asdict(t) for t in trials],
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
