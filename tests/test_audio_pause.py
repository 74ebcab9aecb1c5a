"""Pause and resume in the audio-sink contract (DESIGN 3.4), for false interruptions.

Everything timed runs on ``autojump_clock`` (MockClock, autojump_threshold=0) and
starts at trio time 0, so the times asserted are virtual and exact up to float
rounding. "Audible time" is computed from :class:`PlayoutRecord` as
``stopped_at - started_at - paused time``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from unittest.mock import patch

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio.testing import MockClock, wait_all_tasks_blocked

from tests.test_audio import ManualSink, approx, capture, play
from trio_playout import (
    AudioFrame,
    AudioOutput,
    PlaybackResult,
    PlaybackSegment,
    PlayoutError,
    PlayoutRecord,
    RealtimeAudioSink,
)
from trio_playout._audio import PauseNotSupported


def audible(rec: PlayoutRecord) -> float:
    """Seconds of this segment the listener heard, from its record alone."""
    assert rec.stopped_at is not None
    paused = sum((rec.stopped_at if back is None else back) - at for at, back in rec.pauses)
    return rec.stopped_at - rec.started_at - paused


class PausableManualSink(ManualSink):
    can_pause = True  # a class attribute overrides the base property

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, bool]] = []  # (hook, paused flag during the hook)

    def on_pause(self) -> None:
        self.calls.append(("pause", self.paused))

    def on_resume(self) -> None:
        self.calls.append(("resume", self.paused))

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        super().on_clear(segments)
        self.calls.append(("clear", self.paused))


class PropertySink(PausableManualSink):
    def __init__(self, can: bool) -> None:
        super().__init__()
        self.can = can

    @property
    def can_pause(self) -> bool:  # a property works as well
        return self.can


class FailingPauseSink(PausableManualSink):
    def on_pause(self) -> None:
        raise OSError("device gone")

    def on_resume(self) -> None:
        raise OSError("device gone")


# =========================================================================== the base contract

async def test_a_sink_that_cannot_pause_raises_a_typed_error_and_changes_nothing() -> None:
    assert AudioOutput().can_pause is False
    sink = ManualSink()
    seg = await capture(sink, 0.2)
    for s in (sink, RealtimeAudioSink(can_pause=False), PropertySink(False)):
        assert s.can_pause is False
        with pytest.raises(PauseNotSupported, match="cannot pause") as info:
            s.pause()
        assert isinstance(info.value, PlayoutError)
        assert isinstance(info.value, RuntimeError)  # NotImplementedError, as livekit code catches
        assert s.paused is False
        s.resume()  # never paused: nothing to do
        assert s.paused is False
    assert sink.current_segment is seg and not seg.done()


async def test_base_pause_and_resume_are_idempotent_and_call_each_hook_once() -> None:
    sink = PausableManualSink()
    assert sink.can_pause and not sink.paused
    sink.resume()
    assert sink.calls == []
    sink.pause()
    sink.pause()
    assert sink.paused
    assert sink.calls == [("pause", False)]  # the hook sees the old state
    sink.resume()
    sink.resume()
    assert not sink.paused
    assert sink.calls == [("pause", False), ("resume", True)]
    prop = PropertySink(True)
    prop.pause()
    assert prop.paused and prop.calls == [("pause", False)]


async def test_base_clear_while_paused_clears_then_ends_the_pause() -> None:
    sink = PausableManualSink()
    a = await play(sink, 0.2)
    sink.pause()
    sink.clear_buffer()
    assert sink.cleared == [[a.id]]
    assert sink.calls == [("pause", False), ("clear", True), ("resume", True)]
    assert not sink.paused  # the next speech does not start paused
    sink.clear_buffer()  # this sink never finishes a: offered again, no resume this time
    assert sink.calls == [("pause", False), ("clear", True), ("resume", True), ("clear", False)]


async def test_paused_time_counts_every_pause(autojump_clock: MockClock) -> None:
    """What a session needs to extend its bound on a natural end by the paused time."""
    sink = PausableManualSink()
    assert sink.paused_time == 0.0
    await trio.sleep(1.0)
    sink.pause()
    await trio.sleep(0.5)
    assert sink.paused_time == approx(0.5)  # the current pause counts
    sink.pause()  # idempotent: the pause does not restart
    await trio.sleep(0.25)
    sink.resume()
    await trio.sleep(1.0)
    assert sink.paused_time == approx(0.75)
    sink.pause()
    await trio.sleep(0.5)
    sink.clear_buffer()  # a clear ends the pause too
    await trio.sleep(1.0)
    assert sink.paused_time == approx(1.25)
    assert ManualSink().paused_time == 0.0


async def test_base_clear_with_nothing_pending_still_ends_the_pause() -> None:
    sink = PausableManualSink()
    sink.pause()
    sink.clear_buffer()
    assert sink.cleared == []
    assert sink.calls == [("pause", False), ("resume", True)]
    assert not sink.paused


async def test_a_failing_hook_leaves_the_flag_unchanged() -> None:
    sink = FailingPauseSink()
    with pytest.raises(OSError, match="device gone"):
        sink.pause()
    assert not sink.paused
    sink._paused = True  # as if it had paused
    with pytest.raises(OSError, match="device gone"):
        sink.resume()
    assert sink.paused


async def test_base_hooks_must_be_implemented_by_a_pausable_sink() -> None:
    class Incomplete(ManualSink):
        can_pause = True

    sink = Incomplete()
    with pytest.raises(NotImplementedError):
        sink.pause()
    assert not sink.paused


# =========================================================================== RealtimeAudioSink

def test_realtime_sink_can_pause_by_default() -> None:
    sink = RealtimeAudioSink()
    assert sink.can_pause is True
    assert sink.paused is False
    assert sink.pauses == []
    assert RealtimeAudioSink(math.inf).can_pause is True


async def test_pause_freezes_and_resume_continues_exactly(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 1.0)
        await trio.sleep(0.35)  # mid-frame: frames are 0.1 s
        sink.pause()
        assert sink.paused and not sink.is_playing()
        assert sink.playback_position(seg) == approx(0.35)
        await trio.sleep(2.0)
        assert sink.playback_position(seg) == approx(0.35)  # frozen
        assert not seg.done() and not sink.is_playing()
        sink.resume()
        assert not sink.paused and sink.is_playing()
        assert sink.playback_position(seg) == approx(0.35)  # nothing skipped
        await trio.sleep(0.25)
        assert sink.playback_position(seg) == approx(0.6)
        result = await seg.wait()
        assert trio.current_time() == approx(3.0)  # natural end pushed back by the 2 s pause
        assert result == PlaybackResult(approx(1.0), interrupted=False, confirmed=True)
        [rec] = sink.records
        assert rec == PlayoutRecord(seg.id, started_at=approx(0.0), stopped_at=approx(3.0),
                                    position=approx(1.0), interrupted=False, confirmed=True,
                                    pauses=[(approx(0.35), approx(2.35))])
        assert audible(rec) == approx(seg.captured)  # nothing skipped, nothing replayed
        assert sink.pauses == [(approx(0.35), approx(2.35))]
        nursery.cancel_scope.cancel()


async def test_pause_and_resume_are_idempotent(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 1.0)
        await trio.sleep(0.3)
        sink.pause()
        await trio.sleep(0.5)
        sink.pause()  # does not restart the pause
        assert sink.pauses == [(approx(0.3), None)]
        assert sink.playback_position(seg) == approx(0.3)
        await trio.sleep(0.2)
        sink.resume()
        await trio.sleep(0.2)
        sink.resume()  # does not shift the schedule again
        assert sink.pauses == [(approx(0.3), approx(1.0))]
        assert sink.playback_position(seg) == approx(0.5)
        await seg.wait()
        assert trio.current_time() == approx(1.7)
        assert sink.records[0].pauses == [(approx(0.3), approx(1.0))]
        nursery.cancel_scope.cancel()


async def test_several_pauses_in_one_segment(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 1.0)
        for at, length in [(0.2, 0.5), (1.0, 0.25), (1.5, 1.0)]:
            await trio.sleep_until(at)
            sink.pause()
            await trio.sleep(length)
            sink.resume()
        # heard 0.2 + 0.3 + 0.25 before the last pause
        assert sink.playback_position(seg) == approx(0.75)
        await seg.wait()
        assert trio.current_time() == approx(1.0 + 0.5 + 0.25 + 1.0)
        rec = sink.records[0]
        assert rec.pauses == [(approx(0.2), approx(0.7)), (approx(1.0), approx(1.25)),
                              (approx(1.5), approx(2.5))]
        assert audible(rec) == approx(1.0)
        nursery.cancel_scope.cancel()


async def test_a_queued_segment_starts_later_by_the_paused_time(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        a = await play(sink, 0.5)
        b = await play(sink, 0.5)
        assert [r.started_at for r in sink.records] == [approx(0.0), approx(0.5)]
        await trio.sleep(0.2)
        sink.pause()
        await trio.sleep(1.0)
        sink.resume()
        ra, rb = sink.records
        assert rb.started_at == approx(1.5)  # rescheduled at resume
        assert sink.playback_position(b) == 0.0
        await a.wait()
        assert trio.current_time() == approx(1.5)
        await b.wait()
        assert trio.current_time() == approx(2.0)
        assert ra.pauses == [(approx(0.2), approx(1.2))]
        assert rb.pauses == []  # the pause did not catch it mid-playout
        assert [audible(r) for r in (ra, rb)] == [approx(0.5), approx(0.5)]
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------- clear while paused

@pytest.mark.parametrize("clear_delay", [0.0, 0.15])
async def test_clear_while_paused_finishes_at_the_paused_position(
    autojump_clock: MockClock, clear_delay: float,
) -> None:
    sink = RealtimeAudioSink(clear_delay, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 1.0)
        await trio.sleep(0.4)
        sink.pause()
        await trio.sleep(0.5)
        sink.clear_buffer()
        assert not sink.paused  # a clear ends the pause
        assert sink.pauses == [(approx(0.4), approx(0.9))]
        assert not sink.is_playing()  # the cleared audio does not resume
        if clear_delay:
            assert not seg.done()  # the avatar confirms later
            await trio.sleep(0.1)
            assert sink.playback_position(seg) == approx(0.4)
            assert not sink.is_playing()
        result = await seg.wait()
        assert trio.current_time() == approx(0.9 + clear_delay)
        assert result == PlaybackResult(approx(0.4), interrupted=True, confirmed=True)
        rec = sink.records[0]
        assert (rec.stopped_at, rec.clear_requested_at, rec.position, rec.interrupted, rec.confirmed) == (
            approx(0.4), approx(0.9), approx(0.4), True, True)
        assert rec.pauses == [(approx(0.4), None)]  # it never resumed
        assert audible(rec) == approx(0.4)
        # the next speech does not start paused; it starts once the clear took effect
        nxt = await play(sink, 0.2)
        assert sink.records[-1].started_at == approx(0.9 + clear_delay)
        assert (await nxt.wait()).position == approx(0.2)
        assert trio.current_time() == approx(0.9 + clear_delay + 0.2)
        nursery.cancel_scope.cancel()


async def test_clear_while_paused_on_a_deaf_sink_plays_out(autojump_clock: MockClock) -> None:
    """A deaf sink ignores the clear; the pause ends anyway, so its audio plays out."""
    sink = RealtimeAudioSink(math.inf, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 1.0)
        await trio.sleep(0.4)
        sink.pause()
        assert not sink.is_playing()
        await trio.sleep(0.5)
        sink.clear_buffer()
        assert not sink.paused and sink.is_playing()
        assert sink.playback_position(seg) == approx(0.4)
        await trio.sleep(2.0)
        assert not seg.done()  # never confirmed
        assert seg.reported_position == approx(1.0)
        rec = sink.records[0]
        assert rec.stopped_at == approx(1.5) and rec.confirmed is False
        assert rec.pauses == [(approx(0.4), approx(0.9))]
        assert audible(rec) == approx(1.0)
        nursery.cancel_scope.cancel()


async def test_a_pause_silences_audio_whose_clear_is_in_flight(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 1.0)
        await trio.sleep(0.3)
        sink.clear_buffer()  # takes effect at 0.45
        await trio.sleep(0.05)
        sink.pause()
        assert sink.playback_position(seg) == approx(0.35)
        await trio.sleep(0.05)
        sink.resume()  # before the clear lands: the cleared audio stays silent
        assert not sink.is_playing()
        result = await seg.wait()
        assert trio.current_time() == approx(0.45)
        assert result == PlaybackResult(approx(0.35), interrupted=True, confirmed=True)
        rec = sink.records[0]
        assert rec.stopped_at == approx(0.35) and rec.pauses == [(approx(0.35), None)]
        nursery.cancel_scope.cancel()


async def test_a_pause_before_the_natural_end_turns_an_in_flight_clear_into_an_interrupt(
    autojump_clock: MockClock,
) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 0.5)
        await trio.sleep(0.4)
        sink.clear_buffer()  # would land at 0.55, after the natural end at 0.5 ...
        await trio.sleep(0.05)
        sink.pause()  # ... but the audio is paused at 0.45 and never reaches its end
        result = await seg.wait()
        assert trio.current_time() == approx(0.55)
        assert result == PlaybackResult(approx(0.45), interrupted=True, confirmed=True)
        assert sink.paused  # a pause is only ended by resume() or a clear
        sink.resume()
        nursery.cancel_scope.cancel()


async def test_clear_while_paused_without_serve_confirms_when_serve_runs(
    autojump_clock: MockClock,
) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    seg = await play(sink, 0.5)
    await trio.sleep(0.2)
    sink.pause()
    await trio.sleep(0.2)
    sink.clear_buffer()
    await trio.sleep(1.0)
    assert not seg.done()
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        await wait_all_tasks_blocked()
        assert seg.result == PlaybackResult(approx(0.2), True, True)
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------- pause with nothing playing

async def test_pause_before_the_first_frame_holds_the_reply_back(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=0.2)
    returned: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        sink.pause()  # the voice layer pauses before the reply's first frame

        async def reply() -> None:
            await capture(sink, 1.0)
            returned.append(trio.current_time())
            sink.flush()

        nursery.start_soon(reply)
        await trio.sleep(1.0)
        seg = sink.current_segment
        assert seg is not None
        assert seg.captured == approx(0.3)  # the buffer filled (0.2 s) and the writer blocks
        assert sink.playback_position(seg) == 0.0 and not sink.is_playing()
        assert returned == []
        sink.resume()
        assert sink.is_playing()
        assert sink.records[0].started_at == approx(1.0)
        result = await seg.wait()
        assert returned == [approx(1.8)]
        assert trio.current_time() == approx(2.0)
        assert result == PlaybackResult(approx(1.0), False, True)
        rec = sink.records[0]
        assert rec.pauses == [] and audible(rec) == approx(1.0)
        assert sink.pauses == [(approx(0.0), approx(1.0))]
        nursery.cancel_scope.cancel()


async def test_pause_between_segments(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        a = await play(sink, 0.3)
        await a.wait()
        sink.pause()
        b = await play(sink, 0.2)
        await trio.sleep(0.5)
        assert not b.done() and sink.playback_position(b) == 0.0 and not sink.is_playing()
        sink.resume()
        await b.wait()
        assert trio.current_time() == approx(1.0)
        ra, rb = sink.records
        assert ra.pauses == [] and rb.pauses == []
        assert (rb.started_at, rb.stopped_at) == (approx(0.8), approx(1.0))
        nursery.cancel_scope.cancel()


async def test_clear_before_the_first_frame_while_paused(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        sink.pause()
        seg = await play(sink, 0.5)
        await trio.sleep(0.3)
        sink.clear_buffer()
        assert seg.result == PlaybackResult(0.0, True, True)  # nothing was heard
        rec = sink.records[0]
        assert rec.started_at == rec.stopped_at == approx(0.3)
        assert not sink.paused
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------- back-pressure

async def test_back_pressure_holds_while_paused(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=0.2)
    returned: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)

        async def writer() -> None:
            await sink.capture_frame(AudioFrame.silence(1.0))  # returns at 0.8 without a pause
            returned.append(trio.current_time())

        nursery.start_soon(writer)
        await trio.sleep(0.5)
        sink.pause()
        await trio.sleep(1.0)
        assert returned == []  # still 0.5 s ahead of a playhead that does not move
        sink.resume()
        await wait_all_tasks_blocked()
        assert returned == []
        seg = sink.flush()
        assert seg is not None
        await seg.wait()
        assert returned == [approx(1.8)]
        assert trio.current_time() == approx(2.0)
        nursery.cancel_scope.cancel()


async def test_clear_while_paused_releases_a_blocked_writer(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=0.2)
    returned: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)

        async def writer() -> None:
            await sink.capture_frame(AudioFrame.silence(3.0))
            returned.append(trio.current_time())

        nursery.start_soon(writer)
        await trio.sleep(0.5)
        seg = sink.current_segment
        assert seg is not None
        sink.pause()
        await trio.sleep(0.5)
        sink.clear_buffer()
        await wait_all_tasks_blocked()
        assert returned == [approx(1.0)]
        assert seg.result == PlaybackResult(approx(0.5), True, True)
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------- gaps and flushes while paused

async def test_flush_while_paused_after_the_audio_ran_out(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await capture(sink, 0.3)
        await trio.sleep(0.5)  # its audio ended at 0.3; more could still come
        sink.pause()
        sink.flush()
        await wait_all_tasks_blocked()
        assert seg.result == PlaybackResult(approx(0.3), False, True)  # it ended before the pause
        rec = sink.records[0]
        assert rec.stopped_at == approx(0.3) and rec.pauses == []
        sink.resume()
        nursery.cancel_scope.cancel()


async def test_open_segment_paused_and_continued(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await capture(sink, 0.3)
        await trio.sleep(0.1)
        sink.pause()
        await trio.sleep(1.0)
        sink.resume()
        assert await capture(sink, 0.2) is seg
        sink.flush()
        await seg.wait()
        assert trio.current_time() == approx(1.5)
        assert seg.result == PlaybackResult(approx(0.5), False, True)
        assert audible(sink.records[0]) == approx(0.5)
        nursery.cancel_scope.cancel()


async def test_pause_when_a_segment_ends_exactly_then(autojump_clock: MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    seg = await play(sink, 0.5)  # no serve: only pause() can notice the end
    await trio.sleep(0.5)
    sink.pause()
    assert seg.result == PlaybackResult(approx(0.5), False, True)
    assert sink.records[0].pauses == [] and sink.records[0].stopped_at == approx(0.5)


# ----------------------------------------------------------------------- what the voice layer does

@pytest.mark.parametrize("clear_delay", [0.0, 0.15])
@pytest.mark.parametrize("real", [False, True])
async def test_barge_in_then_false_or_real_interruption(
    autojump_clock: MockClock, clear_delay: float, real: bool,
) -> None:
    """Pause on barge-in; read the paused position; resume (false) or clear (real)."""
    sink = RealtimeAudioSink(clear_delay, buffer=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)

        async def speak() -> None:
            await capture(sink, 2.0)
            sink.flush()

        seg = sink.open_segment()
        nursery.start_soon(speak)
        await trio.sleep(0.7)
        sink.pause()
        paused_position = sink.playback_position(seg)
        assert paused_position == approx(0.7)
        await trio.sleep(2.0)  # false_interruption_timeout
        if real:
            sink.clear_buffer()
        else:
            sink.resume()
        result = await seg.wait()
        if real:
            assert result == PlaybackResult(approx(paused_position), True, True)
            assert trio.current_time() == approx(2.7 + clear_delay)
        else:
            assert result == PlaybackResult(approx(2.0), False, True)
            assert trio.current_time() == approx(4.0)
        assert audible(sink.records[0]) == approx(result.position)
        nursery.cancel_scope.cancel()


# =========================================================================== random schedules

OPS = st.one_of(
    st.tuples(st.just("capture"), st.sampled_from([0.05, 0.1, 0.3])),
    st.tuples(st.sampled_from(["flush", "pause", "resume", "clear"]), st.just(0.0)),
    st.tuples(st.just("sleep"), st.sampled_from([0.0, 0.05, 0.1, 0.25, 0.7])),
)
EPS = 1e-6


def model_positions(log: list[tuple[str, float, object]]) -> tuple[dict[int, float], set[int]]:
    """What a listener hears, replayed from the log of writes, pauses, resumes and clears.

    An independent model of an immediate sink (``clear_delay=0``): one FIFO of audio,
    played at real speed while not paused; a clear drops it and ends the pause.
    Returns the heard seconds per segment and the segments a clear interrupted.
    """
    queue: list[list[float]] = []  # [segment id, seconds left]
    heard: dict[int, float] = {}
    flushed: set[int] = set()
    interrupted: set[int] = set()
    paused, now = False, 0.0
    for kind, t, arg in [*log, ("end", math.inf, None)]:
        left, now = (0.0 if paused else t - now), t
        while left > 0 and queue:
            seg_id, rem = int(queue[0][0]), queue[0][1]
            take = min(rem, left)
            heard[seg_id] = heard.get(seg_id, 0.0) + take
            left -= take
            if rem - take <= EPS:
                queue.pop(0)
            else:
                queue[0][1] = rem - take
        if kind == "write":
            seg_id, seconds = arg  # type: ignore[misc]
            heard.setdefault(seg_id, 0.0)
            queue.append([seg_id, seconds])
        elif kind == "flush":
            flushed.add(arg)  # type: ignore[arg-type]
        elif kind in ("pause", "resume"):
            paused = kind == "pause"
        elif kind == "clear":
            queued = {int(q[0]) for q in queue}
            for seg_id in arg:  # type: ignore[attr-defined]
                if seg_id in queued or seg_id not in flushed:
                    interrupted.add(seg_id)
            queue.clear()
            paused = False
    return heard, interrupted


async def run_schedule(ops: list[tuple[str, float]], clear_delay: float, buffer: float) -> None:
    sink = RealtimeAudioSink(clear_delay, buffer=buffer)
    log: list[tuple[str, float, object]] = []
    segments: dict[int, PlaybackSegment] = {}
    cleared: set[int] = set()  # pending at some clear
    flushed: set[int] = set()
    send, recv = trio.open_memory_channel[tuple[str, float]](math.inf)

    async def writer() -> None:
        async for kind, seconds in recv:
            if kind == "capture":
                seg = sink.open_segment()
                segments[seg.id] = seg
                log.append(("write", trio.current_time(), (seg.id, seconds)))
                await sink.capture_frame(AudioFrame.silence(seconds))  # may block on back-pressure
            else:
                closed = sink.flush()
                if closed is not None:
                    flushed.add(closed.id)
                    log.append(("flush", trio.current_time(), closed.id))

    def positions() -> dict[int, float]:
        return {i: s.result.position if s.result else sink.playback_position(s) for i, s in segments.items()}

    finish = PlaybackSegment.finish
    with patch.object(PlaybackSegment, "finish", autospec=True, side_effect=finish) as spy:
        async with trio.open_nursery() as nursery:
            await nursery.start(sink.serve)
            nursery.start_soon(writer)
            before, t_before = positions(), trio.current_time()
            for kind, arg in [*ops, ("resume", 0.0), ("flush", 0.0)]:
                was_paused = sink.paused
                if kind in ("capture", "flush"):
                    send.send_nowait((kind, arg))
                elif kind == "pause":
                    sink.pause()
                    log.append(("pause", trio.current_time(), None))
                elif kind == "resume":
                    sink.resume()
                    log.append(("resume", trio.current_time(), None))
                elif kind == "clear":
                    pending = [s.id for s in sink.pending_segments]
                    cleared.update(pending)
                    sink.clear_buffer()
                    log.append(("clear", trio.current_time(), pending))
                else:
                    await trio.sleep(arg)
                await wait_all_tasks_blocked()
                after, t_after = positions(), trio.current_time()
                assert sink.paused == (kind == "pause" or (was_paused and kind not in ("resume", "clear")))
                if sink.paused:
                    assert not sink.is_playing()
                gained = 0.0
                for i, pos in after.items():
                    assert -EPS <= pos <= segments[i].captured + EPS
                    delta = pos - before.get(i, 0.0)
                    assert delta >= -EPS  # never goes back
                    if was_paused and kind == "sleep":
                        assert abs(delta) <= EPS  # frozen while paused
                    gained += delta
                assert gained <= (t_after - t_before) + EPS  # one stream, real speed: nothing played twice
                before, t_before = after, t_after
            send.close()
            await trio.sleep(sum(arg for kind, arg in ops if kind == "capture") + 1.0)  # everything ends
            nursery.cancel_scope.cancel()

    calls: dict[int, int] = {}
    for call in spy.call_args_list:
        calls[call.args[0].id] = calls.get(call.args[0].id, 0) + 1
    assert all(back is not None for _, back in sink.pauses)
    assert sink.paused_time == approx(sum(back - at for at, back in sink.pauses))  # type: ignore[operator]
    records = {r.segment_id: r for r in sink.records}
    assert sorted(records) == sorted(segments)
    for i, seg in segments.items():
        rec = records[i]
        assert rec.stopped_at is not None and rec.position is not None
        assert audible(rec) >= rec.position - EPS  # audio gaps count as audible time here
        if math.isinf(clear_delay) and i in cleared:
            assert calls.get(i, 0) == 0 and not seg.done()  # deaf: never confirmed ...
            assert seg.reported_position == approx(seg.captured)  # ... and it played out
            continue
        assert calls.get(i, 0) == 1, f"segment {i} finished {calls.get(i, 0)} times"
        assert seg.result is not None and seg.result.confirmed
        assert rec.position == approx(seg.result.position)
        if i not in cleared:
            assert i in flushed
            assert seg.result == PlaybackResult(approx(seg.captured), False, True)
    if clear_delay == 0:
        heard, interrupted = model_positions(log)
        assert set(heard) == set(segments)
        for i, seg in segments.items():
            assert seg.result is not None
            assert seg.result.position == approx(heard[i]), (i, log)
            assert seg.result.interrupted == (i in interrupted), (i, log)


@given(ops=st.lists(OPS, max_size=30), clear_delay=st.sampled_from([0.0, 0.15, math.inf]),
       buffer=st.sampled_from([0.1, 0.2, 10.0]))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_random_capture_flush_pause_resume_clear(ops: list[tuple[str, float]], clear_delay: float,
                                                  buffer: float) -> None:
    """Every segment finishes exactly once, a position never exceeds what was captured,
    never goes back and stands still while paused, the sink never plays faster than
    real time (nothing replayed), and, for an immediate sink, every position equals the
    audible time of an independent model of the schedule."""
    trio.run(run_schedule, ops, clear_delay, buffer, clock=MockClock(autojump_threshold=0))
