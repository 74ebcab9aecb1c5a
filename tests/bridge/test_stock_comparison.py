"""The same scenarios with the tool written as a stock asyncio livekit tool.

These pin down what stock livekit-agents 1.8.9 does (on the bridge loop, in virtual
time), as the comparison for the README: a stock tool is never told about the
interrupt, so the speech waits for it, or for the 5 s watchdog.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import trio
from harness import preamble_then_tool, running_session, watchdog_fired
from livekit.agents import RunContext as LkRunContext
from livekit.agents import function_tool as lk_function_tool

import bridge
from bridge.testing import Reply, ToolCall


def stock_tool(name: str, seconds: float, record: list[str], *, wait_playout: bool = False) -> Any:
    async def body(ctx: LkRunContext) -> str:
        try:
            if wait_playout:
                await ctx.wait_for_playout()
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            record.append("cancelled")
            raise
        record.append("finished")
        return "sunny"

    body.__name__ = name
    body.__doc__ = f"The {name} tool."
    return lk_function_tool(body)


@pytest.mark.parametrize(
    ("clear_delay", "done_after", "watchdog"),
    [(0.0, 1.0, False), (0.15, 1.15, False), (math.inf, 5.0, True)],
    ids=["instant", "avatar", "deaf"],
)
async def test_stock_5359_preamble_barge_in(
    autojump_clock: trio.abc.Clock,
    caplog: Any,
    clear_delay: float,
    done_after: float,
    watchdog: bool,
) -> None:
    record: list[str] = []
    tool = stock_tool("lookup", 1.0, record, wait_playout=True)
    async with running_session([tool], preamble_then_tool("lookup"), clear_delay=clear_delay) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(done_after, abs=0.02)
        assert watchdog_fired(caplog) is watchdog
        await trio.sleep(3)
        assert record == ["finished"]  # never told about the interrupt
        if watchdog:
            assert env.outputs("c1") == [] and env.calls("c1") == []  # records lost
        else:
            (out,) = env.outputs("c1")
            assert out.output == "sunny" and not out.reply_required


async def test_stock_long_tool_interrupted_after_one_second(
    autojump_clock: trio.abc.Clock, caplog: Any
) -> None:
    record: list[str] = []
    tool = stock_tool("lookup", 12.0, record)
    async with running_session([tool], preamble_then_tool("lookup")) as env:
        handle = env.session.generate_reply(user_input="weather?")
        # what history held at the moment livekit marked the speech done (observed on
        # the asyncio side: how soon a trio waiter looks is the loop's scheduling)
        at_done: list[int] = []
        handle.add_done_callback(lambda _h: at_done.append(len(env.outputs("c1"))))
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(5.0, abs=0.02)
        assert watchdog_fired(caplog)
        assert at_done == [0]  # "done", but the step's records are not written yet
        await trio.sleep(15)
        (placeholder,) = env.outputs("c1")
        assert "still in progress" in placeholder.output
        assert record == ["finished"]
        finals = env.outputs("c1_final")
        assert len(finals) == 1 and finals[0].output == "sunny"


async def test_stock_long_tool_interrupted_in_tool_phase(autojump_clock: trio.abc.Clock, caplog: Any) -> None:
    record: list[str] = []
    tool = stock_tool("lookup", 12.0, record)
    replies = [Reply(text="Checking.", tool_calls=[ToolCall("lookup", {}, "c1")])]
    async with running_session([tool], replies) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(3.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(5.0, abs=0.02)
        assert watchdog_fired(caplog)


async def test_stock_tool_interrupted_before_start_still_runs(
    autojump_clock: trio.abc.Clock,
) -> None:
    @lk_function_tool
    async def hang_up(ctx: LkRunContext) -> str:
        """Hang up."""
        ctx.speech_handle.interrupt()
        return "bye"

    record: list[str] = []
    tool = stock_tool("lookup", 1.0, record)
    replies = [Reply(text="Okay.", tool_calls=[ToolCall("hang_up", {}, "s1"), ToolCall("lookup", {}, "c1")])]
    async with running_session([hang_up, tool], replies) as env:
        handle = env.session.generate_reply(user_input="bye")
        await bridge.wait_for_playout(handle)
        assert record == ["finished"]  # ran its whole body on an interrupted speech
        assert [o.output for o in env.outputs("c1")] == ["sunny"]


async def test_stock_session_closed_while_tool_runs(autojump_clock: trio.abc.Clock) -> None:
    record: list[str] = []
    tool = stock_tool("lookup", 12.0, record)
    async with running_session([tool], preamble_then_tool("lookup")) as env:
        env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_close = trio.current_time()
        await bridge.aio(env.session.aclose)()
        assert trio.current_time() - t_close == pytest.approx(11.0, abs=0.05)
        assert record == ["finished"]
