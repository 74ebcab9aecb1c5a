"""What PocketSphinxSTT costs, and why its decoder runs in a worker process.

``python -m benchmarks.sphinx_cost`` (needs the ``sphinx`` and ``espeak`` extras).
Real clock. The speech is the six sentences of ``tests/test_sphinx.py`` made by
espeak-ng at 150 wpm with a -50 dBFS noise floor, at 16 kHz (about 18 s of audio
with the silences around each sentence).

1. **Start.** Spawning a worker and loading the model until it says ready (wall
   time), and the CPU time that costs (the worker's, read from ``RUSAGE_CHILDREN``
   once it is reaped). ``--reps`` workers one after another.
2. **Decode, as fast as it goes.** The whole audio through
   :meth:`PocketSphinxSTT.stream <trio_playout.sphinx.PocketSphinxSTT.stream>`
   unpaced: wall time from the first frame to the end of the stream, and the
   worker's CPU time less the start's (so: endpointer plus decoder). Both per
   second of audio: the real-time factor (RTF; below 1 keeps up with a live
   microphone, on one core).
3. **Final latency, paced.** The audio paced like a microphone on the real clock
   (20 ms frames): for each sentence, the time from the end of its audio to its
   final transcript. It includes the endpointer's silence (``endpoint_window``
   0.3 s, of which 90% must be non-speech) and the decoder's last passes.
4. **The event loop meanwhile.** A trio task that sleeps 1 ms in a loop records how
   late it wakes while (a) a stream decodes the audio unpaced in its worker process,
   and (b), for comparison, the same decoding runs in-process in a thread
   (``trio.to_thread.run_sync`` per 20 ms frame and for each ``end_utt``). The
   bindings keep the GIL while they decode, so (b) stalls the loop; this is why the
   library uses (a).

Numbers are N, min, p50, p90, p99, max (ms) where samples repeat; the environment is
printed with them and ``--json`` writes everything to a file.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import trio

from benchmarks.env import environment
from benchmarks.stats import summarize

FRAME = 0.02
RATE = 16000
SENTENCES = [
    "Hello there, I would like to book a table for two people tonight please.",
    "What is the weather like in London today?",
    "Please call my mother tomorrow morning.",
    "I want to buy a new car.",
    "Turn off the lights in the kitchen.",
    "Thank you very much for your help.",
]
LEAD, TAIL = 0.5, 1.0


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _ms(values: list[float]) -> dict[str, float] | None:
    summary = summarize([v * 1000 for v in values])
    return None if summary is None else {k: round(v, 3) for k, v in summary.as_dict().items()}


def make_speech() -> tuple[Any, list[float]]:
    """16 kHz speech of the sentences with a noise floor; and where each sentence's audio ends."""
    import numpy as np

    import trio_playout as tp
    from trio_playout._resample import float_to_pcm16, pcm16_to_float_mono
    from trio_playout.espeak import EspeakTTS

    tts = EspeakTTS("en-us", 150)
    parts: list[Any] = []
    ends: list[float] = []
    t = 0.0
    for i, text in enumerate(SENTENCES):
        speech = pcm16_to_float_mono(tts.render_sync(text, sample_rate=RATE).data, 1).astype(np.float64)
        x = np.concatenate([np.zeros(round(LEAD * RATE)), speech, np.zeros(round(TAIL * RATE))])
        x += np.random.default_rng(i).normal(0.0, 100 / 32768, len(x))
        parts.append(x)
        ends.append(t + LEAD + len(speech) / RATE)
        t += len(x) / RATE
    return tp.AudioFrame(float_to_pcm16(np.concatenate(parts)), RATE), ends


async def _frames(audio: Any, *, paced: bool) -> AsyncIterator[Any]:
    import trio_playout as tp

    step = round(FRAME * RATE) * 2
    t0 = trio.current_time()
    for k, i in enumerate(range(0, len(audio.data), step)):
        if paced:
            await trio.sleep_until(t0 + (k + 1) * FRAME)
        else:
            await trio.lowlevel.checkpoint()
        yield tp.AudioFrame(audio.data[i:i + step], RATE)


def start_cost(reps: int) -> dict[str, Any]:
    """Spawn a worker, wait for ready, end it; wall and CPU seconds per start."""
    from trio_playout import sphinx

    config = sphinx.PocketSphinxSTT()._config()
    walls, cpus = [], []
    for _ in range(reps):
        cpu0 = _children_cpu()
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", sphinx._BOOT, str(sphinx._WORKER)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(sphinx._HEADER.pack(b"C", len(config)) + config)
        proc.stdin.flush()
        ready = json.loads(proc.stdout.readline())
        walls.append(time.perf_counter() - t0)
        assert ready.get("ready"), ready
        proc.stdin.close()
        proc.stdout.read()
        proc.wait()
        cpus.append(_children_cpu() - cpu0)
    # ru_maxrss of children: the largest reaped child (kB on Linux), i.e. one loaded worker.
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_ms": _ms(walls), "cpu_ms": _ms(cpus), "worker_max_rss_mb": round(rss_mb, 1)}


async def _ticker(lateness: list[float], stop: trio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await trio.sleep(0.001)
        lateness.append(time.perf_counter() - t - 0.001)


async def _with_ticker(job: Callable[[], Any]) -> tuple[Any, list[float]]:
    lateness: list[float] = []
    stop = trio.Event()
    result: list[Any] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_ticker, lateness, stop)

        async def run() -> None:
            result.append(await job())
            stop.set()
        nursery.start_soon(run)
    return result[0], lateness


async def decode_unpaced(audio: Any, start_cpu: float) -> dict[str, Any]:
    from trio_playout.sphinx import PocketSphinxSTT

    stt = PocketSphinxSTT()

    async def job() -> tuple[float, float, list[str]]:
        cpu0 = _children_cpu()
        t0 = time.perf_counter()
        texts = [t.text async for t in stt.stream(_frames(audio, paced=False))]
        return time.perf_counter() - t0, _children_cpu() - cpu0, texts

    (wall, cpu, texts), lateness = await _with_ticker(job)
    seconds = audio.duration
    return {"audio_s": round(seconds, 3), "finals": len(texts), "wall_s": round(wall, 3),
            "wall_rtf_incl_start": round(wall / seconds, 3),
            "worker_cpu_s": round(cpu, 3),
            "decode_cpu_rtf": round(max(0.0, cpu - start_cpu) / seconds, 3),
            "loop_lateness_ms": _ms(lateness), "texts": texts}


async def decode_in_thread(audio: Any) -> dict[str, Any]:
    """The alternative the library does not take: the decoder in this process, in a thread."""
    import pocketsphinx  # type: ignore[import-untyped,import-not-found,unused-ignore]

    decoder = await trio.to_thread.run_sync(lambda: pocketsphinx.Decoder(loglevel="FATAL"))
    step = round(FRAME * RATE) * 2
    sentence = len(audio.data) // len(SENTENCES)

    async def job() -> float:
        t0 = time.perf_counter()
        for s in range(0, len(audio.data), sentence):  # one utterance per sentence
            await trio.to_thread.run_sync(decoder.start_utt)
            for i in range(s, min(s + sentence, len(audio.data)), step):
                chunk = audio.data[i:i + step]
                await trio.to_thread.run_sync(decoder.process_raw, chunk)
            await trio.to_thread.run_sync(decoder.end_utt)
        return time.perf_counter() - t0

    wall, lateness = await _with_ticker(job)
    return {"wall_s": round(wall, 3), "wall_rtf": round(wall / audio.duration, 3),
            "loop_lateness_ms": _ms(lateness)}


async def final_latency(audio: Any, ends: list[float]) -> dict[str, Any]:
    from trio_playout.sphinx import PocketSphinxSTT

    stt = PocketSphinxSTT()
    delays: list[float] = []
    t0 = trio.current_time()
    async for _transcript in stt.stream(_frames(audio, paced=True)):
        now = trio.current_time() - t0
        if len(delays) < len(ends):
            delays.append(now - ends[len(delays)])
    return {"finals": len(delays), "after_end_of_audio_ms": _ms(delays)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sphinx_cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="worker starts to time (default 5)")
    parser.add_argument("--no-paced", action="store_true", help="skip the paced run (it takes ~18 s)")
    parser.add_argument("--no-thread", action="store_true", help="skip the in-thread comparison")
    parser.add_argument("--json", help="also write the results to this file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    env = environment()
    try:
        from importlib.metadata import version
        env["pocketsphinx"] = version("pocketsphinx")
    except Exception:  # pragma: no cover - reported, not fatal
        env["pocketsphinx"] = None
    audio, ends = make_speech()
    results: dict[str, Any] = {"environment": env}
    print(json.dumps(env))
    results["start"] = start = start_cost(args.reps)
    print(f"start: wall {start['wall_ms']} ms; cpu {start['cpu_ms']} ms; "
          f"worker max RSS {start['worker_max_rss_mb']} MB")
    start_cpu = start["cpu_ms"]["p50"] / 1000 if start["cpu_ms"] else 0.0
    results["unpaced"] = unpaced = trio.run(decode_unpaced, audio, start_cpu)
    print(f"unpaced ({unpaced['audio_s']} s audio, {unpaced['finals']} finals): wall {unpaced['wall_s']} s "
          f"(RTF {unpaced['wall_rtf_incl_start']} incl. start); decode CPU RTF {unpaced['decode_cpu_rtf']}; "
          f"loop lateness {unpaced['loop_lateness_ms']} ms")
    if not args.no_thread:
        results["in_thread"] = thread = trio.run(decode_in_thread, audio)
        print(f"in-thread (comparison): wall RTF {thread['wall_rtf']}; "
              f"loop lateness {thread['loop_lateness_ms']} ms")
    if not args.no_paced:
        results["paced"] = paced = trio.run(final_latency, audio, ends)
        print(f"paced: {paced['finals']} finals, "
              f"final after end of audio {paced['after_end_of_audio_ms']} ms")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0 if math.isfinite(unpaced["wall_s"]) else 1


if __name__ == "__main__":
    sys.exit(main())
