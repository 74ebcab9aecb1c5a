"""S6-voice, the livekit side: how many conversations one core holds with livekit's Silero VAD.

``python -m benchmarks.voice_cost_livekit`` (``benchmarks.voice_cost`` runs it as a
subprocess, in its own process, and prints its K beside trio-native's). Plain
asyncio, no trio: K asyncio tasks, each a microphone paced on the real clock (20 ms
frames at 16 kHz, the same audio and the same per-conversation offsets as
:func:`benchmarks._voice_cost_trio.run_trial`, start times staggered the same way),
pushing into its own stream of the stock ``livekit.plugins.silero`` VAD, loaded once
with ``silero.VAD.load(...)`` and the same options as ``trio_playout``'s
``SileroVAD()`` defaults. A window is *decided* when its ``INFERENCE_DONE`` event
reaches the conversation's consumer (``async for event in stream``); its lag is that
clock time minus the time the frame completing the window was delivered (the
window's end is the event's ``samples_index`` at 16 kHz), as on the trio side. The
same K search and the same verdict (:func:`benchmarks._voice_cost_common.search`,
:func:`benchmarks._voice_cost_common.judge`).

The process is pinned to one CPU by default (``--cpu``, default the last one it may
use; ``--no-pin`` to leave it free): the plugin runs every window in the loop's
default thread-pool executor, and unpinned those threads would use every core. Its
CPU figure is the whole process's CPU time (event loop and executor threads) over
wall time; the loop thread's share is printed beside it.

What the plugin forces differently (:data:`DIFFERENCES`, also in the JSON):
see the list below; none of it is set by this benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.resources
import json
import logging
import os
import sys
import time
from typing import Any

from benchmarks import _voice_cost_common as vc
from benchmarks.stats import summarize

DIFFERENCES = [
    "one onnxruntime session per `silero.VAD.load()`, shared by the streams of that VAD (here one VAD for "
    "all K streams, as trio_playout shares one session per process); the plugin loads the model from its "
    "package resources, the same file (same sha256) trio_playout finds; session options are the same "
    "(1 intra-op and 1 inter-op thread, sequential, no spinning)",
    "every 32 ms window is run through `loop.run_in_executor(None, ...)`: the loop's default "
    "ThreadPoolExecutor (min(32, os.cpu_count() + 4) threads; os.cpu_count() ignores the pinning), so each "
    "window costs a thread hop there and back and the K streams' windows run on several threads "
    "(trio_playout runs the model inline on the trio thread)",
    "probabilities are smoothed (exponential filter, alpha 0.35) before the thresholds; same thresholds "
    "(0.5 activation, max(0.5 - 0.15, 0.01) deactivation), min_speech 0.05 s, min_silence 0.55 s",
    "per window it also combines the pending frames, copies the window into a speech buffer (prefix "
    "padding 0.5 s, max_buffered_speech 60 s: 1.9 MB of int16 allocated per stream) and builds an "
    "INFERENCE_DONE event carrying a copy of the window's audio; a metrics task per stream reads every "
    "event through a tee",
    "int16 -> float by dividing by 32767 (trio_playout: 32768); 16 kHz input, so no resampler on either "
    "side (at another rate the plugin uses livekit's QUICK resampler, trio_playout its polyphase sinc)",
    "its 'VAD inference is slower than realtime' warning (an inference over 0.2 s, only when already far "
    "behind) is silenced here (logger level ERROR) to keep the output readable",
]


def load_vad() -> Any:
    from livekit.plugins import silero

    return silero.VAD.load(min_speech_duration=0.05, min_silence_duration=0.55, activation_threshold=0.5,
                           sample_rate=16000, force_cpu=True)


def plugin_setup(vad: Any) -> dict[str, object]:
    """What the loaded VAD runs with (read back from it)."""
    info: dict[str, object] = {"executor_threads": min(32, (os.cpu_count() or 1) + 4)}
    opts = getattr(vad, "_opts", None)
    if opts is not None:
        info["options"] = {k: getattr(opts, k) for k in (
            "min_speech_duration", "min_silence_duration", "prefix_padding_duration", "max_buffered_speech",
            "activation_threshold", "deactivation_threshold", "sample_rate")}
    session = getattr(vad, "_onnx_session", None)
    if session is not None:
        info["onnxruntime"] = vc.session_options(session)
    model = importlib.resources.files("livekit.plugins.silero.resources") / "silero_vad.onnx"
    with importlib.resources.as_file(model) as path:
        info["model"] = {"path": str(path), "sha256": vc.sha256(path)}
    return info


async def _conversations(vad: Any, k: int, pcm: bytes, seconds: float
                         ) -> tuple[list[list[tuple[float, float]]], list[float]]:
    from livekit import rtc
    from livekit.agents.vad import VADEventType

    loop = asyncio.get_running_loop()
    offsets = vc.frame_offsets(k, pcm)
    frames_total = int(seconds / vc.FRAME)
    lags: list[list[tuple[float, float]]] = [[] for _ in range(k)]
    inference: list[float] = []

    async def conversation(i: int, t_start: float) -> None:
        stream = vad.stream()

        async def microphone() -> None:
            for n in range(frames_total):
                await asyncio.sleep(max(0.0, t_start + (n + 1) * vc.FRAME - loop.time()))
                stream.push_frame(rtc.AudioFrame(vc.frame_at(pcm, offsets[i], n), vc.RATE, 1,
                                                 vc.FRAME_SAMPLES))
            stream.end_input()

        mic = asyncio.create_task(microphone())
        try:
            async for event in stream:
                if event.type == VADEventType.INFERENCE_DONE:
                    now = loop.time()
                    end = event.samples_index / vc.RATE
                    lags[i].append((end, vc.decided_lag(end, now, t_start)))
                    inference.append(event.inference_duration)
            await mic
        finally:
            mic.cancel()
            await stream.aclose()

    t0 = loop.time() + 0.2
    await asyncio.gather(*(conversation(i, t0 + (i % 50) * vc.FRAME / 50) for i in range(k)))
    return lags, inference


def run_trial(vad: Any, k: int, signal: Any, seconds: float, max_lag: float) -> vc.Trial:
    """K paced livekit conversations in one fresh asyncio loop; the same verdict as trio's."""
    pcm = vc.pcm16(signal)
    c, p, w = time.thread_time(), time.process_time(), time.perf_counter()
    lags, inference = asyncio.run(_conversations(vad, k, pcm, seconds))
    wall = time.perf_counter() - w
    proc = time.process_time() - p
    trial = vc.judge(k, lags, seconds, max_lag, cpu_util=(time.thread_time() - c) / wall,
                     proc_cpu_util=proc / wall, proc_cpu_s=proc)
    inf = summarize(inference)
    if inf is not None:
        trial.extra = {"inference_p50_ms": inf.p50 * 1e3, "inference_p99_ms": inf.p99 * 1e3,
                       "inference_max_ms": inf.max * 1e3}
    return trial


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.voice_cost_livekit",
                                description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="audio per conversation per trial (default 6)")
    p.add_argument("--max-lag", type=float, default=0.032, help="p90 lag that counts as real time (s)")
    p.add_argument("--max-k", type=int, default=1024, help="largest K tried")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last one allowed)")
    p.add_argument("--no-pin", action="store_true", help="do not pin (the executor may use every core)")
    p.add_argument("--signal", default=None, help="the 16 kHz float32 audio as .npy (default: generate it)")
    p.add_argument("--source", default=None, help="what --signal is (for the report)")
    p.add_argument("--quick", action="store_true", help="short trials, K <= 8 (a smoke run)")
    p.add_argument("--json", default=None, help="write the results to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.seconds, args.max_k = 3.0, 8
    if not args.no_pin:
        os.sched_setaffinity(0, {args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))})
    try:
        vad = load_vad()
    except ImportError as exc:
        print(f"livekit-plugins-silero unavailable: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("livekit.plugins.silero").setLevel(logging.ERROR)
    if args.signal is not None:
        import numpy as np

        signal = np.load(args.signal)
        source = args.source or args.signal
    else:
        signal, source = vc.speech_signal()
    env = vc.environment()
    setup = plugin_setup(vad)
    print(f"   livekit {env['versions']}: one VAD.load(), K streams; {setup['executor_threads']} executor "
          f"threads; affinity {env['affinity']}", flush=True)
    held, trials = vc.search(lambda k: run_trial(vad, k, signal, args.seconds, args.max_lag), args.max_k)
    summary = vc.held_summary(held, trials)
    print(f"   livekit: one core holds {held} conversations with VAD in real time (measured)")
    if summary["per_full_core"] is not None:
        print(f"   at K={held} the process used {summary['proc_cpu_util']:.0%} of a core: "
              f"about {summary['per_full_core']:.0f} conversations per fully used core (extrapolated)")
    if args.json:
        doc = {"environment": env, "source": source, "held": held, "held_summary": summary,
               "trials": [vars(t) for t in trials], "plugin": setup, "differences": DIFFERENCES,
               "trio_imported": "trio" in sys.modules,
               "run": {"seconds": args.seconds, "max_lag": args.max_lag, "max_k": args.max_k}}
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
