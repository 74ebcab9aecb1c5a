"""Circular waits, step binding of ctx.wait_for_playout, and bridged + stock tools in one step."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from harness import preamble_then_tool, running_session, watchdog_fired
from livekit.agents import Agent
from livekit.agents import RunContext as LkRunContext
from livekit.agents import function_tool as lk_function_tool

import bridge
from bridge.testing import Reply, ToolCall


@pytest.mark.parametrize("via_child_task", [False, True])
async def test_circular_wait_raises_typed_error(autojump_clock: trio.abc.Clock, via_child_task: bool) -> None:
    errors: list[BaseException] = []

    @bridge.function_tool
    async def lookup(ctx: bridge.RunContext) -> str:
        """Look up."""

        async def wait_own_speech() -> None:
            try:
                await bridge.wait_for_playout(ctx.speech_handle)
            except bridge.CircularWaitError as exc:
                errors.append(exc)

        if via_child_task:  # livekit's per-task check misses this; the contextvar does not
            async with trio.open_nursery() as nursery:
                nursery.start_soon(wait_own_speech)
        else:
            await wait_own_speech()
        return "sunny"

    async with running_session([lookup], preamble_then_tool("lookup")) as env:
        handle = env.session.generate_reply(user_input="weather?")
        with trio.fail_after(30):
            await bridge.wait_for_playout(handle)
        assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
        assert trio.current_time() < 12  # no deadlock: 7 s preamble + 2.5 s tool reply
        (out,) = env.outputs("c1")
        assert out.output == "sunny"


async def test_aio_inside_a_tool_keeps_livekits_own_guard(autojump_clock: trio.abc.Clock) -> None:
    """SDK coroutines called through bridge.aio from a tool carry the tool's identity."""
    errors: list[BaseException] = []

    @bridge.function_tool
    async def lookup(ctx: bridge.RunContext) -> str:
        """Look up."""
        try:
            await bridge.aio(ctx.speech_handle.wait_for_playout)()
        except RuntimeError as exc:
            errors.append(exc)
        return "sunny"

    async with running_session([lookup], preamble_then_tool("lookup")) as env:
        handle = env.session.generate_reply(user_input="weather?")
        with trio.fail_after(30):
            await bridge.wait_for_playout(handle)
        assert len(errors) == 1
        assert not isinstance(errors[0], bridge.BridgeError)  # livekit's own RuntimeError


async def test_ctx_wait_for_playout_means_this_steps_audio(autojump_clock: trio.abc.Clock) -> None:
    seen: list[tuple[float, bool]] = []
    env_ref: list[Any] = []

    @bridge.function_tool
    async def lookup(ctx: bridge.RunContext) -> str:
        """Look up."""
        await ctx.wait_for_playout()
        seen.append((trio.current_time(), env_ref[0].sink.playing))
        return "sunny"

    async with running_session([lookup], preamble_then_tool("lookup")) as env:
        env_ref.append(env)
        handle = env.session.generate_reply(user_input="weather?")
        await bridge.wait_for_playout(handle)
        seg = env.sink.segments[0]
        assert seg.stopped_at is not None
        # returned when the preamble's audio ended, not before, and before the speech ended
        (t, playing) = seen[0]
        assert t == pytest.approx(seg.stopped_at, abs=0.01) and not playing
        assert len(env.sink.segments) == 2  # the tool reply played afterwards


async def test_bridged_and_stock_tools_in_one_step(autojump_clock: trio.abc.Clock) -> None:
    record: list[str] = []

    @lk_function_tool
    async def stock_weather(ctx: LkRunContext, city: str) -> str:
        """Weather, the asyncio way."""
        import asyncio

        await asyncio.sleep(1)
        record.append(f"stock {city}")
        return f"rain in {city}"

    @bridge.function_tool
    async def trio_weather(ctx: bridge.RunContext, city: str, unit: str = "C") -> str:
        """Weather, the trio way.

        Args:
            city: the city
            unit: C or F
        """
        await trio.sleep(2)
        record.append(f"trio {city} {unit}")
        return f"sun in {city}"

    replies = [
        Reply(
            text="Checking both.",
            tool_calls=[
                ToolCall("stock_weather", {"city": "Oslo"}, "s1"),
                ToolCall("trio_weather", {"city": "Rome"}, "t1"),
            ],
        ),
        Reply(text="Rain in Oslo, sun in Rome."),
    ]
    async with running_session([stock_weather, trio_weather], replies) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await bridge.wait_for_playout(handle)
        await trio.sleep(5)
        assert sorted(record) == ["stock Oslo", "trio Rome C"]
        assert [o.output for o in env.outputs("s1")] == ["rain in Oslo"]
        assert [o.output for o in env.outputs("t1")] == ["sun in Rome"]
        # the schema livekit sent to the LLM has the trio tool's real parameters only
        texts = [m.text_content for m in env.assistant_messages()]
        assert texts[-1] == "Rain in Oslo, sun in Rome."


async def test_bridged_and_stock_tools_in_one_interrupted_step(
    autojump_clock: trio.abc.Clock, caplog: Any
) -> None:
    record: list[str] = []

    @lk_function_tool
    async def stock_slow(ctx: LkRunContext) -> str:
        """Slow asyncio tool."""
        import asyncio

        await asyncio.sleep(3)
        record.append("stock finished")
        return "stock"

    @bridge.function_tool
    async def trio_slow(ctx: bridge.RunContext) -> str:
        """Slow trio tool."""
        try:
            await trio.sleep(3)
        except trio.Cancelled:
            record.append("trio cancelled")
            raise
        return "trio"

    replies = [
        Reply(
            text="Working on it, give me a moment please, this takes a while.",
            tool_calls=[ToolCall("stock_slow", {}, "s1"), ToolCall("trio_slow", {}, "t1")],
        )
    ]
    async with running_session([stock_slow, trio_slow], replies) as env:
        handle = env.session.generate_reply(user_input="go")
        await trio.sleep(1)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        # the stock tool holds the speech until it finishes (2 s more); the trio one stopped
        assert trio.current_time() - t_int == pytest.approx(2.0, abs=0.02)
        assert record == ["trio cancelled", "stock finished"]
        assert [o.output for o in env.outputs("s1")] == ["stock"]
        (t_out,) = env.outputs("t1")
        assert bridge.is_interrupted_output(t_out)
        assert not watchdog_fired(caplog)


def test_tool_schema_hides_the_context() -> None:
    @bridge.function_tool(name="get_weather", description="Weather for a city.")
    async def weather(ctx: bridge.RunContext, city: str, days: int = 1) -> str:
        return city

    from livekit.agents.llm import FunctionTool
    from livekit.agents.llm.utils import build_legacy_openai_schema

    assert isinstance(weather, FunctionTool)
    schema = build_legacy_openai_schema(weather)["function"]
    assert schema["name"] == "get_weather"
    assert schema["description"] == "Weather for a city."
    assert set(schema["parameters"]["properties"]) == {"city", "days"}
    assert schema["parameters"]["required"] == ["city"]


def test_bad_signatures_are_refused() -> None:
    def not_async(ctx: bridge.RunContext) -> str:
        return ""

    async def positional_only(x: int, /) -> str:
        return ""

    async def livekit_ctx(ctx: LkRunContext) -> str:
        return ""

    for fn in (not_async, positional_only, livekit_ctx):
        with pytest.raises(bridge.ToolSignatureError):
            bridge.function_tool(fn)  # type: ignore[arg-type]
    assert issubclass(bridge.ToolSignatureError, TypeError)


async def test_bridged_tool_outside_bridge_loop_is_refused() -> None:
    """On a loop that is not the bridge's, the call fails with a clear error."""
    with pytest.raises(bridge.NotInstalledError):
        await bridge.wait_for_playout(object())
    with pytest.raises(bridge.NotInstalledError):
        bridge.interruptible(object()).__enter__()


class WeatherAgent(Agent):
    def __init__(self) -> None:
        super().__init__(instructions="weather")
        self.calls: list[str] = []

    @bridge.function_tool
    async def forecast(self, ctx: bridge.RunContext, city: str) -> str:
        """Forecast for a city."""
        await trio.sleep(0.5)
        self.calls.append(city)
        return f"fog in {city}"


async def test_bridged_tool_as_agent_method(autojump_clock: trio.abc.Clock) -> None:
    agent = WeatherAgent()
    replies = [
        Reply(text="One sec.", tool_calls=[ToolCall("forecast", {"city": "Lima"}, "m1")]),
        Reply(text="Fog."),
    ]
    async with running_session([], replies, agent=agent) as env:
        handle = env.session.generate_reply(user_input="forecast?")
        await bridge.wait_for_playout(handle)
        await trio.sleep(3)
        assert agent.calls == ["Lima"]
        assert [o.output for o in env.outputs("m1")] == ["fog in Lima"]
