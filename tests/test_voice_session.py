"""Issue 8 at the session level: ``tp.open_session(audio_input=, vad=, stt=, turn=)``.

Everything runs in virtual time (``autojump_clock``) with trio_playout.testing's fakes:
the user is a :class:`SilentInput` microphone (20 ms frames) heard by a
:class:`ScriptedVAD` and a :class:`ScriptedSTT` (their times are seconds since the
session opened, which is t = 0), the agent a :class:`ScriptedLLM` and a
:class:`FakeTTS` (3 words per second: word *k* starts at k/3 s of the step's audio)
playing into a :class:`RealtimeAudioSink`, whose records say what a listener heard.
The VAD window is 20 ms (one frame) unless a test checks the quantization itself, so
a barge-in lands exactly at ``start + min_interruption_duration``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import trio
import trio.testing

import trio_playout as tp
from trio_playout.testing import (
    FakeTTS,
    LLMReply,
    ScriptedLLM,
    ScriptedSTT,
    ScriptedVAD,
    SilentInput,
    ToolCall,
)

from .conftest import assistant_messages, outputs

approx = pytest.approx
# 12 words at 3 words per second: 4 s of audio; word k starts at k/3 s.
TWELVE = "one two three four five six seven eight nine ten eleven twelve."
WORDS = TWELVE.rstrip(".").split()
AUDIO = 4.0
EPS = 1e-6


def heard_words(position: float) -> str:
    """The text history must hold for a step of TWELVE heard up to ``position``."""
    return " ".join(w for k, w in enumerate(WORDS) if k / 3 < position - 1e-9)


@dataclass
class Voice:
    """An open voice session and what happened in it."""

    session: tp.Session
    sink: tp.RealtimeAudioSink
    llm: ScriptedLLM
    events: list[tuple[float, tp.SessionEvent]] = field(default_factory=list)

    def of(self, kind: type) -> list[tuple[float, tp.SessionEvent]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]

    def states(self, kind: type) -> list[tuple[float, str]]:
        return [(t, e.new) for t, e in self.of(kind)]  # type: ignore[attr-defined]


@asynccontextmanager
async def voice(*, speech: Sequence[tuple[float, float]] = (),
                transcripts: Sequence[tuple[float, str] | tuple[float, str, bool]] = (),
                turn: tp.TurnOptions | None = None, replies: Sequence[LLMReply] = (),
                sink: tp.RealtimeAudioSink | None = None, tools: Sequence[tp.FunctionTool] = (),
                window: float = 0.02, vad: tp.VAD | str | None = "scripted",
                stt: tp.STT | str | None = "scripted", audio_input: object = None,
                tts: FakeTTS | None = None) -> AsyncIterator[Voice]:
    """A session that hears ``speech`` (VAD intervals) and ``transcripts`` (STT)."""
    sink = sink if sink is not None else tp.RealtimeAudioSink()
    llm = ScriptedLLM(list(replies))
    the_vad = ScriptedVAD(speech=speech, window=window) if vad == "scripted" else vad
    the_stt = ScriptedSTT(transcripts) if stt == "scripted" else stt
    assert not isinstance(the_vad, str) and not isinstance(the_stt, str)
    async with (
        trio.open_nursery() as nursery,
        tp.open_session(llm=llm, tts=tts or FakeTTS(), output=sink, tools=tools,
                        audio_input=audio_input or SilentInput(),  # type: ignore[arg-type]
                        vad=the_vad, stt=the_stt, turn=turn or tp.TurnOptions()) as session,
    ):
            v = Voice(session, sink, llm)

            async def record(task_status: trio.TaskStatus[None]) -> None:
                async with session.subscribe(buffer=100_000) as events:
                    task_status.started()
                    async for event in events:
                        v.events.append((trio.current_time(), event))

            await nursery.start(record)
            yield v


def audible(record: tp.PlayoutRecord) -> float:
    """Seconds a listener heard of ``record``: start to stop minus its pauses."""
    assert record.stopped_at is not None
    paused = sum((back if back is not None else record.stopped_at) - at for at, back in record.pauses)
    return record.stopped_at - record.started_at - paused


def check_states(v: Voice) -> None:
    """The state events chain (each old is the previous new) and end at the session's state."""
    for kind, first, now in ((tp.UserStateChanged, "listening", v.session.user_state),
                             (tp.AgentStateChanged, "listening", v.session.agent_state)):
        state = first
        for _, event in v.of(kind):
            assert event.old == state and event.new != state  # type: ignore[attr-defined]
            state = event.new  # type: ignore[attr-defined]
        assert state == now


# -- 1. barge-in ------------------------------------------------------------------------------------

@pytest.mark.parametrize("min_duration", [0.3, 0.5])
async def test_barge_in_pauses_at_min_interruption_duration(
        autojump_clock: trio.testing.MockClock, min_duration: float) -> None:
    async with voice(speech=[(1.0, 2.0)], turn=tp.TurnOptions(min_interruption_duration=min_duration)) as v:
        speech = v.session.say(TWELVE)
        await trio.sleep(1.0 + min_duration - 0.01)
        assert v.sink.pauses == [] and v.session.agent_state == "speaking"
        await trio.sleep(0.02)
        assert v.sink.pauses == [(approx(1.0 + min_duration), None)]
        assert v.session.agent_state == "listening" and not speech.interrupted
        await speech
    assert v.sink.records[0].pauses == [(approx(1.0 + min_duration), approx(4.0))]
    check_states(v)


async def test_barge_in_is_quantized_by_the_vad_window(autojump_clock: trio.testing.MockClock) -> None:
    """With 32 ms windows the VAD first reports 0.5 s of speech at the window ending 1.504,
    which reaches the session with the next 20 ms frame (1.52): no earlier, no later."""
    async with voice(speech=[(1.0, 2.0)], window=0.032) as v:
        await v.session.say(TWELVE)
    assert v.sink.pauses == [(approx(1.52), approx(4.0))]


@pytest.mark.parametrize("cough", [0.1, 0.48])
async def test_a_cough_shorter_than_min_interruption_duration_changes_nothing(
        autojump_clock: trio.testing.MockClock, cough: float) -> None:
    async with voice(speech=[(1.0, 1.0 + cough)]) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(AUDIO)
    assert v.sink.pauses == [] and not speech.interrupted
    assert [(m.text, m.interrupted) for m in v.session.history] == [(TWELVE, False)]
    assert v.of(tp.FalseInterruption) == [] and v.of(tp.UserTurnCompleted) == []
    assert v.states(tp.AgentStateChanged) == [(0.0, "speaking"), (approx(AUDIO), "listening")]
    assert v.states(tp.UserStateChanged) == [(approx(1.0), "speaking"), (approx(1.0 + cough), "listening")]


@pytest.mark.parametrize("how", ["sink cannot pause", "resume_false_interruption=False",
                                 "false_interruption_timeout=None"])
async def test_barge_in_interrupts_when_pausing_is_off(autojump_clock: trio.testing.MockClock,
                                                       how: str) -> None:
    turn = tp.TurnOptions(resume_false_interruption=how != "resume_false_interruption=False",
                          false_interruption_timeout=None if how.endswith("None") else 2.0)
    sink = tp.RealtimeAudioSink(can_pause=how != "sink cannot pause")
    async with voice(speech=[(1.0, 2.0)], turn=turn, sink=sink) as v:
        speech = v.session.say(TWELVE)
        await trio.sleep(1.49)
        assert not speech.interrupted
        await speech
        assert trio.current_time() == approx(1.5)
        assert speech.interrupted and speech.interrupt_source == "audio_activity"
    assert v.sink.pauses == []
    assert v.sink.records[0].stopped_at == approx(1.5) and v.sink.records[0].position == approx(1.5)
    assert [(m.text, m.interrupted) for m in v.session.history] == [(heard_words(1.5), True)]
    assert v.of(tp.FalseInterruption) == []


# -- 2. confirmed by words ----------------------------------------------------------------------------

@pytest.mark.parametrize("clear_delay", [0.0, 0.15])
async def test_words_after_the_pause_interrupt_at_the_paused_position(
        autojump_clock: trio.testing.MockClock, clear_delay: float) -> None:
    """Also with an avatar-like sink (a clear takes 150 ms): paused audio never plays again."""
    async with voice(speech=[(1.0, 2.0)], transcripts=[(1.6, "please", False), (1.8, "please stop", True)],
                     replies=[LLMReply("Okay.")], sink=tp.RealtimeAudioSink(clear_delay)) as v:
        speech = v.session.say(TWELVE)
        await trio.sleep(1.7)
        assert v.sink.pauses == [(approx(1.5), None)] and not speech.interrupted  # an interim is not words
        await speech
        assert trio.current_time() == approx(1.8 + clear_delay)
        assert speech.interrupted and speech.interrupt_source == "user_turn"
        await trio.sleep(3.0)
    first = v.sink.records[0]
    assert first.position == approx(1.5) and first.interrupted and first.stopped_at == approx(1.5)
    assert first.pauses == [(approx(1.5), None)]  # never resumed
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("assistant", heard_words(1.5), True), ("user", "please stop", False), ("assistant", "Okay.", False)]
    assert v.of(tp.FalseInterruption) == []
    assert [e.text for _, e in v.of(tp.UserTurnCompleted)] == ["please stop"]  # type: ignore[attr-defined]
    assert v.of(tp.UserTurnCompleted)[0][0] == approx(2.5)
    assert len(v.sink.pauses) == 1  # the reply is never paused by the old pause
    check_states(v)


async def test_a_tool_of_the_paused_speech_gets_the_interrupt_once(
        autojump_clock: trio.testing.MockClock) -> None:
    cancelled: list[float] = []
    finals: list[float] = []

    @tp.function_tool
    async def lookup(ctx: tp.RunContext) -> str:
        """Look something up slowly."""
        try:
            await trio.sleep(100)
            return "found"
        except trio.Cancelled:
            cancelled.append(trio.current_time())
            raise
        finally:
            finals.append(trio.current_time())
            with trio.move_on_after(0.5, shield=True):
                await trio.sleep(0.1)  # cleanup that awaits

    reply = LLMReply(TWELVE, [ToolCall("lookup", {}, call_id="c1")])
    async with voice(speech=[(1.0, 2.0)], transcripts=[(1.8, "stop", True)], tools=[lookup],
                     replies=[reply, LLMReply("Stopped.")]) as v:
        speech = v.session.generate_reply()
        await speech
        await trio.sleep(3.0)
    assert speech.interrupt_source == "user_turn"
    assert cancelled == [approx(1.8)] and finals == [approx(1.8)]
    assert len(outputs(v.session.history, "c1")) == 1 and outputs(v.session.history, "c1")[0].interrupted
    assert assistant_messages(speech.chat_items)[0].text == heard_words(1.5)


# -- 3. false interruptions -----------------------------------------------------------------------------

async def test_a_false_interruption_resumes_where_it_paused(autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0)]) as v:
        speech = v.session.say(TWELVE)
        await speech
        done_at = trio.current_time()
    # paused at 1.5, resumed 2 s after the user's speech ended, then the other 2.5 s
    assert v.sink.pauses == [(approx(1.5), approx(4.0))]
    record = v.sink.records[0]
    assert record.position == approx(AUDIO) and not record.interrupted
    assert audible(record) == approx(AUDIO)  # nothing skipped, nothing replayed
    assert done_at == approx(6.5) and record.stopped_at == approx(6.5)
    falses = v.of(tp.FalseInterruption)
    assert [(t, e.speech, e.resumed) for t, e in falses] == [(approx(4.0), speech, True)]  # type: ignore[attr-defined]
    assert not speech.interrupted
    assert v.states(tp.AgentStateChanged) == [(0.0, "speaking"), (approx(1.5), "listening"),
                                              (approx(4.0), "speaking"), (approx(6.5), "listening")]
    # history exactly as without the interruption
    async with voice() as quiet:
        await quiet.session.say(TWELVE)
    assert list(v.session.history) == list(quiet.session.history)
    check_states(v)


@pytest.mark.parametrize("how", ["interrupted", "forced"])
async def test_no_resume_on_a_speech_interrupted_while_paused(autojump_clock: trio.testing.MockClock,
                                                              how: str) -> None:
    async with voice(speech=[(1.0, 2.0)]) as v:
        speech = v.session.say(TWELVE)
        await trio.sleep(2.5)
        v.session.interrupt(force=how == "forced")
        await speech
        assert trio.current_time() == approx(2.5)
        after = v.session.say("after that.")
        await after
        assert trio.current_time() == approx(2.5 + 2 / 3, abs=1e-3)
        await trio.sleep(3.0)  # the old resume deadline (4.0) passes
    assert v.of(tp.FalseInterruption) == []
    assert v.sink.records[0].position == approx(1.5) and v.sink.records[0].interrupted
    assert v.sink.records[1].pauses == [] and v.sink.records[1].position == approx(2 / 3, abs=1e-3)
    assert [(m.text, m.interrupted) for m in v.session.history] == [
        (heard_words(1.5), True), ("after that.", False)]
    check_states(v)


async def test_no_resume_on_a_speech_superseded_by_a_new_turn(autojump_clock: trio.testing.MockClock) -> None:
    """Paused; a late final (after the user stopped) completes a turn: the turn interrupts the
    paused speech, its reply plays, and the old pause's timer never touches the reply."""
    async with voice(speech=[(1.0, 2.0)], transcripts=[(2.3, "no", True)],
                     replies=[LLMReply(TWELVE)]) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert speech.interrupt_source == "user_turn" and trio.current_time() == approx(2.3)
        await trio.sleep(10.0)
    assert v.of(tp.FalseInterruption) == []
    assert len(v.sink.pauses) == 1 and v.sink.records[1].pauses == []
    assert v.sink.records[1].position == approx(AUDIO)
    assert [(m.role, m.text) for m in v.session.history] == [
        ("assistant", heard_words(1.5)), ("user", "no"), ("assistant", TWELVE)]


async def test_a_transcript_after_the_resume_still_ends_the_speech(
        autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0)], transcripts=[(4.5, "stop", True)],
                     replies=[LLMReply("Sure.")]) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(4.7)  # the late final's turn: 0.2 s after it
        await trio.sleep(2.0)
    # resumed at 4.0 from 1.5: at 4.7 the listener has heard 2.2 s
    assert speech.interrupt_source == "user_turn"
    record = v.sink.records[0]
    assert record.pauses == [(approx(1.5), approx(4.0))] and record.position == approx(2.2)
    assert audible(record) == approx(2.2)
    assert [(t, e.resumed) for t, e in v.of(tp.FalseInterruption)] == [(approx(4.0), True)]  # type: ignore[attr-defined]
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("assistant", heard_words(2.2), True), ("user", "stop", False), ("assistant", "Sure.", False)]
    check_states(v)


# -- 4. backchannel -------------------------------------------------------------------------------------

async def test_a_backchannel_changes_nothing_and_its_words_open_the_next_turn(
        autojump_clock: trio.testing.MockClock) -> None:
    """min_interruption_words=2: "mhm" and "yeah" (one word per utterance, two in the agent's
    turn) neither pause nor interrupt nor get a reply; they lead the user's next turn."""
    turn = tp.TurnOptions(min_interruption_words=2)
    async with voice(speech=[(1.0, 1.8), (2.5, 3.3), (5.0, 6.0)], turn=turn,
                     transcripts=[(1.7, "mhm"), (3.2, "yeah"), (5.9, "what time is it")],
                     replies=[LLMReply("Noon.")]) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(AUDIO)
        await trio.sleep(4.0)
    assert v.sink.pauses == [] and not speech.interrupted
    assert [(m.role, m.text) for m in v.session.history] == [
        ("assistant", TWELVE), ("user", "mhm yeah what time is it"), ("assistant", "Noon.")]
    assert [(t, e.text) for t, e in v.of(tp.UserTurnCompleted)] == [  # type: ignore[attr-defined]
        (approx(6.5), "mhm yeah what time is it")]
    assert len(v.llm.requests) == 1
    check_states(v)


async def test_enough_words_in_one_utterance_barge_in(autojump_clock: trio.testing.MockClock) -> None:
    turn = tp.TurnOptions(min_interruption_words=2)
    async with voice(speech=[(1.0, 2.0)], turn=turn, transcripts=[(1.4, "wait", True), (1.7, "stop", True)],
                     replies=[LLMReply("Sure.")]) as v:
        speech = v.session.say(TWELVE)
        await speech
        done_at = trio.current_time()
        await trio.sleep(2.0)
    # 0.5 s of speech at 1.5 had one word: no barge-in; the second word at 1.7 pauses it,
    # and being final words, confirms it at once: interrupted at that position
    assert done_at == approx(1.7)
    assert speech.interrupt_source == "user_turn"
    assert v.sink.records[0].position == approx(1.7)
    assert [(m.role, m.text) for m in v.session.history] == [
        ("assistant", heard_words(1.7)), ("user", "wait stop"), ("assistant", "Sure.")]


# -- 5. user turns ----------------------------------------------------------------------------------------

async def test_one_turn_one_user_message_one_reply(autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0), (2.3, 3.0)],  # resumes within the endpointing delay
                     transcripts=[(1.5, "what", False), (1.9, "what time"), (2.6, "is", False),
                                  (2.9, "is it")],
                     replies=[LLMReply("Noon.")]) as v:
        await trio.sleep(3.49)
        assert v.of(tp.UserTurnCompleted) == [] and v.session.agent_state == "listening"
        await trio.sleep(0.02)
        assert v.session.agent_state in ("thinking", "speaking")
        await trio.sleep(5.0)
    assert [(m.role, m.text) for m in v.session.history] == [
        ("user", "what time is it"), ("assistant", "Noon.")]
    assert [(t, e.text) for t, e in v.of(tp.UserTurnCompleted)] == [  # type: ignore[attr-defined]
        (approx(3.5), "what time is it")]
    assert len(v.llm.requests) == 1 and len(v.of(tp.SpeechCreated)) == 1
    check_states(v)


async def test_an_interim_taken_back_after_the_endpoint_still_completes_the_turn(
        autojump_clock: trio.testing.MockClock) -> None:
    """Review finding 3: a second STT segment's interim ("um") holds the turn open at the
    endpoint (1.5), then the STT takes it back with an empty final (as PocketSphinxSTT
    does): the turn completes late_final_delay (0.2) later, one reply. Before the fix no
    turn ever completed and the words were lost at close."""
    async with voice(speech=[(0.0, 1.0)],
                     transcripts=[(0.6, "what time is it", True), (0.9, "um", False), (1.8, "", True)],
                     replies=[LLMReply("It is noon.")]) as v:
        await trio.sleep(10.0)
    assert [(t, e.text) for t, e in v.of(tp.UserTurnCompleted)] == [  # type: ignore[attr-defined]
        (approx(2.0), "what time is it")]
    assert [(m.role, m.text) for m in v.session.history] == [
        ("user", "what time is it"), ("assistant", "It is noon.")]
    assert len(v.llm.requests) == 1


async def test_late_split_finals_make_one_turn_and_one_reply(autojump_clock: trio.testing.MockClock) -> None:
    """Review finding 5: a slow STT delivers one utterance as two finals, both after the
    endpoint (1.5): one turn, late_final_delay after the second (1.95), one reply. Before
    the fix: two turns, two LLM requests, the first reply cut after its first word."""
    async with voice(speech=[(0.0, 1.0)], transcripts=[(1.6, "what time"), (1.75, "is it")],
                     replies=[LLMReply("It is noon, as I said before."), LLMReply("It is noon.")]) as v:
        await trio.sleep(10.0)
    assert [(t, e.text) for t, e in v.of(tp.UserTurnCompleted)] == [  # type: ignore[attr-defined]
        (approx(1.95, abs=0.02), "what time is it")]  # the STT speaks at 20 ms frames
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("user", "what time is it", False), ("assistant", "It is noon, as I said before.", False)]
    assert len(v.llm.requests) == 1
    check_states(v)


async def test_final_words_before_their_endpoint_are_written_at_close(
        autojump_clock: trio.testing.MockClock) -> None:
    """Review finding 3 (close): the final arrives at 0.6, the session closes at 1.2, before
    the endpoint (1.5): the words are written as a user message, without a reply."""
    async with voice(speech=[(0.0, 1.0)], transcripts=[(0.6, "please remember this")],
                     replies=[LLMReply("ok.")]) as v:
        await trio.sleep_until(1.2)
    assert [(m.role, m.text) for m in v.session.history] == [("user", "please remember this")]
    assert v.llm.requests == [] and v.of(tp.UserTurnCompleted) == []


async def test_a_turn_interrupts_the_playing_speech_first(autojump_clock: trio.testing.MockClock) -> None:
    """A short utterance (no barge-in by duration) with words: its turn interrupts the agent
    (source user_turn) and the agent's heard text comes before the user's message."""
    async with voice(speech=[(1.0, 1.3)], transcripts=[(1.2, "hello")], replies=[LLMReply("Hi.")]) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(1.8)
        await trio.sleep(2.0)
    assert speech.interrupt_source == "user_turn" and v.sink.pauses == []
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("assistant", heard_words(1.8), True), ("user", "hello", False), ("assistant", "Hi.", False)]


async def test_a_turn_during_a_protected_speech_waits_for_it(autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0)], transcripts=[(1.9, "stop please")],
                     replies=[LLMReply("Sorry.")]) as v:
        speech = v.session.say(TWELVE, allow_interruptions=False)
        await speech
        assert trio.current_time() == approx(AUDIO)
        await trio.sleep(2.0)
    assert not speech.interrupted and v.sink.pauses == []
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("assistant", TWELVE, False), ("user", "stop please", False), ("assistant", "Sorry.", False)]
    assert v.of(tp.UserTurnCompleted)[0][0] == approx(2.5)  # heard at once, written after the speech
    assert v.sink.records[1].started_at == approx(AUDIO)


async def test_a_new_turn_cancels_a_reply_that_has_not_played(autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0), (2.8, 3.5)], transcripts=[(1.9, "what time"), (3.4, "in Paris")],
                     replies=[LLMReply("Stale answer.", ttft=2.0), LLMReply("Noon in Paris.")]) as v:
        await trio.sleep(3.0)
        stale = v.session.speeches[0]
        await trio.sleep(5.0)
    assert stale.interrupt_source == "user_turn" and stale.chat_items == []
    assert len(v.sink.records) == 1 and v.sink.records[0].started_at == approx(4.0)
    assert [(m.role, m.text) for m in v.session.history] == [
        ("user", "what time"), ("user", "in Paris"), ("assistant", "Noon in Paris.")]
    assert [e.source for _, e in v.of(tp.SpeechCreated)] == ["generate_reply", "generate_reply"]  # type: ignore[attr-defined]
    check_states(v)


# -- 6. states and events --------------------------------------------------------------------------------

def agent_speaking(v: Voice) -> list[tuple[float, float]]:
    """Intervals in which the agent's state was "speaking", from the events."""
    out: list[tuple[float, float]] = []
    since: float | None = None
    for t, new in v.states(tp.AgentStateChanged):
        if new == "speaking":
            since = t
        elif since is not None:
            out.append((since, t))
            since = None
    assert since is None
    return out


def audio_heard(sink: tp.RealtimeAudioSink) -> list[tuple[float, float]]:
    """Intervals in which the sink's audio was audible, merged."""
    pieces: list[tuple[float, float]] = []
    for record in sink.records:
        if not record.position:
            continue
        assert record.stopped_at is not None
        t = record.started_at
        for at, back in record.pauses:
            pieces.append((t, at))
            t = back if back is not None else record.stopped_at
        pieces.append((t, record.stopped_at))
    merged: list[tuple[float, float]] = []
    for a, b in sorted(p for p in pieces if p[1] - p[0] > EPS):
        if merged and a <= merged[-1][1] + EPS:
            merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
        else:
            merged.append((a, b))
    return merged


async def test_states_and_events_tell_the_truth(autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0), (7.0, 8.0)], transcripts=[(7.9, "what time is it")],
                     replies=[LLMReply("It is noon.", ttft=0.3)]) as v:
        speech = v.session.say(TWELVE)
        await trio.sleep(12.0)
        reply = v.session.history[-1]
    names = [(round(t, 6), type(e).__name__, getattr(e, "new", getattr(e, "text", ""))) for t, e in v.events]
    assert names == [
        (0.0, "SpeechCreated", ""),
        (0.0, "AgentStateChanged", "speaking"),
        (1.0, "UserStateChanged", "speaking"),
        (1.5, "AgentStateChanged", "listening"),  # paused by the barge-in
        (2.0, "UserStateChanged", "listening"),
        (4.0, "FalseInterruption", ""),
        (4.0, "AgentStateChanged", "speaking"),
        (6.5, "AgentStateChanged", "listening"),
        (7.0, "UserStateChanged", "speaking"),
        (7.9, "UserInputTranscribed", "what time is it"),
        (8.0, "UserStateChanged", "listening"),
        (8.5, "UserTurnCompleted", "what time is it"),
        (8.5, "AgentStateChanged", "thinking"),
        (8.5, "SpeechCreated", ""),
        (8.8, "AgentStateChanged", "speaking"),
        (9.8, "AgentStateChanged", "listening"),
    ]
    assert isinstance(reply, tp.ChatMessage) and reply.text == "It is noon."
    assert v.of(tp.FalseInterruption)[0][1].speech is speech  # type: ignore[attr-defined]
    assert agent_speaking(v) == [(approx(a), approx(b)) for a, b in audio_heard(v.sink)]
    check_states(v)


async def test_agent_state_is_idle_without_audio_input(autojump_clock: trio.testing.MockClock) -> None:
    sink = tp.RealtimeAudioSink()
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink) as session:
        assert session.agent_state == "idle" and session.user_state == "listening"
        async with session.subscribe() as events:
            speech = session.say("one two three.")
            await trio.testing.wait_all_tasks_blocked()
            assert session.agent_state == "speaking"
            await speech
            assert session.agent_state == "idle"
            seen = [events.receive_nowait() for _ in range(3)]
    assert [type(e).__name__ for e in seen] == ["SpeechCreated", "AgentStateChanged", "AgentStateChanged"]
    assert [(e.old, e.new) for e in seen[1:]] == [("idle", "speaking"), ("speaking", "idle")]  # type: ignore[attr-defined]


async def test_an_applications_pause_holds_the_reply_back_without_audio_input(
        autojump_clock: trio.testing.MockClock) -> None:
    """Review finding 11: without audio input the session never pauses nor resumes the sink,
    so the application's pause (a "hold" button) holds the reply back until it resumes, as
    AudioOutput.pause says. Before the fix the session resumed the sink at the reply's
    first frame."""
    sink = tp.RealtimeAudioSink()
    async with tp.open_session(llm=ScriptedLLM([LLMReply("one two three.")]), tts=FakeTTS(),
                               output=sink) as session:
        sink.pause()
        speech = session.generate_reply()
        await trio.sleep(3.0)
        assert sink.paused and not speech.done()
        sink.resume()
        await speech
        assert trio.current_time() == approx(4.0)  # 1 s of audio, from the resume on
    assert [(m.text, m.interrupted) for m in session.history] == [("one two three.", False)]


async def test_with_audio_input_the_session_owns_the_pause(autojump_clock: trio.testing.MockClock) -> None:
    """With audio input the session owns the sink's pause state (it pauses and resumes for
    the user's voice): a pause it did not make is lifted before a reply's first frame."""
    async with voice(replies=[LLMReply("one two three.")]) as v:
        v.sink.pause()
        speech = v.session.generate_reply()
        await speech
        assert trio.current_time() == approx(1.0) and not v.sink.paused
    assert [(m.text, m.interrupted) for m in v.session.history] == [("one two three.", False)]


# -- 7. a VAD or STT that fails -------------------------------------------------------------------------

@dataclass
class Broken:
    """Wraps a scripted VAD or STT: ``at`` seconds after its stream starts, its input
    raises inside it, ends, or stops coming (it hangs, reading nothing more).
    ``slow_close``: closing its stream takes that long (a stuck connection)."""

    inner: Any
    how: str
    at: float
    slow_close: float = 0.0

    def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[Any]:
        return _SlowClose(self.inner.stream(self._frames(frames)), self.slow_close)

    async def _frames(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.AudioFrame]:
        t0 = trio.current_time()
        async for frame in frames:
            if trio.current_time() - t0 >= self.at - EPS:
                if self.how == "raises":
                    raise RuntimeError("the model crashed")
                if self.how == "ends":
                    return
                await trio.sleep_forever()
            yield frame



class _SlowClose:
    """A stream (not a generator) whose ``aclose()`` takes ``delay`` seconds."""

    def __init__(self, inner: AsyncIterator[Any], delay: float) -> None:
        self.inner, self.delay = inner, delay

    def __aiter__(self) -> _SlowClose:
        return self

    async def __anext__(self) -> Any:
        return await self.inner.__anext__()

    async def aclose(self) -> None:
        await trio.sleep(self.delay)
        await self.inner.aclose()  # type: ignore[attr-defined]


@pytest.mark.parametrize("how", ["raises", "ends", "hangs"])
async def test_a_failing_vad_is_logged_and_the_agent_keeps_speaking(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, how: str) -> None:
    """The VAD breaks at 1.7 s, while the user speaks and the speech is paused: the user's
    speech ends there (for a hang: when its 2 s of queued audio overflow), so the pause
    still resolves: it resumes 2 s later and the agent finishes its whole text."""
    stop = 1.7 if how != "hangs" else 1.7 + 2.0
    vad = Broken(ScriptedVAD(speech=[(1.0, 2.0)], window=0.02), how, 1.7)
    async with voice(vad=vad) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(stop + 2.0 + 2.5, abs=0.03)
        v.session.say("still here.")
        await trio.sleep(1.0)
        closing = trio.current_time()
    assert trio.current_time() - closing < 0.1  # closing is bounded
    assert v.sink.pauses == [(approx(1.5), approx(stop + 2.0, abs=0.03))]
    assert [m.text for m in v.session.history] == [TWELVE, "still here."]
    assert not speech.interrupted
    logged = caplog.text
    assert {"raises": "the VAD failed", "ends": "the VAD stream ended while audio still comes in",
            "hangs": "the VAD fell 2 s behind"}[how] in logged
    assert "ending the user's speech now" in logged
    check_states(v)


@pytest.mark.parametrize("how", ["raises", "ends", "hangs"])
async def test_a_failing_stt_is_logged_and_barge_in_goes_on(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, how: str) -> None:
    """The STT breaks at 1.7 s, before the words "stop" (1.8) arrive: the pause is a false
    interruption as far as the session can tell, so the speech resumes and plays out."""
    stt = Broken(ScriptedSTT([(1.8, "stop")]), how, 1.7)
    async with voice(speech=[(1.0, 2.0), (7.0, 7.3)], stt=stt) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(6.5)
        await trio.sleep(1.0)
    assert v.sink.pauses == [(approx(1.5), approx(4.0))]
    assert [m.text for m in v.session.history] == [TWELVE]
    assert v.states(tp.UserStateChanged) == [(approx(1.0), "speaking"), (approx(2.0), "listening"),
                                             (approx(7.0), "speaking"), (approx(7.3), "listening")]
    if how != "hangs":  # a hang shows only when 10 s of audio have queued up
        assert {"raises": "the STT failed", "ends": "the STT stream ended"}[how] in caplog.text


class _StallingVAD:
    """Reports every 20 ms window of a speech from 1.0 s; from 1.8 s it keeps reading the
    audio but never sends another event (a remote VAD whose results stopped)."""

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        t = 0.0
        async for frame in frames:
            t = round(t + frame.duration, 9)
            if 1.0 <= t < 1.8:
                if t == 1.0:
                    yield tp.VADEvent(tp.VADEventType.START_OF_SPEECH, t, 0.0, 0.0, 0.9)
                else:
                    yield tp.VADEvent(tp.VADEventType.INFERENCE, t, t - 1.0, 0.0, 0.9)


@pytest.mark.parametrize("words", [False, True])
async def test_a_vad_that_reads_but_stops_sending_events_ends_the_users_speech(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, words: bool) -> None:
    """Review finding 4: the VAD's last event is at 1.8 s; after 2 s more of audio read
    without an event (3.8) the user's speech is ended. Without words the barge-in pause
    (1.5) resumes 2 s later (5.8) and the speech plays out; with a final ("hold on", 2.5)
    the paused speech is interrupted and the turn completes at the endpoint (4.3), one
    reply. Before the fix the user stayed "speaking" and the agent paused forever."""
    transcripts = [(2.5, "hold on")] if words else []
    async with voice(vad=_StallingVAD(), transcripts=transcripts, replies=[LLMReply("Sure.")]) as v:
        speech = v.session.say(TWELVE)
        await trio.sleep(3.7)
        assert v.session.user_state == "speaking"
        await trio.sleep(0.2)
        assert v.session.user_state == "listening"
        await speech
        await trio.sleep(3.0)
    assert "the VAD read 2 s of audio without an event" in caplog.text
    assert v.states(tp.UserStateChanged) == [(approx(1.0), "speaking"), (approx(3.8, abs=0.03), "listening")]
    if words:
        assert speech.interrupt_source == "user_turn"
        assert [(t, e.text) for t, e in v.of(tp.UserTurnCompleted)] == [  # type: ignore[attr-defined]
            (approx(4.3, abs=0.03), "hold on")]
        assert [(m.role, m.text) for m in v.session.history] == [
            ("assistant", heard_words(1.5)), ("user", "hold on"), ("assistant", "Sure.")]
    else:
        assert v.sink.pauses == [(approx(1.5), approx(5.8, abs=0.03))]
        assert [(m.text, m.interrupted) for m in v.session.history] == [(TWELVE, False)]
    check_states(v)


class _StartEndVAD:
    """Sends only START_OF_SPEECH and END_OF_SPEECH (no windows): 1.0 to 7.0 s."""

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        t = 0.0
        async for frame in frames:
            t = round(t + frame.duration, 9)
            if t in (1.0, 7.0):
                kind = tp.VADEventType.START_OF_SPEECH if t == 1.0 else tp.VADEventType.END_OF_SPEECH
                yield tp.VADEvent(kind, t, 0.0 if t == 1.0 else 6.0)


async def test_a_vad_without_windows_is_never_judged_stalled(autojump_clock: trio.testing.MockClock,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    """The stall watchdog only judges a VAD that reports its windows: a 6 s utterance from a
    VAD that sends only starts and ends stays one speech."""
    async with voice(vad=_StartEndVAD(), stt=None) as v:
        await trio.sleep(8.0)
    assert v.states(tp.UserStateChanged) == [(approx(1.0), "speaking"), (approx(7.0), "listening")]
    assert "without an event" not in caplog.text


class _FlakySink(tp.RealtimeAudioSink):
    """A sink whose ``on_pause`` or ``on_resume`` hook raises once (a control send failed)."""

    def __init__(self, fail: str) -> None:
        super().__init__()
        self.fail = fail

    def on_pause(self) -> None:
        if self.fail == "pause":
            self.fail = ""
            raise OSError("control channel hiccup")
        super().on_pause()

    def on_resume(self) -> None:
        if self.fail == "resume":
            self.fail = ""
            raise OSError("control channel hiccup")
        super().on_resume()


@pytest.mark.parametrize("fail", ["pause", "resume"])
async def test_a_sink_hook_that_raises_never_takes_the_voice_down(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, fail: str) -> None:
    """Review finding 1. The user barges in at 1.0-2.0 (pause due at 1.5, false-interruption
    resume at 4.0), and again at 6.0-7.0 on a second speech. ``on_pause`` raising: the first
    barge-in interrupts instead (as on a sink that cannot pause). ``on_resume`` raising: the
    paused speech cannot go on and ends where it paused (FalseInterruption resumed=False;
    handle and history agree). Either way the session lives, the second barge-in pauses and
    resumes normally and the user's states go on. Before the fix: the session died (resume)
    or the VAD was declared failed for good (pause)."""
    sink = _FlakySink(fail)
    async with voice(sink=sink, speech=[(1.0, 2.0), (6.0, 7.0)], stt=None) as v:
        first = v.session.say(TWELVE)
        await first
        stop = 1.5 if fail == "pause" else 4.0
        assert trio.current_time() == approx(stop, abs=0.03)
        await trio.sleep_until(5.0)
        second = v.session.say(TWELVE)
        await second
        await trio.sleep(1.0)
    heard = 1.5
    assert first.interrupted and first.interrupt_source == "audio_activity"
    assert not second.interrupted
    assert [(m.text, m.interrupted) for m in v.session.history] == [
        (heard_words(heard), True), (TWELVE, False)]
    assert v.sink.records[-1].pauses == [(approx(6.5), approx(9.0))]
    assert [e.resumed for _, e in v.of(tp.FalseInterruption)] == (  # type: ignore[attr-defined]
        [True] if fail == "pause" else [False, True])
    assert v.states(tp.UserStateChanged) == [(approx(1.0), "speaking"), (approx(2.0), "listening"),
                                             (approx(6.0), "speaking"), (approx(7.0), "listening")]
    assert "the VAD failed" not in caplog.text and "interrupting it instead" in caplog.text
    check_states(v)


class _RefusesToStream:
    """A VAD or STT whose ``stream()`` (a plain ``def``) raises when it is called."""

    def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[Any]:
        raise RuntimeError("the model failed to load for this stream")


@pytest.mark.parametrize("which", ["vad", "stt"])
async def test_a_vad_or_stt_whose_stream_call_raises_is_logged_and_the_agent_keeps_speaking(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, which: str) -> None:
    """Review finding 2: ``vad.stream()``/``stt.stream()`` raising when called was outside
    the driver's error handling and took the whole session down; now it is reported like a
    stream that fails, and the other part still works (the VAD still pauses and resumes;
    the STT's final alone still makes a turn)."""
    parts: dict[str, Any] = {which: _RefusesToStream()}
    async with voice(speech=[(1.0, 2.0)], transcripts=[(1.9, "hello there")],
                     replies=[LLMReply("Hi.")], **parts) as v:
        speech = v.session.say(TWELVE)
        await speech
        await trio.sleep(3.0)
    assert {"vad": "the VAD failed", "stt": "the STT failed"}[which] in caplog.text
    texts = [(m.role, m.text) for m in v.session.history]
    if which == "stt":  # barge-in paused, no words: a false interruption, the whole text
        assert v.sink.pauses == [(approx(1.5), approx(4.0))] and texts == [("assistant", TWELVE)]
    else:  # no VAD: the final is the user's speech; its turn interrupts the agent
        assert speech.interrupt_source == "user_turn"
        assert texts[1:] == [("user", "hello there"), ("assistant", "Hi.")]


async def test_the_input_ending_is_not_an_error(autojump_clock: trio.testing.MockClock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """The microphone stops at 2.1 s, after a barge-in paused the agent: no error, and the
    false-interruption timer still resumes it at 4.0."""
    caplog.set_level(logging.INFO, logger="trio_playout")
    async with voice(speech=[(1.0, 2.0)], audio_input=SilentInput(duration=2.1)) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(6.5)
        await v.session.say("more.")
    assert [m.text for m in v.session.history] == [TWELVE, "more."]
    assert "the audio input ended" in caplog.text
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_closing_is_bounded_when_a_stream_will_not_close(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    vad = Broken(ScriptedVAD(speech=[(1.0, 2.0)]), "never", math.inf, slow_close=100.0)
    stt = Broken(ScriptedSTT([(1.8, "stop")]), "never", math.inf, slow_close=100.0)
    async with voice(vad=vad, stt=stt, replies=[LLMReply("Okay.")]) as v:
        v.session.say(TWELVE)
        await trio.sleep(3.0)
        closing = trio.current_time()
    assert trio.current_time() - closing <= 1.0 + EPS  # each stream gets close_timeout=1 s, in parallel
    assert "took longer than 1 s" in caplog.text


# -- closing ------------------------------------------------------------------------------------------------

async def test_a_turn_still_waiting_when_the_session_closes_is_written(
        autojump_clock: trio.testing.MockClock) -> None:
    """The turn (2.5) waits for the protected speech; the session closes at 3.0: the user's
    words are written after the speech's heard text, with no reply (they were lost before)."""
    async with voice(speech=[(1.0, 2.0)], transcripts=[(1.9, "bye now")], replies=[LLMReply("Bye.")]) as v:
        v.session.say(TWELVE, allow_interruptions=False)
        await trio.sleep(3.0)
        assert [t for t, _ in v.of(tp.UserTurnCompleted)] == [approx(2.5)]
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("assistant", heard_words(3.0), True), ("user", "bye now", False)]
    assert v.llm.requests == []


async def test_a_turn_completing_as_the_session_closes_is_written_once(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    """The turn's endpoint (0.5) is the moment the block exits. Whichever task trio runs
    first, a turn that was reported (UserTurnCompleted) is in history exactly once, and
    nothing fails. Before the fix a turn worker woken just then committed into the closed
    session (an ERROR with a traceback: the words were lost) and a VAD step still under
    way published into the closed event channels (logged as "the VAD failed")."""
    written = 0
    for _ in range(30):
        async with voice(speech=[(0.1, 0.3)], transcripts=[(0.3, "hello")], turn=tp.TurnOptions(
                min_endpointing_delay=0.2, auto_reply=False)) as v:
            await trio.sleep(0.5)
        turns = [e.text for _, e in v.of(tp.UserTurnCompleted)]  # type: ignore[attr-defined]
        # a reported turn is written once; words whose turn was not reported yet are
        # written at close all the same
        assert turns in ([], ["hello"]) and [m.text for m in v.session.history] == ["hello"]
        written += len(turns)
        assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert written > 0


# -- issue 12: pause at the start of speech ---------------------------------------------------------------

EARLY = tp.TurnOptions(pause_on_speech_start=True)


@pytest.mark.parametrize("cough", [0.1, 0.3])
async def test_a_provisional_pause_resumes_at_once_after_a_cough(
        autojump_clock: trio.testing.MockClock, cough: float) -> None:
    async with voice(speech=[(1.0, 1.0 + cough)], turn=EARLY) as v:
        speech = v.session.say(TWELVE)
        await speech
        done_at = trio.current_time()
    assert v.sink.pauses == [(approx(1.0), approx(1.0 + cough))]  # paused at the VAD's start
    record = v.sink.records[0]
    assert record.position == approx(AUDIO) and audible(record) == approx(AUDIO) and not record.interrupted
    assert done_at == approx(AUDIO + cough)
    assert [(t, e.speech, e.resumed, e.provisional)  # type: ignore[attr-defined]
            for t, e in v.of(tp.FalseInterruption)] == [(approx(1.0 + cough), speech, True, True)]
    assert [(m.text, m.interrupted) for m in v.session.history] == [(TWELVE, False)]
    assert v.states(tp.AgentStateChanged) == [(0.0, "speaking"), (approx(1.0), "listening"),
                                              (approx(1.0 + cough), "speaking"),
                                              (approx(AUDIO + cough), "listening")]
    check_states(v)


async def test_a_provisional_pause_that_becomes_a_barge_in_follows_the_barge_in_rules(
        autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0)], turn=EARLY) as v:
        speech = v.session.say(TWELVE)
        await speech
    # paused at 1.0, not resumed at the end of speech (2.0): it counted at 1.5, so it
    # resumes after false_interruption_timeout, as an ordinary false interruption
    assert v.sink.pauses == [(approx(1.0), approx(4.0))]
    assert v.sink.records[0].position == approx(AUDIO)
    assert [(t, e.provisional) for t, e in v.of(tp.FalseInterruption)] == [  # type: ignore[attr-defined]
        (approx(4.0), False)]
    assert [(m.text, m.interrupted) for m in v.session.history] == [(TWELVE, False)]


async def test_words_after_a_provisional_pause_cut_the_text_where_it_paused(
        autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 2.0)], transcripts=[(1.8, "stop")], turn=EARLY,
                     replies=[LLMReply("Okay.")]) as v:
        speech = v.session.say(TWELVE)
        await speech
        assert trio.current_time() == approx(1.8)
        await trio.sleep(2.0)
    assert speech.interrupt_source == "user_turn" and v.sink.records[0].position == approx(1.0)
    assert [(m.role, m.text, m.interrupted) for m in v.session.history] == [
        ("assistant", heard_words(1.0), True), ("user", "stop", False), ("assistant", "Okay.", False)]
    assert v.of(tp.FalseInterruption) == []


@pytest.mark.parametrize("how", ["protected", "sink cannot pause"])
async def test_no_provisional_pause_without_a_pausable_interruptible_speech(
        autojump_clock: trio.testing.MockClock, how: str) -> None:
    async with voice(speech=[(1.0, 1.3)], turn=EARLY,
                     sink=tp.RealtimeAudioSink(can_pause=how != "sink cannot pause")) as v:
        speech = v.session.say(TWELVE, allow_interruptions=how != "protected")
        await speech
    assert v.sink.pauses == [] and not speech.interrupted and v.of(tp.FalseInterruption) == []
    assert [m.text for m in v.session.history] == [TWELVE]


# -- more timings -----------------------------------------------------------------------------------------

async def test_a_speech_that_starts_while_the_user_talks_is_paused_before_its_first_word(
        autojump_clock: trio.testing.MockClock) -> None:
    async with voice(speech=[(1.0, 3.0)]) as v:
        await trio.sleep(2.0)
        speech = v.session.say(TWELVE)
        await speech
        done_at = trio.current_time()
    # the barge-in is already under way at its first frame: nothing is heard until the
    # false interruption ends (3.0 + 2.0), then all of it
    assert v.sink.pauses == [(approx(2.0), approx(5.0))]
    record = v.sink.records[0]
    assert record.started_at == approx(5.0) and record.position == approx(AUDIO)
    assert done_at == approx(5.0 + AUDIO)
    assert v.states(tp.AgentStateChanged) == [(approx(5.0), "speaking"), (approx(9.0), "listening")]
    assert [(m.text, m.interrupted) for m in v.session.history] == [(TWELVE, False)]


@pytest.mark.parametrize("user", [(3.0, 4.0), (3.7, 4.7), (4.2, 5.0)])
async def test_a_false_interruption_around_a_tool_step_leaves_history_as_without_it(
        autojump_clock: trio.testing.MockClock, user: tuple[float, float]) -> None:
    """A reply (4 s of audio and a quick tool) then its tool reply (1 s): a false
    interruption in the first step, across the step change, or in the second."""
    @tp.function_tool
    async def lookup(ctx: tp.RunContext) -> str:
        """Look it up."""
        await trio.sleep(0.1)
        return "found"

    replies = [LLMReply(TWELVE, [ToolCall("lookup", {}, call_id="c1")]), LLMReply("It is found.")]
    async with voice(speech=[user], tools=[lookup], replies=replies) as v:
        speech = v.session.generate_reply(user_input="find it")
        await speech
        done_at = trio.current_time()
    async with voice(tools=[lookup], replies=replies) as quiet:
        quiet_start = trio.current_time()
        await quiet.session.generate_reply(user_input="find it")
        quiet_done = trio.current_time() - quiet_start
    assert list(v.session.history) == list(quiet.session.history)
    assert len(v.sink.pauses) == 1 and v.sink.pauses[0][1] == approx(user[1] + 2.0)
    paused = v.sink.pauses[0][1] - v.sink.pauses[0][0]  # type: ignore[operator]
    assert done_at == approx(quiet_done + paused)
    assert sum(r.position or 0.0 for r in v.sink.records) == approx(AUDIO + 1.0)
    assert [(t, e.resumed) for t, e in v.of(tp.FalseInterruption)] == [  # type: ignore[attr-defined]
        (approx(user[1] + 2.0), True)]
