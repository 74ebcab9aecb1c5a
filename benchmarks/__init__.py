"""Side-by-side interrupt benchmarks: stock livekit, the PR #5700 race, trio-native, bridge.

PR #5700 (https://github.com/livekit/agents/pull/5700) is the rejected fix for livekit/agents issue #5359
(https://github.com/livekit/agents/issues/5359).

Run ``python -m benchmarks`` (``--quick`` for a smoke run, ``--help`` for options). It
writes ``results.json``, ``report.md``, ``table.txt`` and the PNG plots into
``--out`` (default ``bench-results/`` in the current directory); the committed
results in ``benchmarks/results/`` were made with ``--out benchmarks/results``.
Each configuration runs in its own process (``benchmarks._worker``); the parent
(``benchmarks.cli``) only starts workers, then summarises (``benchmarks.analysis``),
writes the report (``benchmarks.report``) and plots (``benchmarks.plots``).
The scenarios S1-S8 are in ``benchmarks.scenarios``. Method: real time, one process
per configuration, per-event ``perf_counter_ns`` deltas, warm-up discarded, the
environment recorded with every result (``benchmarks.env``).

Importing this package imports nothing heavy: no trio_asyncio, no livekit, no trio.
"""
