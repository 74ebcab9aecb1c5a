"""S6-voice, the trio-native side: the model's cost per window and K paced conversations.

Part of :mod:`benchmarks.voice_cost` (see there for the method). :func:`run_trial`
runs K conversations in one trio thread, each a microphone paced on the real clock
feeding its own :class:`~trio_playout.silero.SileroVAD`; with ``batch=(max_batch,
max_wait)`` the VADs share one :class:`~trio_playout.silero.SileroBatcher`, and a
window's lag then includes its wait for the batch (up to ``max_wait``).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from typing import Any

from benchmarks._voice_cost_common import (
    FRAME,
    RATE,
    WINDOW,
    Trial,
    decided_lag,
    frame_at,
    frame_offsets,
    judge,
    pcm16,
    search,
)
from benchmarks.stats import Summary, summarize


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



def run_trial(k: int, signal: Any, seconds: float, max_lag: float, *, own_sessions: bool = False,
              batch: tuple[int, float] | None = None) -> Trial:
    """K paced conversations in one trio thread; ``batch=(max_batch, max_wait)`` shares a batcher."""
    import trio

    from trio_playout import AudioFrame
    from trio_playout.silero import SileroBatcher, SileroVAD

    pcm = pcm16(signal)
    batcher = SileroBatcher(max_batch=batch[0], max_wait=batch[1]) if batch is not None else None
    # A batcher runs every stream in its one session: own_sessions does not apply to it.
    vads = [SileroVAD(batcher=batcher) if batcher is not None else SileroVAD(share_session=not own_sessions)
            for _ in range(k)]
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

    async def conversations() -> None:
        t0 = trio.current_time() + 0.2
        async with trio.open_nursery() as nursery:
            for i in range(k):
                nursery.start_soon(conversation, i, t0 + (i % 50) * FRAME / 50)

    async def main() -> None:
        if batcher is None:
            await conversations()
        else:
            async with batcher:
                await conversations()

    c, p, w = time.thread_time(), time.process_time(), time.perf_counter()
    trio.run(main)
    wall = time.perf_counter() - w
    proc = time.process_time() - p
    trial = judge(k, lags, seconds, max_lag, cpu_util=(time.thread_time() - c) / wall,
                  proc_cpu_util=proc / wall, proc_cpu_s=proc)
    if batcher is not None and batcher.batches_run:
        trial.extra = {"batches": batcher.batches_run, "largest_batch": batcher.largest_batch,
                       "mean_batch": batcher.windows_run / batcher.batches_run}
    return trial


def capacity(signal: Any, seconds: float, max_lag: float, max_k: int, *,
             own_sessions: bool = False, batch: tuple[int, float] | None = None) -> tuple[int, list[Trial]]:
    return search(lambda k: run_trial(k, signal, seconds, max_lag, own_sessions=own_sessions, batch=batch),
                  max_k)


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

