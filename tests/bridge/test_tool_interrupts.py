"""Bridged trio tools inside a real livekit AgentSession: the interrupt contract.

Virtual time (``autojump_clock``): the preamble is 14 words at 2 words/s = 7 s of audio;
the tests interrupt 1 s in. ``t_int`` is the interrupt's time; durations are relative.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pytest
import trio
from harness import PREAMBLE, ToolProbe, preamble_then_tool, running_session, watchdog_fired
from livekit.agents import RunContext as LkRunContext
from livekit.agents import function_tool as lk_function_tool
from livekit.agents.llm import ToolError

import bridge
from bridge.testing import FakeAudioSink, Reply, ToolCall
from trio_playout._state import ToolCallPhase


@pytest.mark.parametrize(("clear_delay", "done_after"), [(0.0, 0.0), (0.15, 0.15)], ids=["instant", "avatar"])
async def test_5359_preamble_barge_in_sink_confirms(
    autojump_clock: trio.abc.Clock, caplog: Any, clear_delay: float, done_after: float
) -> None:
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, wait_playout=True)
    async with running_session([tool], preamble_then_tool("lookup"), clear_delay=clear_delay) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        done = trio.current_time() - t_int

        assert done == pytest.approx(done_after, abs=0.02)
        assert len(probe.starts) == 1
        assert probe.cancelled == [t_int]  # one cancellation, at the interrupt
        assert probe.finished == []
        assert probe.contexts[0]._state.deliveries == 1
        assert probe.contexts[0]._state.phase is ToolCallPhase.INTERRUPTED
        assert "source=programmatic" in (probe.reasons[0] or "")
        assert not watchdog_fired(caplog)
        outs = env.outputs("c1")
        assert len(outs) == 1 and bridge.is_interrupted_output(outs[0])
        assert len(env.calls("c1")) == 1
        # the heard part of the preamble is recorded, marked interrupted
        (msg,) = env.assistant_messages()
        assert msg.interrupted and 0 < len(msg.text_content or "") < 30
        await trio.sleep(10)  # nothing happens later: no watchdog, no late writes
        assert not watchdog_fired(caplog)
        assert len(env.outputs("c1")) == 1 and len(probe.cancelled) == 1


async def test_5359_preamble_barge_in_sink_never_confirms(
    autojump_clock: trio.abc.Clock, caplog: Any
) -> None:
    """The tool is cancelled at once, but livekit itself waits for the deaf sink.

    livekit's reply task waits for the sink's confirmation with no bound; its 5 s
    watchdog ends the speech and the step's records are lost (stock behaviour the bridge
    does not change). ``bridge.with_sink_grace`` fixes it: next test.
    """
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, wait_playout=True)
    async with running_session([tool], preamble_then_tool("lookup"), clear_delay=math.inf) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(5.0, abs=0.02)
        assert probe.cancelled == [t_int]
        assert watchdog_fired(caplog)
        assert env.outputs("c1") == [] and env.calls("c1") == []


async def test_5359_never_confirming_sink_with_grace(autojump_clock: trio.abc.Clock, caplog: Any) -> None:
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, wait_playout=True)
    deaf = FakeAudioSink(clear_delay=math.inf)
    graced = bridge.with_sink_grace(deaf, grace=2.0)
    async with running_session([tool], preamble_then_tool("lookup"), sink=graced) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(2.0, abs=0.02)
        assert probe.cancelled == [t_int]
        assert not watchdog_fired(caplog)
        assert len(graced.expiries) == 1
        # the clear never reached the deaf sink: it plays out what it had buffered
        seg = deaf.segments[-1]
        assert seg.cleared_at == pytest.approx(t_int, abs=0.01) and seg.clear_ignored
        assert not seg.confirmed
        outs = env.outputs("c1")
        assert len(outs) == 1 and bridge.is_interrupted_output(outs[0])
        (msg,) = env.assistant_messages()
        assert msg.interrupted


async def test_long_tool_interrupted_after_one_second(autojump_clock: trio.abc.Clock, caplog: Any) -> None:
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 12.0)
    async with running_session([tool], preamble_then_tool("lookup")) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(0.0, abs=0.02)
        assert probe.cancelled == [t_int] and probe.finished == []
        await trio.sleep(20)
        assert not watchdog_fired(caplog)
        outs = env.outputs("c1")
        assert len(outs) == 1 and bridge.is_interrupted_output(outs[0])
        # no placeholder, no late "_final" reply
        assert [i for i in env.history() if "c1_" in str(getattr(i, "call_id", ""))] == []


async def test_long_tool_interrupted_in_tool_phase(autojump_clock: trio.abc.Clock, caplog: Any) -> None:
    """Interrupt after the preamble played out, while only the tool runs."""
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 12.0)
    replies = [Reply(text="Checking.", tool_calls=[ToolCall("lookup", {}, "c1")])]
    async with running_session([tool], replies) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(3.0)  # 0.5 s of audio played out, tool running
        assert not env.sink.playing and probe.starts and not probe.finished
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(0.0, abs=0.02)
        assert probe.cancelled == [t_int]
        assert not watchdog_fired(caplog)
        outs = env.outputs("c1")
        assert len(outs) == 1 and bridge.is_interrupted_output(outs[0])


@pytest.mark.parametrize("seconds", [3.0, 12.0])
async def test_protected_tool_runs_to_completion(
    autojump_clock: trio.abc.Clock, caplog: Any, seconds: float
) -> None:
    probe = ToolProbe()
    tool = probe.slow_tool("book", seconds, interruptible=False, result="booked")
    async with running_session([tool], preamble_then_tool("book")) as env:
        handle = env.session.generate_reply(user_input="book it")
        await trio.sleep(1.0)
        handle.interrupt()
        handle.interrupt(force=True)
        await bridge.wait_for_playout(handle)
        await trio.sleep(seconds + 5)
        assert probe.cancelled == []  # zero deliveries: not the interrupt, not the watchdog
        assert len(probe.finished) == 1
        state = probe.contexts[0]._state
        assert state.deliveries == 0 and state.protected
        assert state.phase is ToolCallPhase.RESULT
        results = [i for i in env.history() if i.type == "function_call_output" and "booked" in i.output]
        assert len(results) == 1  # the result is recorded exactly once
        if seconds < 5:
            assert not watchdog_fired(caplog)
            assert results[0].call_id == "c1"
        else:
            # livekit's watchdog releases the still-running tool with a placeholder and
            # delivers the real result later as "c1_final"; the trio body never notices
            assert watchdog_fired(caplog)
            assert len(env.outputs("c1")) == 1
            assert results[0].call_id == "c1_final"


async def test_disallow_interruptions_protects_tool_and_speech(
    autojump_clock: trio.abc.Clock,
) -> None:
    record: list[str] = []

    @bridge.function_tool
    async def book(ctx: bridge.RunContext) -> str:
        """Book."""
        ctx.disallow_interruptions()
        record.append("protected")
        await trio.sleep(3)
        record.append("done")
        return "booked"

    async with running_session([book], preamble_then_tool("book")) as env:
        handle = env.session.generate_reply(user_input="book it")
        await trio.sleep(1.0)
        assert record == ["protected"]
        with pytest.raises(RuntimeError):
            handle.interrupt()
        t_int = trio.current_time()
        handle.interrupt(force=True)  # stops the audio, not the tool
        await trio.sleep(0.1)
        assert env.sink.segments[0].stopped_at == pytest.approx(t_int, abs=0.01)
        await bridge.wait_for_playout(handle)
        assert record == ["protected", "done"]
        (out,) = env.outputs("c1")
        assert out.output == "booked"


async def test_disallow_after_interrupt_raises_typed_error(autojump_clock: trio.abc.Clock) -> None:
    seen: list[BaseException] = []

    @bridge.function_tool
    async def book(ctx: bridge.RunContext) -> str:
        """Book."""
        ctx.speech_handle.interrupt()
        try:
            ctx.disallow_interruptions()
        except bridge.AlreadyInterruptedError as exc:
            seen.append(exc)
            raise
        return "booked"

    async with running_session([book], preamble_then_tool("book")) as env:
        handle = env.session.generate_reply(user_input="book it")
        await bridge.wait_for_playout(handle)
        assert len(seen) == 1 and isinstance(seen[0], RuntimeError)
        assert len(env.outputs("c1")) == 1


@pytest.mark.parametrize("interruptible", [True, False])
async def test_interrupt_before_tool_starts(autojump_clock: trio.abc.Clock, interruptible: bool) -> None:
    """A stock tool earlier in the same step interrupts the speech synchronously, so the
    bridged call is dispatched on an already-interrupted speech: its body never runs,
    protected or not (trio_playout's rule: protection covers a call that is running)."""

    @lk_function_tool
    async def hang_up(ctx: LkRunContext) -> str:
        """Hang up."""
        ctx.speech_handle.interrupt()
        return "bye"

    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, interruptible=interruptible)
    replies = [Reply(text="Okay.", tool_calls=[ToolCall("hang_up", {}, "s1"), ToolCall("lookup", {}, "c1")])]
    async with running_session([hang_up, tool], replies) as env:
        handle = env.session.generate_reply(user_input="bye")
        await bridge.wait_for_playout(handle)
        assert probe.starts == [] and probe.cancelled == []
        state_outs = env.outputs("c1")
        assert len(state_outs) == 1 and bridge.is_interrupted_output(state_outs[0])
        assert [o.output for o in env.outputs("s1")] == ["bye"]


async def test_interruptible_scope_honours_earlier_interrupt(autojump_clock: trio.abc.Clock) -> None:
    replies = [Reply(text="One two three four."), Reply(text="Five six seven eight nine ten.")]
    async with running_session([], replies) as env:
        handle = env.session.generate_reply(user_input="hi")
        await trio.sleep(0.5)
        handle.interrupt(source="audio_activity")  # type: ignore[arg-type]
        reached = False
        with bridge.interruptible(handle) as scope:
            await trio.sleep(100)
            reached = True
        assert scope.cancelled_caught and not reached
        assert trio.current_time() == pytest.approx(0.5, abs=0.01)
        # and a later interrupt cancels a scope entered earlier
        h2 = env.session.generate_reply(user_input="again")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_interrupt_later, h2, 1.0)
            with bridge.interruptible(h2) as scope2:
                await trio.sleep(100)
        assert scope2.cancelled_caught
        assert trio.current_time() == pytest.approx(1.5, abs=0.01)


async def _interrupt_later(handle: Any, delay: float) -> None:
    await trio.sleep(delay)
    handle.interrupt()


async def test_several_interrupts_from_several_sources(autojump_clock: trio.abc.Clock, caplog: Any) -> None:
    cleanup: list[float] = []
    seen: list[str | None] = []

    @bridge.function_tool
    async def lookup(ctx: bridge.RunContext) -> str:
        """Look up."""
        try:
            await trio.sleep(12)
        except trio.Cancelled:
            seen.append(ctx.cancel_reason)
            with trio.move_on_after(0.5, shield=True):
                await trio.sleep(0.3)  # cleanup while more interrupts arrive
                cleanup.append(trio.current_time())
            raise
        return "sunny"

    async with running_session([lookup], preamble_then_tool("lookup")) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        handle.interrupt(source="audio_activity")  # type: ignore[arg-type]
        await trio.sleep(0.1)
        handle.interrupt()
        env.session.interrupt()
        handle.interrupt(force=True, source="user_turn")  # type: ignore[arg-type]
        await bridge.wait_for_playout(handle)
        await trio.sleep(10)
        assert len(seen) == 1 and "source=audio_activity" in (seen[0] or "")
        assert len(cleanup) == 1
        (out,) = env.outputs("c1")
        assert bridge.is_interrupted_output(out)
        assert not watchdog_fired(caplog)


async def test_tool_errors_give_one_output(autojump_clock: trio.abc.Clock) -> None:
    @bridge.function_tool
    async def no_city(ctx: bridge.RunContext) -> str:
        """Fails politely."""
        await trio.sleep(0.1)
        raise ToolError("no such city")

    @bridge.function_tool
    async def broken() -> str:
        """Fails with a bug, inside a nursery."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep, 1)
            raise ValueError("bug")

    replies = [
        Reply(text="Hm.", tool_calls=[ToolCall("no_city", {}, "e1"), ToolCall("broken", {}, "e2")]),
        Reply(text="Sorry."),
    ]
    async with running_session([no_city, broken], replies) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await bridge.wait_for_playout(handle)
        await trio.sleep(2)
        (o1,) = env.outputs("e1")
        (o2,) = env.outputs("e2")
        assert o1.is_error and o1.output == "no such city"
        assert o2.is_error and not bridge.is_interrupted_output(o2)
        assert env.llm.remaining == 0  # the tool reply step ran


async def test_cancelled_waiters_do_not_touch_the_speech(autojump_clock: trio.abc.Clock) -> None:
    record: list[str] = []

    @bridge.function_tool
    async def lookup(ctx: bridge.RunContext) -> str:
        """Look up."""
        with trio.move_on_after(0.5) as waited:
            await ctx.wait_for_playout()
        record.append(f"wait cancelled={waited.cancelled_caught}")
        await ctx.wait_for_playout()
        record.append("played")
        return "sunny"

    async with running_session([lookup], preamble_then_tool("lookup")) as env:
        handle = env.session.generate_reply(user_input="weather?")
        with trio.move_on_after(1.0) as outer:
            await bridge.wait_for_playout(handle)
        assert outer.cancelled_caught and not handle.done() and not handle.interrupted
        await bridge.wait_for_playout(handle)
        assert record == ["wait cancelled=True", "played"]
        (out,) = env.outputs("c1")
        assert out.output == "sunny" and not out.is_error
        assert env.sink.segments[0].position == pytest.approx(env.sink.segments[0].captured)


@pytest.mark.parametrize("interruptible", [True, False])
async def test_session_closed_while_tool_runs(autojump_clock: trio.abc.Clock, interruptible: bool) -> None:
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 12.0, interruptible=interruptible)
    async with running_session([tool], preamble_then_tool("lookup")) as env:
        env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_close = trio.current_time()
        await bridge.aio(env.session.aclose)()
        closed_after = trio.current_time() - t_close
    if interruptible:
        assert closed_after == pytest.approx(0.0, abs=0.05)
        assert probe.cancelled == [t_close] and probe.finished == []
        assert probe.contexts[0]._state.deliveries == 1
    else:
        # a protected tool is awaited (livekit drains non-cancellable tools), never cancelled
        assert closed_after == pytest.approx(11.0, abs=0.05)
        assert probe.cancelled == [] and len(probe.finished) == 1


async def test_interrupted_call_is_not_logged_as_a_tool_error(
    autojump_clock: trio.abc.Clock, caplog: Any
) -> None:
    """An interrupt is not an error: livekit's "ToolError while executing tool" warning
    stays out of the log for the interrupted output; a real ToolError still gets it."""
    caplog.set_level(logging.DEBUG)
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 12.0)

    @bridge.function_tool
    async def no_city() -> str:
        """Fails politely."""
        raise ToolError("no such city")

    replies = [
        Reply(text=PREAMBLE, tool_calls=[ToolCall("lookup", {}, "c1"), ToolCall("no_city", {}, "e1")]),
    ]
    async with running_session([tool, no_city], replies) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        await trio.sleep(1.0)
        (out,) = env.outputs("c1")
        assert bridge.is_interrupted_output(out)
        (err,) = env.outputs("e1")
        assert err.output == "no such city"
    warned = [r for r in caplog.records if r.getMessage() == "ToolError while executing tool"]
    assert [getattr(r, "lk.pii.error", None) for r in warned] == ["no such city"]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "interrupted" in r.getMessage()]
    # the bridge still says what happened, quietly
    (note,) = [r for r in caplog.records if r.name == "bridge" and "c1" in r.getMessage()]
    assert note.levelno == logging.DEBUG and "interrupted" in note.getMessage()
