"""Contract breaks found by an independent review (issue 7), core part, in virtual time.

Each test names the issue item it pins; each failed on the code before its fix.
"""

from __future__ import annotations

import enum
import logging
import math
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

import trio_playout as tp
from trio_playout.testing import FakeTTS, LLMReply, ScriptedLLM, ToolCall

from .conftest import assistant_messages, outputs

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


def one_output_per_call(history: Sequence[tp.ChatItem]) -> None:
    calls = [i.call_id for i in history if isinstance(i, tp.FunctionCall)]
    outs = [i.call_id for i in history if isinstance(i, tp.FunctionCallOutput)]
    assert len(set(calls)) == len(calls), calls
    assert sorted(calls) == sorted(outs), (calls, outs)


# -- item 1: a valid call never leaves its run unfinished -------------------------------------

async def test_item1_enum_in_containers_and_unions_reach_the_tool(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[Any] = []

    @tp.function_tool
    async def paint(ctx: tp.RunContext, colors: list[Color], by_name: dict[str, Color],
                    one: Color | int) -> str:
        got.append((colors, by_name, one))
        return "painted"

    llm = ScriptedLLM([
        LLMReply("Painting.", [
            ToolCall("paint", {"colors": ["red"], "by_name": {"a": "green"}, "one": "red"}, call_id="p1"),
            ToolCall("paint", {"colors": [], "by_name": {}, "one": 3}, call_id="p2"),
        ]),
        LLMReply("Done."),
    ])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(), tools=[paint]) as s:
        handle = s.generate_reply()
        with trio.fail_after(60):
            await handle.wait_for_playout()
        assert len(got) == 2 and ([Color.RED], {"a": Color.GREEN}, Color.RED) in got and ([], {}, 3) in got
        assert [o.output for o in outputs(s.history, "p1") + outputs(s.history, "p2")] == ["painted"] * 2
        assert handle.exception() is None and handle.num_steps == 2
        one_output_per_call(s.history)


async def test_item1_any_failure_preparing_a_call_is_its_error_output(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    ran: list[str] = []

    @tp.function_tool
    async def fragile(ctx: tp.RunContext, x: int) -> str:
        ran.append("fragile")  # pragma: no cover - its preparation fails
        return "unreachable"  # pragma: no cover

    @tp.function_tool
    async def fine(ctx: tp.RunContext) -> str:
        ran.append("fine")
        return "ok"

    def broken_parse(arguments: object) -> dict[str, Any]:
        raise RuntimeError("converter bug: secret=42")

    fragile.parse_arguments = broken_parse  # type: ignore[method-assign]
    llm = ScriptedLLM([
        LLMReply("Trying.", [ToolCall("fragile", {"x": 1}, call_id="f1"),
                             ToolCall("fine", {}, call_id="ok1")]),
        LLMReply("Done."),
    ])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(),
                               tools=[fragile, fine]) as s:
        handle = s.generate_reply()
        with trio.fail_after(60):
            await handle.wait_for_playout()
        [bad] = outputs(s.history, "f1")
        assert bad.is_error and "secret" not in bad.output
        # A later call of the same step is not dropped.
        assert ran == ["fine"] and outputs(s.history, "ok1")[0].output == "ok"
        assert handle.exception() is None
        one_output_per_call(s.history)
    assert any(r.exc_info and "converter bug" in repr(r.exc_info[1]) for r in caplog.records)


# -- item 2: done means the audio stopped, also for an interrupt in the first write ------------

@pytest.mark.parametrize(("clear_delay", "done_after", "timed_out"),
                         [(0.15, 0.15, False), (math.inf, 2.0, True)])
async def test_item2_interrupt_during_blocked_first_write_waits_for_the_sink(
    autojump_clock: trio.testing.MockClock, clear_delay: float, done_after: float, timed_out: bool,
) -> None:
    # A tiny buffer: the first 20 ms frame back-pressures the writer for 19 ms.
    sink = tp.RealtimeAudioSink(clear_delay=clear_delay, buffer=0.001)
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink) as s:
        handle = s.say("one two three")
        await trio.sleep(0.01)
        assert sink.current_segment is not None  # the step is inside its first capture_frame
        t0 = trio.current_time()
        handle.interrupt()
        await handle.wait_for_playout()
        assert trio.current_time() - t0 == pytest.approx(done_after)
        assert handle.sink_timed_out is timed_out
        [rec] = sink.records
        if not timed_out:
            assert rec.confirmed and rec.stopped_at == pytest.approx(t0 + clear_delay)
            assert not sink.is_playing()
        assert list(s.history) == [tp.ChatMessage("assistant", "one", interrupted=True)]


@pytest.mark.parametrize("passes", range(12))
@pytest.mark.parametrize("clear_delay", [0.0, 0.15, math.inf])
async def test_item2_interrupt_at_every_scheduler_pass_of_a_say(
    autojump_clock: trio.testing.MockClock, passes: int, clear_delay: float,
) -> None:
    # Trio shuffles each scheduler batch, so which pass lands in the first write
    # varies from run to run; the test above pins that case deterministically.
    sink = tp.RealtimeAudioSink(clear_delay=clear_delay)
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink, sink_grace=2.0) as s:
        handle = s.say("one two three")
        for _ in range(passes):
            await trio.lowlevel.checkpoint()
        t0 = trio.current_time()
        handle.interrupt()
        await handle.wait_for_playout()
        done_at = trio.current_time()
        if math.isinf(clear_delay):  # every segment it opened was waited for, in vain
            assert handle.sink_timed_out is bool(sink.records)
            assert done_at == pytest.approx(t0 + (2.0 if sink.records else 0.0))
        else:
            assert not handle.sink_timed_out
            for rec in sink.records:  # every segment it opened stopped, and no later than done
                assert rec.confirmed and rec.stopped_at is not None and rec.stopped_at <= done_at
            assert not sink.is_playing()
        heard = assistant_messages(s.history)
        assert all(m.interrupted for m in heard)
        if math.isinf(clear_delay):  # never confirmed: what the sink was given counts as heard
            assert bool(heard) == bool(sink.records)
        else:
            assert bool(heard) == any(rec.position for rec in sink.records)


# -- item 4: exactly one output per call id, whatever the LLM sends ----------------------------

@tp.function_tool
async def echo(ctx: tp.RunContext, n: int = 0) -> str:
    return f"echo {n}"


async def test_item4_generated_id_never_takes_an_llm_id(autojump_clock: trio.testing.MockClock) -> None:
    llm = ScriptedLLM([
        LLMReply("One.", [ToolCall("echo", {"n": 1}, call_id="call_1"), ToolCall("echo", {"n": 2})]),
        LLMReply("Done."),
    ])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(), tools=[echo]) as s:
        await s.generate_reply().wait_for_playout()
        one_output_per_call(s.history)
        results = sorted(i.output for i in s.history if isinstance(i, tp.FunctionCallOutput))
        assert results == ["echo 1", "echo 2"]  # both ran: neither is a duplicate
        assert outputs(s.history, "call_1")[0].output == "echo 1"


async def test_item4_repeated_id_gets_its_own_error_output(autojump_clock: trio.testing.MockClock) -> None:
    ran: list[int] = []

    @tp.function_tool
    async def count(ctx: tp.RunContext, n: int) -> str:
        ran.append(n)
        return f"counted {n}"

    llm = ScriptedLLM([
        LLMReply("One.", [ToolCall("count", {"n": 1}, call_id="x"),
                          ToolCall("count", {"n": 2}, call_id="x")]),
        LLMReply("Two.", [ToolCall("count", {"n": 3}, call_id="x")]),  # repeated in a later step
        LLMReply("Done."),
    ])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(), tools=[count]) as s:
        handle = s.generate_reply()
        await handle.wait_for_playout()
        one_output_per_call(s.history)
        assert ran == [1]
        assert outputs(s.history, "x") == [tp.FunctionCallOutput("x", "counted 1")]
        calls = [i for i in s.history if isinstance(i, tp.FunctionCall)]
        assert [(c.call_id == "x", c.arguments) for c in calls] == [
            (True, '{"n": 1}'), (False, '{"n": 2}'), (False, '{"n": 3}')]
        for dup in calls[1:]:
            [out] = outputs(s.history, dup.call_id)
            assert out.is_error and "'x'" in out.output and "already used" in out.output
        assert handle.num_steps == 3  # an error output is an answer the LLM reads


# -- item 5: protected tools get close_timeout, the sink its grace ------------------------------

async def test_item5_close_timeout_is_not_stretched_by_sink_grace(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    cancelled_at: list[float] = []

    @tp.function_tool(interruptible=False)
    async def slow(ctx: tp.RunContext) -> str:
        try:
            await trio.sleep(100)
        except trio.Cancelled:
            cancelled_at.append(trio.current_time())
            raise
        return "unreachable"  # pragma: no cover

    llm = ScriptedLLM([LLMReply("Working.", [ToolCall("slow", {}, call_id="s1")])])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(), tools=[slow],
                               sink_grace=5.0, close_timeout=1.0) as s:
        handle = s.generate_reply()
        await trio.sleep(3)  # its audio is over; the protected tool runs on
        t0 = trio.current_time()
    assert cancelled_at == [pytest.approx(t0 + 1.0)]
    assert trio.current_time() <= t0 + max(1.0, 5.0) + 5.0
    assert handle.done() and outputs(s.history, "s1")[0].interrupted
    assert any("close_timeout=1s" in r.getMessage() and "s1" in r.getMessage() for r in caplog.records)


async def test_item5_sink_keeps_its_grace_when_close_timeout_is_shorter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = tp.RealtimeAudioSink(clear_delay=math.inf)
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink,
                               sink_grace=2.0, close_timeout=0.0) as s:
        handle = s.say("one two three four five six seven eight nine")
        await trio.sleep(1)
        t0 = trio.current_time()
    assert trio.current_time() == pytest.approx(t0 + 2.0)
    assert handle.done() and handle.sink_timed_out


# -- item 6: not interrupted means the full text ---------------------------------------------------

class PunctuationBlindTTS:
    """Word timings that end before trailing punctuation, as some TTS engines report."""

    def __init__(self) -> None:
        self.inner = FakeTTS()

    async def synthesize(self, text: str) -> AsyncIterator[tp.SynthesizedAudio]:
        async for chunk in self.inner.synthesize(text):
            words = tuple(
                replace(w, end_char=w.start_char + len(text[w.start_char:w.end_char].rstrip("?!.,")))
                for w in chunk.words
            )
            yield tp.SynthesizedAudio(chunk.frame, words)


async def test_item6_uninterrupted_message_keeps_its_tail(autojump_clock: trio.testing.MockClock) -> None:
    llm = ScriptedLLM([LLMReply("Sure. Anything else?")])
    async with tp.open_session(llm=llm, tts=PunctuationBlindTTS(), output=tp.RealtimeAudioSink()) as s:
        await s.say("Is it raining in Paris?").wait_for_playout()
        await s.generate_reply().wait_for_playout()
        cut = s.say("one two three four")
        await trio.sleep(0.5)
        cut.interrupt()
        await cut.wait_for_playout()
        assert [(m.text, m.interrupted) for m in assistant_messages(s.history)] == [
            ("Is it raining in Paris?", False), ("Sure. Anything else?", False), ("one two", True)]


# -- item 7: a rejected call writes nothing ------------------------------------------------------

async def test_item7_rejected_generate_reply_writes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=tp.RealtimeAudioSink()) as s:
        with pytest.raises(ValueError):
            s.generate_reply(user_input="hello", priority=99)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            s.generate_reply(user_input=b"hello")  # type: ignore[arg-type]
        assert list(s.history) == [] and s.speeches == ()


# -- item 8: a tool without a context parameter --------------------------------------------------

async def test_item8_tool_without_context_gets_its_arguments(autojump_clock: trio.testing.MockClock) -> None:
    @tp.function_tool
    async def get_time(city: str) -> str:
        return f"noon in {city}"

    @tp.function_tool
    async def whoami(city: str, ctx: tp.RunContext) -> str:
        assert isinstance(ctx, tp.RunContext)
        return f"{ctx.function_call.call_id} for {city}"

    llm = ScriptedLLM([
        LLMReply("Checking.", [ToolCall("get_time", {"city": "Paris"}, call_id="t1"),
                               ToolCall("whoami", {"city": "Rome"}, call_id="w1")]),
        LLMReply("Done."),
    ])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(),
                               tools=[get_time, whoami]) as s:
        await s.generate_reply().wait_for_playout()
        assert outputs(s.history, "t1") == [tp.FunctionCallOutput("t1", "noon in Paris")]
        assert outputs(s.history, "w1") == [tp.FunctionCallOutput("w1", "w1 for Rome")]
        assert s.tools["get_time"].parameters_schema["properties"] == {"city": {"type": "string"}}


# -- item 9: what the LLM reads about a failed tool ---------------------------------------------

async def test_item9_unexpected_exception_is_masked_and_logged(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    @tp.function_tool
    async def connect(ctx: tp.RunContext) -> str:
        raise ValueError("db password is hunter2")

    @tp.function_tool
    async def lookup(ctx: tp.RunContext) -> str:
        raise tp.ToolError("no such city; ask the user to spell it")

    llm = ScriptedLLM([
        LLMReply("Checking.", [ToolCall("connect", {}, call_id="c1"), ToolCall("lookup", {}, call_id="l1")]),
        LLMReply("Sorry."),
    ])
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(),
                               tools=[connect, lookup]) as s:
        await s.generate_reply().wait_for_playout()
        [masked] = outputs(s.history, "c1")
        assert masked.is_error and "hunter2" not in masked.output and "ValueError" not in masked.output
        assert "internal error" in masked.output
        assert outputs(s.history, "l1") == [
            tp.FunctionCallOutput("l1", "no such city; ask the user to spell it", is_error=True)]
        assert all("hunter2" not in repr(item) for item in llm.requests[1].history)
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR and "c1" in r.getMessage()]
    assert logged.exc_info is not None and "hunter2" in str(logged.exc_info[1])
    assert logged.exc_info[2] is not None  # with its traceback


# -- item 12: awaitable handles; a closed session refuses interrupt() like say() ---------------

async def test_item12_handle_is_awaitable(autojump_clock: trio.testing.MockClock) -> None:
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=tp.RealtimeAudioSink()) as s:
        handle = s.say("one two three")
        await handle
        assert handle.done() and trio.current_time() == pytest.approx(1.0)
        await handle  # again: at once
        assert [m.text for m in assistant_messages(s.history)] == ["one two three"]


async def test_item12_closed_session_refuses_interrupt(autojump_clock: trio.testing.MockClock) -> None:
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=tp.RealtimeAudioSink()) as s:
        handle = s.say("one two three")
    assert s.closed and handle.done()
    with pytest.raises(tp.SessionClosedError):
        s.interrupt()
    with pytest.raises(tp.SessionClosedError):
        s.say("late")
    handle.interrupt()  # a handle keeps working: a done speech ignores it


# -- item 13: one sink per open session; a BaseException from a tool is recorded as such -------

async def test_item13_sink_shared_by_two_open_sessions(autojump_clock: trio.testing.MockClock) -> None:
    sink = tp.RealtimeAudioSink()

    def session() -> Any:
        return tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink)

    async with session() as first:
        with pytest.raises(tp.PlayoutError) as info:
            async with session():
                pass  # pragma: no cover
        assert type(info.value).__name__ == "SinkInUseError" and isinstance(info.value, RuntimeError)
        await first.say("still mine").wait_for_playout()
        assert not first.closed
    async with session() as second:  # free again once the first one closed
        await second.say("now yours").wait_for_playout()
    assert [m.text for m in assistant_messages(second.history)] == ["now yours"]


class Stop(BaseException):
    pass


async def test_item13_base_exception_from_a_tool_is_recorded(autojump_clock: trio.testing.MockClock) -> None:
    @tp.function_tool
    async def halt(ctx: tp.RunContext) -> str:
        await trio.sleep(0.1)
        raise Stop("halt")

    llm = ScriptedLLM([LLMReply("Stopping.", [ToolCall("halt", {}, call_id="h1")])])
    caught: BaseException | None = None
    session: tp.Session | None = None
    with trio.fail_after(60):
        try:
            async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(),
                                       tools=[halt]) as session:
                await session.generate_reply().wait_for_playout()
        except BaseException as exc:  # the test inspects it
            caught = exc
    assert isinstance(caught, BaseExceptionGroup) and caught.split(Stop)[0] is not None  # it propagates
    assert session is not None
    [out] = outputs(session.history, "h1")
    assert out.is_error and not out.interrupted and "Stop" in out.output


@pytest.mark.parametrize("signal", [KeyboardInterrupt, SystemExit])
async def test_ctrl_c_inside_a_reply_is_not_swallowed(autojump_clock: trio.testing.MockClock,
                                                      signal: type[BaseException]) -> None:
    """KeyboardInterrupt or SystemExit raised while a reply's LLM streams is the
    program's, not the speech's error: it leaves the session (was recorded on the
    speech, and the session went on)."""

    class Breaks:
        async def stream(self, request: tp.LLMRequest) -> AsyncIterator[tp.LLMChunk]:
            yield tp.TextDelta("Hello. ")
            await trio.sleep(0.1)
            raise signal()

    caught: BaseException | None = None
    with trio.fail_after(60):
        try:
            async with tp.open_session(llm=Breaks(), tts=FakeTTS(), output=tp.RealtimeAudioSink()) as session:
                speech = session.generate_reply(user_input="hi")
                await speech
                await trio.sleep(10)
        except BaseException as exc:  # the test inspects it
            caught = exc
    assert caught is not None
    leaf = caught
    while isinstance(leaf, BaseExceptionGroup):
        assert len(leaf.exceptions) == 1
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, signal)
    assert speech.exception() is None or not isinstance(speech.exception(), signal)


class _PacedDeafSink(tp.AudioOutput):
    """Takes audio at real-time pace (back-pressure, like a network player) and never
    reports anything: neither a natural end nor a clear."""

    def __init__(self, *, tells_its_end: bool) -> None:
        super().__init__()
        self.tells_its_end = tells_its_end
        self.busy_until = -math.inf
        self.written = 0.0

    async def write_frame(self, segment: tp.PlaybackSegment, frame: tp.AudioFrame) -> None:
        self.written += frame.duration
        now = trio.current_time()
        self.busy_until = max(now, self.busy_until) + frame.duration
        await trio.sleep_until(self.busy_until - 0.1)  # 0.1 s ahead of playback at most

    def on_clear(self, segments: Sequence[tp.PlaybackSegment]) -> None:
        pass

    def expected_end(self) -> float | None:
        return self.busy_until if self.tells_its_end else None


@pytest.mark.parametrize("words", [20, 200])
async def test_a_paced_sink_that_never_reports_is_given_its_audio_plus_the_grace(
    autojump_clock: trio.testing.MockClock, words: int,
) -> None:
    """A sink that paces its writes ends its capture about when its audio ends: the
    bound must not count the audio's length again from there (review: a page that never
    reports held wait_for_playout() about twice the audio's length)."""
    text = " ".join(f"w{i}" for i in range(words))
    for tells in (True, False):
        sink = _PacedDeafSink(tells_its_end=tells)
        async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink, sink_grace=1.0) as s:
            handle = s.say(text)
            with trio.fail_after(1000):
                await handle.wait_for_playout()
            done = trio.current_time()
        assert handle.sink_timed_out
        if tells:  # the sink's own end of audio, plus the grace
            assert done == pytest.approx(sink.busy_until + 1.0, abs=1e-6)
        else:  # without expected_end(): all the audio again, from the last write
            assert done == pytest.approx(sink.busy_until - 0.1 + sink.written + 1.0, abs=1e-6)


# -- item 18: a deaf sink that buffered everything ------------------------------------------------

async def test_item18_deaf_sink_history_records_what_the_sink_was_given(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture,
) -> None:
    text = " ".join(f"w{i}" for i in range(1, 15)) + " end."  # 15 words, 5 s
    sink = tp.RealtimeAudioSink(clear_delay=math.inf, buffer=100.0)  # takes the whole reply at once
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink, sink_grace=2.0) as s:
        handle = s.say(text)
        await trio.sleep(1.0)
        handle.interrupt()
        await handle.wait_for_playout()
        assert trio.current_time() == pytest.approx(3.0) and handle.sink_timed_out
        assert sink.is_playing()  # the deaf sink plays on: it holds everything
        # Never confirmed: history holds what the sink was given, not a guess of
        # where playback happened to be when the grace ran out.
        assert list(s.history) == [tp.ChatMessage("assistant", text, interrupted=True)]
        await trio.sleep(10)
        [rec] = sink.records
        assert rec.stopped_at == pytest.approx(5.0) and not rec.confirmed
    assert any(handle.id in r.getMessage() and "sink_grace" in r.getMessage() for r in caplog.records)


# -- a long pause is not a dead sink (pause/resume of the sink contract) -------------------------

async def test_paused_playout_is_not_mistaken_for_a_dead_sink(autojump_clock: trio.testing.MockClock) -> None:
    sink = tp.RealtimeAudioSink()
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink, sink_grace=2.0) as s:
        handle = s.say("one two three")  # 1 s of audio, all of it given to the sink by 0.8 s
        await trio.sleep(0.9)
        sink.pause()
        await trio.sleep(5.0)  # longer than the audio plus the grace
        assert not handle.done()
        sink.resume()
        await handle.wait_for_playout()
        assert trio.current_time() == pytest.approx(6.0)
        assert not handle.sink_timed_out
        assert list(s.history) == [tp.ChatMessage("assistant", "one two three")]
