"""The voice driver (trio_playout._voice) in virtual time, against a small fake host.

The VAD and STT fakes here are local and minimal: they read the frames they are given
and go by *audio* time (seconds of audio consumed), as real ones do. The input is
paced on trio's clock, so audio time and clock time agree unless a consumer falls
behind.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Hashable, Sequence
from dataclasses import dataclass, field

import pytest
import trio
import trio.testing

import trio_playout as tp
from trio_playout._events import (
    AgentStateChanged,
    FalseInterruption,
    SessionEvent,
    UserInputTranscribed,
    UserStateChanged,
    UserTurnCompleted,
)
from trio_playout._turn import SpeechFacts, TurnOptions
from trio_playout._voice import VoiceDriver

FRAME = 0.02


async def paced_input(seconds: float = math.inf) -> AsyncIterator[tp.AudioFrame]:
    """Silence frames, each delivered when its audio has elapsed (like a microphone)."""
    frame = tp.AudioFrame.silence(FRAME)
    n = 0
    while (n + 1) * FRAME <= seconds + 1e-9:
        await trio.sleep(FRAME)
        n += 1
        yield frame


@dataclass
class FakeVAD:
    """START/INFERENCE (every frame while speaking)/END from scripted intervals of audio time."""

    speech: Sequence[tuple[float, float]]
    fail_at: float | None = None
    stop_at: float | None = None  # the stream ends
    hang_at: float | None = None  # stops reading frames
    frames: int = 0

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        audio = 0.0
        speaking: tuple[float, float] | None = None
        async for frame in frames:
            self.frames += 1
            audio = round(audio + frame.duration, 9)
            if self.fail_at is not None and audio >= self.fail_at:
                raise RuntimeError("the VAD model crashed")
            if self.stop_at is not None and audio >= self.stop_at:
                return
            if self.hang_at is not None and audio >= self.hang_at:
                await trio.sleep_forever()
            if speaking is None:
                for start, end in self.speech:
                    if start <= audio < end:
                        speaking = (start, end)
                        yield tp.VADEvent(tp.VADEventType.START_OF_SPEECH, audio, 0.0, 0.0, 1.0)
                        break
            elif audio >= speaking[1]:
                speaking = None
                yield tp.VADEvent(tp.VADEventType.END_OF_SPEECH, audio, 0.0, 0.0, 0.0)
            else:
                duration = round(audio - speaking[0], 9)
                yield tp.VADEvent(tp.VADEventType.INFERENCE, audio, duration, 0.0, 1.0)


@dataclass
class FakeSTT:
    """Transcripts at scripted audio times; ``per_frame`` seconds of work per frame."""

    transcripts: Sequence[tuple[float, str, bool]] = ()
    per_frame: float = 0.0
    fail_at: float | None = None
    frames: int = 0

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.Transcript]:
        audio = 0.0
        pending = sorted(self.transcripts)
        async for frame in frames:
            self.frames += 1
            if self.per_frame:
                await trio.sleep(self.per_frame)
            audio = round(audio + frame.duration, 9)
            if self.fail_at is not None and audio >= self.fail_at:
                raise RuntimeError("the STT connection dropped")
            while pending and pending[0][0] <= audio:
                _, text, final = pending.pop(0)
                yield tp.Transcript(text, final)


@dataclass(eq=False)
class FakeSpeech:
    key: str
    interruptible: bool = True
    pausable: bool = True
    playing: bool = False
    paused: bool = False
    interrupted: bool = False
    done: bool = False
    refuse: bool = False  # protected behind the facts' back: interrupt() raises
    done_event: trio.Event = field(default_factory=trio.Event)


class FakeHost:
    """Our VoiceHost protocol over plain records; every call is logged with its time."""

    def __init__(self, *, finish_delay: float = 0.1) -> None:
        self.speeches: dict[str, FakeSpeech] = {}
        self.current: str | None = None
        self.calls: list[tuple[float, str, object]] = []
        self.events: list[SessionEvent] = []
        self.driver: VoiceDriver | None = None
        self.finish_delay = finish_delay
        self.replies = 0
        self.nursery: trio.Nursery | None = None

    def log(self, what: str, arg: object = None) -> None:
        self.calls.append((trio.current_time(), what, arg))

    def names(self) -> list[str]:
        return [what for _, what, _ in self.calls]

    def at(self, what: str) -> list[float]:
        return [t for t, w, _ in self.calls if w == what]

    # the session side, driven by the test
    def play(self, key: str, **kw: bool) -> FakeSpeech:
        speech = self.speeches[key] = FakeSpeech(key, **kw)
        speech.playing = True
        self.current = key
        self.changed(key)
        return speech

    def finish(self, key: str) -> None:
        speech = self.speeches[key]
        speech.done, speech.playing, speech.paused = True, False, False
        speech.done_event.set()
        if self.current == key:
            self.current = None
        self.changed(key)

    def changed(self, key: str) -> None:
        if self.driver is not None:
            self.driver.speech_changed(key)

    # VoiceHost
    def current_speech(self) -> Hashable | None:
        return self.current

    def speech_facts(self, speech: Hashable) -> SpeechFacts:
        s = self.speeches.get(str(speech))
        if s is None or s.done or s.interrupted:
            return SpeechFacts(finished=True)
        return SpeechFacts(interruptible=s.interruptible, playing=s.playing, pausable=s.pausable)

    def pause_audio(self, speech: Hashable) -> bool:
        self.log("pause", speech)
        s = self.speeches[str(speech)]
        s.paused = True
        return True

    def resume_audio(self, speech: Hashable) -> bool:
        self.log("resume", speech)
        s = self.speeches[str(speech)]
        if s.done or s.interrupted or not s.paused:
            return False
        s.paused = False
        return True

    def release_pause(self, speech: Hashable) -> None:
        self.log("release", speech)
        self.speeches[str(speech)].paused = False

    def interrupt_speech(self, speech: Hashable, source: str) -> None:
        self.log("interrupt", (speech, source))
        s = self.speeches[str(speech)]
        if not s.interruptible or s.refuse:
            raise tp.InterruptionNotAllowed(str(speech))
        if not s.interrupted and not s.done:
            s.interrupted = True
            self.changed(s.key)  # re-entrant, as a session would be
            assert self.nursery is not None
            self.nursery.start_soon(self._finish_later, s.key)

    async def _finish_later(self, key: str) -> None:
        await trio.sleep(self.finish_delay)  # the sink confirms the stop
        self.finish(key)

    def begin_user_turn(self) -> Sequence[Hashable]:
        self.log("begin_turn")
        waits = []
        for s in self.speeches.values():
            if s.done:
                continue
            if s.interruptible and not s.interrupted:
                self.interrupt_speech(s.key, "user_turn")
            waits.append(s.key)
        return waits

    async def wait_speech_done(self, speech: Hashable) -> None:
        await self.speeches[str(speech)].done_event.wait()

    def commit_user_turn(self, text: str, *, reply: bool) -> Hashable | None:
        self.log("commit", (text, reply))
        if not reply:
            return None
        self.replies += 1
        key = f"reply{self.replies}"
        self.speeches[key] = FakeSpeech(key)  # scheduled, no audio yet
        return key

    def publish(self, event: SessionEvent) -> None:
        self.events.append(event)


async def start(nursery: trio.Nursery, host: FakeHost, *, seconds: float = math.inf,
                **kw: object) -> VoiceDriver:
    driver = VoiceDriver(host, **kw)  # type: ignore[arg-type]
    host.driver = driver
    host.nursery = nursery
    await nursery.start(driver.run, paced_input(seconds))
    return driver


def of(events: Sequence[SessionEvent], kind: type) -> list[SessionEvent]:
    return [e for e in events if isinstance(e, kind)]


# -- barge-in, false interruption, turns ----------------------------------------------------------
async def test_cough_then_barge_in_pauses_then_false_interruption_resumes(
        autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        await start(nursery, host, vad=FakeVAD([(1.0, 1.3), (2.0, 3.0)]), stt=FakeSTT())
        await trio.sleep(6.0)
        nursery.cancel_scope.cancel()
    assert host.names() == ["pause", "resume"]
    assert host.at("pause") == [pytest.approx(2.5)]  # at min_interruption_duration, not at the cough
    assert host.at("resume") == [pytest.approx(3.0 + 2.0)]  # end of speech + timeout
    assert of(host.events, FalseInterruption) == [FalseInterruption("s1", True)]  # type: ignore[arg-type]
    assert [e.new for e in of(host.events, AgentStateChanged)] == ["speaking", "listening", "speaking"]  # type: ignore[attr-defined]
    assert [e.new for e in of(host.events, UserStateChanged)] == ["speaking", "listening"] * 2  # type: ignore[attr-defined]
    assert not host.speeches["s1"].paused and not host.speeches["s1"].interrupted


class FailingHost(FakeHost):
    """A host whose calls raise once each, as a session's would when a sink hook raises."""

    def __init__(self, *fail: str) -> None:
        super().__init__()
        self.fail = set(fail)

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            self.fail.discard(what)
            self.log("failed " + what)
            raise OSError(f"{what}: control channel hiccup")

    def pause_audio(self, speech: Hashable) -> bool:
        self._maybe_fail("pause")
        return super().pause_audio(speech)

    def resume_audio(self, speech: Hashable) -> bool:
        self._maybe_fail("resume")
        return super().resume_audio(speech)

    def publish(self, event: SessionEvent) -> None:
        if isinstance(event, UserStateChanged):
            self._maybe_fail("publish")
        super().publish(event)


async def test_a_failing_host_call_leaves_the_rest_of_its_actions_running_at_once(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Review finding 1 and its suspicion: publishing the start of speech raises (1.0). The
    provisional pause decided with it still happens at 1.0, not at some later input, and
    the VAD goes on (the second utterance pauses again at 4.0). Before the fix the error
    escaped into the VAD task: "the VAD failed", and the pause ran at the next transcript."""
    host = FailingHost("publish")
    async with trio.open_nursery() as nursery:
        host.play("s1")
        await start(nursery, host, vad=FakeVAD([(1.0, 1.2), (4.0, 4.2)]),
                    stt=FakeSTT([(3.0, "", False)]), options=TurnOptions(pause_on_speech_start=True))
        await trio.sleep(6.0)
        nursery.cancel_scope.cancel()
    assert host.at("failed publish") == [pytest.approx(1.0)]
    assert host.at("pause") == [pytest.approx(1.0), pytest.approx(4.0)]
    assert host.at("resume") == [pytest.approx(1.2), pytest.approx(4.2)]
    assert "the VAD failed" not in caplog.text and "control channel hiccup" in caplog.text


async def test_a_pause_or_resume_that_raises_interrupts_the_speech_and_the_voice_goes_on(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    """Review finding 1: a barge-in whose pause raises (1.5) interrupts instead, as on a sink
    that cannot pause; a false-interruption resume that raises (s2: 7.5 -> 10.0) ends that
    speech where it paused (FalseInterruption resumed=False). The VAD, the timer and the
    STT's turn all go on."""
    host = FailingHost("pause", "resume")
    async with trio.open_nursery() as nursery:
        host.play("s1")
        await start(nursery, host, vad=FakeVAD([(1.0, 2.0), (7.0, 8.0), (12.0, 12.5)]),
                    stt=FakeSTT([(12.4, "hello", True)]))
        await trio.sleep(5.0)
        host.play("s2")
        await trio.sleep(8.0)
        nursery.cancel_scope.cancel()
    assert host.at("failed pause") == [pytest.approx(1.5)]
    assert ("s1", "audio_activity") in [arg for _, w, arg in host.calls if w == "interrupt"]
    assert host.at("pause") == [pytest.approx(7.5)]
    assert host.at("failed resume") == [pytest.approx(10.0)]
    assert host.speeches["s2"].interrupted
    assert of(host.events, FalseInterruption) == [FalseInterruption("s2", False)]  # type: ignore[arg-type]
    assert [arg for _, w, arg in host.calls if w == "commit"] == [("hello", True)]
    assert caplog.text.count("interrupting it instead") == 2


async def test_words_interrupt_then_the_turn_is_written_after_the_speech_is_done(
        autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost(finish_delay=1.0)  # a slow sink: s1 is done at 2.8
    async with trio.open_nursery() as nursery:
        host.play("s1")
        driver = await start(nursery, host, vad=FakeVAD([(1.0, 2.0)]),
                             stt=FakeSTT([(1.4, "stop", False), (1.8, "stop please", True)]))
        await trio.sleep(2.6)
        assert driver.agent_state == "thinking"
        assert "commit" not in host.names()
        await trio.sleep(0.3)
        host.speeches["reply1"].playing = True  # the reply's first frame
        host.changed("reply1")
        assert driver.agent_state == "speaking"
        nursery.cancel_scope.cancel()
    assert host.names() == ["pause", "interrupt", "release", "begin_turn", "commit"]
    assert host.at("pause") == [pytest.approx(1.5)]
    assert host.calls[1][1:] == ("interrupt", ("s1", "user_turn"))
    assert host.at("interrupt") == [pytest.approx(1.8)]
    assert host.at("begin_turn") == [pytest.approx(2.5)]  # end of speech + endpointing delay
    # #7108: the interrupted speech is done (1.8 + 1.0) before the user's message is written
    assert host.at("commit") == [pytest.approx(2.8)]
    assert host.calls[-1][2] == ("stop please", True)
    assert of(host.events, UserTurnCompleted) == [UserTurnCompleted("stop please")]
    assert of(host.events, UserInputTranscribed) == [UserInputTranscribed("stop", False),
                                                     UserInputTranscribed("stop please", True)]
    assert [e.new for e in of(host.events, AgentStateChanged)] == [  # type: ignore[attr-defined]
        "speaking", "listening", "thinking", "speaking"]


async def test_turn_waits_for_a_protected_speech(autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1", interruptible=False)
        await start(nursery, host, vad=FakeVAD([(1.0, 2.0)]), stt=FakeSTT([(1.9, "please stop", True)]))
        await trio.sleep(4.0)
        assert host.names() == ["begin_turn"]  # never paused, never interrupted, still waiting
        host.finish("s1")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert host.names() == ["begin_turn", "commit"]
    assert host.at("commit") == [pytest.approx(4.0)]


async def test_back_to_back_turns_get_one_reply_after_the_last(autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1", interruptible=False)
        await start(nursery, host, vad=FakeVAD([(1.0, 1.5), (3.0, 3.5)]),
                     stt=FakeSTT([(1.5, "first", True), (3.5, "second", True)]))
        await trio.sleep(5.0)
        host.finish("s1")
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    commits = [arg for _, what, arg in host.calls if what == "commit"]
    assert commits == [("first", False), ("second", True)]


async def test_a_new_turn_cancels_a_reply_that_has_not_played(autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        driver = await start(nursery, host, vad=FakeVAD([(1.0, 1.5), (2.5, 3.0)]),
                             stt=FakeSTT([(1.5, "first", True), (3.0, "second", True)]))
        await trio.sleep(2.2)
        assert driver.agent_state == "thinking"  # reply1 is generating, no audio yet
        await trio.sleep(2.0)
        assert driver.agent_state == "thinking"  # now for reply2
        nursery.cancel_scope.cancel()
    assert [(w, a) for _, w, a in host.calls if w in ("commit", "interrupt")] == [
        ("commit", ("first", True)), ("interrupt", ("reply1", "user_turn")), ("commit", ("second", True))]
    assert host.at("commit") == [pytest.approx(2.0), pytest.approx(3.6)]  # after reply1 is done
    assert host.speeches["reply1"].interrupted and not host.speeches["reply1"].playing


async def test_first_frame_while_the_user_talks_is_paused_at_once(autojump_clock: trio.abc.Clock) -> None:
    # livekit #5038: the reply is never paused before its first frame, and never dropped.
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        await start(nursery, host, vad=FakeVAD([(1.0, 3.0)]), stt=FakeSTT())
        host.speeches["s1"] = FakeSpeech("s1")
        host.current = "s1"
        host.changed("s1")  # authorized, no audio yet
        await trio.sleep(2.0)
        assert host.names() == []
        host.speeches["s1"].playing = True
        host.changed("s1")
        assert host.names() == ["pause"]
        assert host.at("pause") == [pytest.approx(2.0)]
        nursery.cancel_scope.cancel()


async def test_a_refused_interrupt_leaves_the_speech_speaking(autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1", pausable=False, refuse=True)
        driver = await start(nursery, host, vad=FakeVAD([(1.0, 2.0)]), stt=FakeSTT())
        await trio.sleep(1.6)
        assert host.names() == ["interrupt"]
        assert driver.agent_state == "speaking"  # the rules were told it still plays
        nursery.cancel_scope.cancel()


# -- isolation: fan-out, slow STT, failures -------------------------------------------------------
async def test_fan_out_gives_every_frame_to_both(autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    vad, stt = FakeVAD([]), FakeSTT()
    async with trio.open_nursery() as nursery:
        driver = await start(nursery, host, seconds=1.0, vad=vad, stt=stt)
        await trio.sleep(2.0)
        nursery.cancel_scope.cancel()
    assert vad.frames == stt.frames == 50
    assert driver.dropped_audio == {"VAD": 0.0, "STT": 0.0}


async def test_a_slow_stt_never_delays_the_vad_and_its_drops_are_logged(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost()
    vad, stt = FakeVAD([(1.0, 3.0)]), FakeSTT(per_frame=0.1)  # five times slower than real time
    async with trio.open_nursery() as nursery:
        host.play("s1")
        driver = await start(nursery, host, seconds=8.0, vad=vad, stt=stt, stt_buffer=1.0)
        await trio.sleep(20.0)
        nursery.cancel_scope.cancel()
    assert host.at("pause") == [pytest.approx(1.5)]  # as with a fast STT
    assert vad.frames == 400
    assert driver.dropped_audio["VAD"] == 0.0
    # it kept up with 1/5 of the audio; the rest was dropped, oldest first, and said so
    assert driver.dropped_audio["STT"] == pytest.approx(8.0 - stt.frames * FRAME)
    assert stt.frames < 150
    assert caplog.text.count("the STT fell 1 s behind the audio input; dropping its oldest audio") == 1
    assert caplog.text.count("the STT is still behind") == 1  # every 5 s of dropped audio
    assert "the STT caught up after" in caplog.text


@pytest.mark.parametrize("vad", [FakeVAD([(1.0, 5.0)], fail_at=1.8), FakeVAD([(1.0, 5.0)], stop_at=1.8)],
                         ids=["raises", "ends"])
async def test_a_vad_that_fails_or_ends_is_logged_and_the_agent_keeps_speaking(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture, vad: FakeVAD) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        driver = await start(nursery, host, vad=vad, stt=FakeSTT([(6.0, "hello there", True)]))
        await trio.sleep(1.9)
        assert driver.user_state == "listening"  # the user's speech was ended when the VAD stopped
        await trio.sleep(4.5)
        nursery.cancel_scope.cancel()
    assert "the user's voice no longer barges in" in caplog.text
    assert "while the user was speaking: ending the user's speech now" in caplog.text
    # paused at 1.5, resumed 2 s after the VAD stopped; the STT still makes a turn
    assert host.at("pause") == [pytest.approx(1.5)]
    assert host.at("resume") == [pytest.approx(1.8 + 2.0)]
    assert [arg for _, w, arg in host.calls if w == "commit"] == [("hello there", True)]
    # only by the user's turn: the final is late (no VAD to end a speech for it), so the
    # turn completes late_final_delay (0.2) after it
    assert host.at("interrupt") == [pytest.approx(6.2)]


async def test_a_hanging_vad_is_logged_and_the_users_speech_ended(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        driver = await start(nursery, host, vad=FakeVAD([(1.0, 9.0)], hang_at=1.6), stt=FakeSTT(),
                             vad_buffer=0.5)
        await trio.sleep(1.7)
        assert driver.user_state == "speaking"
        await trio.sleep(1.0)
        assert driver.user_state == "listening"
        await trio.sleep(3.0)
        nursery.cancel_scope.cancel()
    assert "the VAD fell 0.5 s behind" in caplog.text
    assert "the VAD stopped reading audio while the user was speaking" in caplog.text
    assert host.names() == ["pause", "resume"]  # the pause still resolved
    assert not host.speeches["s1"].interrupted


async def test_an_stt_that_fails_is_logged_and_barge_in_goes_on(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        await start(nursery, host, vad=FakeVAD([(1.0, 2.0)]), stt=FakeSTT(fail_at=0.5))
        await trio.sleep(5.0)
        nursery.cancel_scope.cancel()
    assert "the STT failed; no more words or user turns" in caplog.text
    assert host.names() == ["pause", "resume"]


async def test_the_input_ending_is_not_an_error_and_timers_go_on(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="trio_playout.voice")
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        await start(nursery, host, seconds=2.0, vad=FakeVAD([(1.0, 1.9)]), stt=FakeSTT())
        await trio.sleep(5.0)
        nursery.cancel_scope.cancel()
    assert "the audio input ended" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert host.names() == ["pause", "resume"]
    assert host.at("resume") == [pytest.approx(3.9)]


async def test_an_input_that_raises_is_logged(autojump_clock: trio.abc.Clock,
                                              caplog: pytest.LogCaptureFixture) -> None:
    async def broken() -> AsyncIterator[tp.AudioFrame]:
        yield tp.AudioFrame.silence(FRAME)
        raise OSError("microphone unplugged")

    host = FakeHost()
    async with trio.open_nursery() as nursery:
        driver = VoiceDriver(host, vad=FakeVAD([]))
        await nursery.start(driver.run, broken())
        await trio.sleep(1.0)
        nursery.cancel_scope.cancel()
    assert "the audio input failed" in caplog.text and "microphone unplugged" in caplog.text


async def test_closing_is_bounded_even_if_a_stream_will_not_close(
        autojump_clock: trio.abc.Clock, caplog: pytest.LogCaptureFixture) -> None:
    class StubbornVAD:
        """A stream whose aclose() never returns by itself (a close handshake nobody answers)."""

        def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
            self.frames = frames
            return self  # type: ignore[return-value]

        def __aiter__(self) -> StubbornVAD:
            return self

        async def __anext__(self) -> tp.VADEvent:
            async for _ in self.frames:
                pass
            raise StopAsyncIteration

        async def aclose(self) -> None:
            await trio.sleep_forever()

    host = FakeHost()
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            driver = VoiceDriver(host, vad=StubbornVAD(), close_timeout=0.25)
            await nursery.start(driver.run, paced_input())
            await trio.sleep(1.0)
            t0 = trio.current_time()
            scope.cancel()
    assert trio.current_time() - t0 == pytest.approx(0.25)
    assert "closing the VAD stream took longer than 0.25 s" in caplog.text


def test_driver_arguments_are_checked() -> None:
    host = FakeHost()
    with pytest.raises(ValueError):
        VoiceDriver(host)
    with pytest.raises(TypeError):
        VoiceDriver(host, vad=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        VoiceDriver(host, stt=FakeSTT(), options={"min_endpointing_delay": 1})  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        VoiceDriver(host, vad=FakeVAD([]), vad_buffer=-1)


async def test_stt_only_session_barges_in_on_words(autojump_clock: trio.abc.Clock) -> None:
    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        await start(nursery, host, stt=FakeSTT([(1.0, "wait", False), (1.5, "wait a second", True)]),
                    options=TurnOptions(min_endpointing_delay=0.5))
        await trio.sleep(3.0)
        nursery.cancel_scope.cancel()
    assert host.names() == ["pause", "interrupt", "release", "begin_turn", "commit"]
    assert host.at("pause") == [pytest.approx(1.0)]
    assert host.at("commit") == [pytest.approx(2.0)]


async def test_with_the_public_test_fakes(autojump_clock: trio.abc.Clock) -> None:
    """trio_playout.testing's ScriptedVAD/ScriptedSTT/SilentInput drive it the same way."""
    from trio_playout.testing import ScriptedSTT, ScriptedVAD, SilentInput

    host = FakeHost()
    async with trio.open_nursery() as nursery:
        host.play("s1")
        driver = VoiceDriver(host, vad=ScriptedVAD(speech=[(1.0, 2.0)]),
                             stt=ScriptedSTT([(1.9, "stop", False), (2.2, "stop now", True)]))
        host.driver, host.nursery = driver, nursery
        await nursery.start(driver.run, SilentInput())
        await trio.sleep(3.0)
        nursery.cancel_scope.cancel()
    assert host.names() == ["pause", "interrupt", "release", "begin_turn", "commit"]
    # the first 32 ms window at or after 0.5 s of speech ends at 1.504; it arrives with the 1.52 frame
    assert 1.5 <= host.at("pause")[0] <= 1.5 + 0.032 + FRAME
    assert host.at("interrupt") == [pytest.approx(2.2)]
    assert host.at("commit") == [pytest.approx(2.5)]
