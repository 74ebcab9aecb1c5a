"""S6-voice, shared by both sides: the audio, the microphones' offsets, the lag, the verdict, the K search.

Used by :mod:`benchmarks.voice_cost` (trio-native, unbatched and batched) and
:mod:`benchmarks.voice_cost_livekit` (the livekit plugin, in its own process), so
that every side is fed the same bytes at the same offsets and judged by the same
rule. Also the environment record (machine, versions, onnxruntime session options,
load average).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import math
import os
import platform
import random
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.env import cpu_model, package_version
from benchmarks.stats import summarize

WINDOW = 0.032
FRAME = 0.02
RATE = 16000
FRAME_SAMPLES = int(RATE * FRAME)
FRAME_BYTES = FRAME_SAMPLES * 2
ROOT = Path(__file__).resolve().parents[1]
PHRASES = [
    "Hello there, I would like to book a table for two people tonight please.",
    "Could you tell me what the weather will be like in Paris tomorrow?",
    "No, stop, wait a second.",
    "Yes.",
]


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
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "versions": {n: package_version(n) for n in (
            "onnxruntime", "numpy", "trio", "livekit", "livekit-agents", "livekit-plugins-silero",
            "espeakng-loader")},
    }
    if session is not None:
        env["onnxruntime"] = session_options(session)
    return env


def speech_signal() -> tuple[Any, str]:
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



def held_summary(held: int, trials: Sequence[Trial]) -> dict[str, float | None]:
    """The trial at the K held: its CPU share, and K per fully used core."""
    best = next((t for t in trials if t.ok and t.k == held), None)
    if best is None:
        return {"held": held, "proc_cpu_util": None, "per_full_core": None, "cpu_per_window_us": None}
    per_core = held / best.proc_cpu_util if best.proc_cpu_util > 0 else None
    return {"held": held, "proc_cpu_util": best.proc_cpu_util, "per_full_core": per_core,
            "cpu_per_window_us": best.cpu_per_window_us}

