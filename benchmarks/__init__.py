"""Side-by-side interrupt benchmarks: stock livekit, the PR #5700 race, trio-native, bridge.

Run ``python -m benchmarks`` (``--quick`` for a smoke run, ``--help`` for options).
Each configuration runs in its own process (``benchmarks._worker``); the parent
(``benchmarks.cli``) only starts workers, then summarises (``benchmarks.analysis``),
writes the report (``benchmarks.report``) and plots (``benchmarks.plots``).
The measuring method is DESIGN.md section 6; the scenarios are issue 4's S1-S7
(``benchmarks.scenarios``).

Importing this package imports nothing heavy: no trio_asyncio, no livekit, no trio.
"""
