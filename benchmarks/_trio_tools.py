"""The S4 and S5 tools, written once in trio for both trio-native and bridge.

Only the decorator differs (``@tp.function_tool`` or ``@bridge.function_tool``), so
both implementations measure the same tool code. Imports trio only: the plain
asyncio processes never load this module.
"""

from __future__ import annotations

from typing import Protocol

import trio

from benchmarks.model import Probe
from benchmarks.scenarios import LONG_TOOL_S, LOOKUP_S


class _WaitsForPlayout(Protocol):
    async def wait_for_playout(self) -> None: ...


async def lookup(ctx: _WaitsForPlayout, probe: Probe) -> str:
    """The #5359 preamble tool: wait for the preamble's audio, then look it up."""
    probe.mark_tool_started()
    try:
        try:
            await ctx.wait_for_playout()
        except trio.Cancelled:
            probe.mark_ctx_wait("cancelled")
            raise
        except Exception as exc:
            probe.mark_ctx_wait(f"error:{type(exc).__name__}")
            raise
        probe.mark_ctx_wait("returned")
        await trio.sleep(LOOKUP_S)
        return "It is sunny."
    finally:
        probe.mark_tool_stopped()


async def long_task(probe: Probe) -> str:
    """A task that takes LONG_TOOL_S (12 s)."""
    probe.mark_tool_started()
    try:
        await trio.sleep(LONG_TOOL_S)
        return "done"
    finally:
        probe.mark_tool_stopped()
