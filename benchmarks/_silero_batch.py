"""Would batching the Silero model pay? Its cost per window when B windows share one call.

``python -m benchmarks._silero_batch`` (``--quick`` for a smoke run), also section 6
of ``python -m benchmarks.voice_cost``. The model is the one ``trio_playout.silero``
loads, in the session it makes (:func:`trio_playout.silero.new_session`: one thread,
sequential, no spinning); nothing in ``trio_playout`` is changed.

The model takes a batch: ``input`` is ``(B, 64 + 512)`` float32 (each row a stream's
previous 64 samples, then its window), ``state`` is ``(2, B, 128)`` (the batch in the
middle), ``sr`` a scalar; ``output`` is ``(B, 1)`` and ``stateN`` ``(2, B, 128)``.
:class:`BatchModel` carries B streams' context and state in those arrays.

1. **Cost.** B conversations, each at its own place in the audio (real speech and
   silence), one call per 32 ms step for all of them. What is timed per call is what
   a batcher would pay: copying the B windows (separate arrays, one per
   conversation) into the input, shifting the context, the ``run`` and reading the
   B probabilities. Cost per window = the call's time / B, as thread CPU time and
   as wall time, N calls per B (at least ``--windows`` windows and ``--min-calls``
   calls), warm-up discarded; the batch sizes are measured in interleaved rounds so
   that a busy minute on a shared machine falls on all of them alike. The first row
   is today's path, one :class:`~trio_playout.silero.SileroModel` call per window.
2. **Check.** For each B, the B streams run unbatched (one ``SileroModel`` each, as
   today) and batched over the same windows (real speech: the count of windows with
   probability >= 0.5 is printed); the largest absolute difference of the
   probabilities (and of the final states) must be about 1e-6.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from benchmarks.stats import summarize

BATCHES = (1, 2, 4, 8, 16, 32, 64)
WINDOW_S = 0.032
TOLERANCE = 1e-5  # probabilities in [0, 1]: float32 reassociation in the batched kernels gives ~1e-7


class BatchModel:
    """B streams of the Silero model in one onnxruntime call per step (16 kHz)."""

    window = 512
    context = 64

    def __init__(self, session: Any, batch: int) -> None:
        import numpy as np

        self._np = np
        self._session = session
        self.batch = batch
        self._buf = np.zeros((batch, self.context + self.window), dtype=np.float32)
        self._state = np.zeros((2, batch, 128), dtype=np.float32)
        self._sr = np.array(16000, dtype=np.int64)

    def __call__(self, windows: list[Any]) -> Any:
        """One window per stream (B arrays of 512 float32) -> B probabilities."""
        buf = self._buf
        buf[:, :self.context] = buf[:, self.window:]
        for row, window in enumerate(windows):
            buf[row, self.context:] = window
        out, self._state = self._session.run(None, {"input": buf, "state": self._state, "sr": self._sr})
        return out.reshape(-1)

    @property
    def state(self) -> Any:
        return self._state


def _streams(signal: Any, batch: int, steps: int) -> list[list[Any]]:
    """``steps`` windows for each of ``batch`` streams spread over the audio (views, looped)."""
    count = len(signal) // 512
    starts = [(j * count) // batch for j in range(batch)]
    return [[signal[((s + n) % count) * 512:((s + n) % count + 1) * 512] for s in starts]
            for n in range(steps)]


def check(session: Any, signal: Any, batch: int, steps: int) -> dict[str, float]:
    """Batched vs unbatched probabilities of the same B streams over ``steps`` windows."""
    import numpy as np

    from trio_playout.silero import SileroModel

    steps_windows = _streams(signal, batch, steps)
    singles = [SileroModel(session, 16000) for _ in range(batch)]
    batched = BatchModel(session, batch)
    diff = 0.0
    speech = 0
    for windows in steps_windows:
        ref = np.array([m(w) for m, w in zip(singles, windows, strict=True)], dtype=np.float64)
        got = batched(windows).astype(np.float64)
        diff = max(diff, float(np.max(np.abs(ref - got))))
        speech += int(np.sum(ref >= 0.5))
    state_diff = max(float(np.max(np.abs(m._state[:, 0, :] - batched.state[:, j, :])))
                     for j, m in enumerate(singles))
    return {"batch": batch, "windows": batch * steps, "speech_windows": speech,
            "max_abs_diff": diff, "state_max_abs_diff": state_diff}


def _per_window(samples_ns: list[float], batch: int) -> dict[str, float]:
    s = summarize([v / batch / 1000.0 for v in samples_ns])
    assert s is not None
    d = s.as_dict()
    d["mean"] = sum(samples_ns) / len(samples_ns) / batch / 1000.0
    return d


def cost(session: Any, signal: Any, batches: tuple[int, ...], windows: int, min_calls: int, warmup: int,
         rounds: int = 5) -> list[dict[str, Any]]:
    """Per-window wall and thread CPU time (us) of today's path and of each batch size."""
    from trio_playout.silero import SileroModel

    calls = {b: max(min_calls, -(-windows // b)) for b in batches}
    models: dict[int, Any] = {b: BatchModel(session, b) for b in batches}
    inputs = {b: _streams(signal, b, 256) for b in batches}
    single = SileroModel(session, 16000)
    single_in = [w[0] for w in _streams(signal, 1, 256)]
    wall: dict[int, list[float]] = {b: [] for b in (0, *batches)}
    cpu: dict[int, list[float]] = {b: [] for b in (0, *batches)}
    calls[0] = calls[1]
    for b in (0, *batches):  # warm-up, discarded
        for n in range(warmup):
            if b == 0:
                single(single_in[n % 256])
            else:
                models[b](inputs[b][n % 256])
    for r in range(rounds):
        for b in (0, *batches):
            n_calls = calls[b] // rounds + (1 if r < calls[b] % rounds else 0)
            for n in range(n_calls):
                if b == 0:
                    w = single_in[n % 256]
                    c, t = time.thread_time_ns(), time.perf_counter_ns()
                    single(w)
                else:
                    ws = inputs[b][n % 256]
                    model = models[b]
                    c, t = time.thread_time_ns(), time.perf_counter_ns()
                    model(ws)
                dt = time.perf_counter_ns() - t
                dc = time.thread_time_ns() - c
                wall[b].append(dt)
                cpu[b].append(dc)
    rows: list[dict[str, Any]] = []
    for b in (0, *batches):
        size = max(b, 1)
        rows.append({"batch": b, "what": "SileroModel, one call per window (today)" if b == 0
                     else f"BatchModel, {b} windows per call", "calls": len(cpu[b]),
                     "windows": len(cpu[b]) * size,
                     "wall_us": _per_window(wall[b], size), "cpu_us": _per_window(cpu[b], size)})
    base = rows[0]["cpu_us"]["p50"]
    for row in rows:
        row["cpu_p50_vs_today"] = row["cpu_us"]["p50"] / base
        row["per_core_at_cpu_p50"] = WINDOW_S * 1e6 / row["cpu_us"]["p50"]
    return rows


def run(session: Any, signal: Any, *, quick: bool = False, batches: tuple[int, ...] = BATCHES,
        windows: int | None = None, min_calls: int | None = None, check_steps: int | None = None
        ) -> dict[str, Any]:
    """Both parts; a JSON-ready document."""
    import os

    windows = windows if windows is not None else (500 if quick else 32000)
    min_calls = min_calls if min_calls is not None else (20 if quick else 500)
    check_steps = check_steps if check_steps is not None else (20 if quick else len(signal) // 512)
    load0 = list(os.getloadavg())
    checks = [check(session, signal, b, check_steps) for b in batches]
    rows = cost(session, signal, batches, windows, min_calls, warmup=5 if quick else 50)
    worst = max(c["max_abs_diff"] for c in checks)
    worst_state = max(c["state_max_abs_diff"] for c in checks)
    return {"batches": list(batches), "rows": rows, "checks": checks, "max_abs_diff": worst,
            "state_max_abs_diff": worst_state, "tolerance": TOLERANCE,
            "matched": worst <= TOLERANCE, "loadavg": [load0, list(os.getloadavg())],
            "params": {"windows": windows, "min_calls": min_calls, "check_steps": check_steps}}


def show(doc: dict[str, Any]) -> None:
    print("   cost per window, microseconds (the call's time / B)")
    print(f"   {'':44s} {'calls':>6s} {'CPU p50':>8s} {'CPU p99':>8s} {'CPU mean':>8s} {'wall p50':>8s} "
          f"{'wall p99':>8s} {'vs today':>8s} {'per core':>8s}")
    for r in doc["rows"]:
        c, w = r["cpu_us"], r["wall_us"]
        print(f"   {r['what']:44s} {r['calls']:6d} {c['p50']:8.1f} {c['p99']:8.1f} {c['mean']:8.1f} "
              f"{w['p50']:8.1f} {w['p99']:8.1f} {r['cpu_p50_vs_today']:7.2f}x "
              f"{r['per_core_at_cpu_p50']:8.0f}")
    print("   batched == unbatched? (per B: windows, speech windows, "
          "max |p_batched - p_single|, max |state diff|)")
    for c in doc["checks"]:
        print(f"     B={c['batch']:3d}: {c['windows']:6d} windows, {c['speech_windows']:5d} speech, "
              f"{c['max_abs_diff']:.2e}, state {c['state_max_abs_diff']:.2e}")
    verdict = "match" if doc["matched"] else "DO NOT MATCH"
    print(f"   batched outputs {verdict}: max abs diff {doc['max_abs_diff']:.2e} "
          f"(tolerance {doc['tolerance']:g})", flush=True)


def markdown_section(doc: dict[str, Any]) -> list[str]:
    lines = [
        "## Batching the model (B windows in one onnxruntime call)",
        "",
        "Cost per window = the call's time / B, with the batcher's own copying of the B windows into the "
        "input. Load average " + " -> ".join("/".join(f"{x:.2f}" for x in la) for la in doc["loadavg"]) + ".",
        "",
        "| what | calls | windows | CPU p50 | CPU p99 | CPU mean | wall p50 | wall p99 | CPU p50 vs today | "
        "conversations per core at CPU p50 (model only) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in doc["rows"]:
        c, w = r["cpu_us"], r["wall_us"]
        lines.append(f"| {r['what']} | {r['calls']} | {r['windows']} | {c['p50']:.1f} us | "
                     f"{c['p99']:.1f} us | {c['mean']:.1f} us | {w['p50']:.1f} us | {w['p99']:.1f} us | "
                     f"{r['cpu_p50_vs_today']:.2f}x | {r['per_core_at_cpu_p50']:.0f} |")
    lines += ["", "Batched vs unbatched, same windows (real speech): max abs difference of the "
              f"probabilities **{doc['max_abs_diff']:.2e}**, of the final states "
              f"{doc['state_max_abs_diff']:.2e} "
              f"({'match' if doc['matched'] else 'DO NOT MATCH'}, tolerance {doc['tolerance']:g}).", "",
              "| B | windows | speech windows (p >= 0.5) | max abs diff p | max abs diff state |",
              "|---:|---:|---:|---:|---:|"]
    lines += [f"| {c['batch']} | {c['windows']} | {c['speech_windows']} | {c['max_abs_diff']:.2e} | "
              f"{c['state_max_abs_diff']:.2e} |" for c in doc["checks"]]
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks._silero_batch", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small N (a smoke run)")
    p.add_argument("--windows", type=int, default=None, help="timed windows per batch size (default 32000)")
    p.add_argument("--min-calls", type=int, default=None, help="timed calls per batch size at least (500)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    from benchmarks._voice_cost_common import speech_signal
    from trio_playout.silero import new_session

    signal, source = speech_signal()
    print(f"Silero batching ({source}; {len(signal) / 16000:.1f} s of 16 kHz audio)")
    doc = run(new_session(), signal, quick=args.quick, windows=args.windows, min_calls=args.min_calls)
    doc["source"] = source
    show(doc)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2)
    return 0 if doc["matched"] else 1


if __name__ == "__main__":
    sys.exit(main())
