"""The audio-sink contract (DESIGN 3.4): frames, segments as objects, RealtimeAudioSink.

Everything timed runs on ``autojump_clock`` (MockClock, autojump_threshold=0), so a
1-second segment plays in microseconds and the times asserted are virtual, exact
up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest
import trio
import trio.testing
from trio.testing import wait_all_tasks_blocked

from trio_playout import (
    AudioFrame,
    AudioOutput,
    PlaybackResult,
    PlaybackSegment,
    PlayoutRecord,
    RealtimeAudioSink,
)

FRAME = 0.1  # seconds per frame in these tests


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-6)


async def capture(sink: AudioOutput, seconds: float, *, frame: float = FRAME) -> PlaybackSegment:
    """Capture ``seconds`` of audio in ``frame``-long frames; return the segment."""
    seg = None
    for _ in range(round(seconds / frame)):
        seg = await sink.capture_frame(AudioFrame.silence(frame))
    assert seg is not None
    return seg


async def play(sink: AudioOutput, seconds: float) -> PlaybackSegment:
    seg = await capture(sink, seconds)
    assert sink.flush() is seg
    return seg


# =========================================================================== AudioFrame

def test_frame_duration_and_samples() -> None:
    f = AudioFrame(bytes(3200), 16000)
    assert f.samples_per_channel == 1600
    assert f.duration == approx(0.1)
    stereo = AudioFrame(bytes(3200), 16000, num_channels=2)
    assert stereo.samples_per_channel == 800
    assert stereo.duration == approx(0.05)
    assert AudioFrame(b"", 8000).duration == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"data": b"\0\0", "sample_rate": 0}, "sample_rate"),
        ({"data": b"\0\0", "sample_rate": -1}, "sample_rate"),
        ({"data": b"\0\0", "sample_rate": 16000, "num_channels": 0}, "num_channels"),
        ({"data": b"\0", "sample_rate": 16000}, "whole 16-bit samples"),
        ({"data": b"\0\0", "sample_rate": 16000, "num_channels": 2}, "whole 16-bit samples"),
    ],
)
def test_frame_validation(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AudioFrame(**kwargs)


def test_frame_is_frozen() -> None:
    f = AudioFrame(b"\0\0", 16000)
    with pytest.raises(AttributeError):
        f.sample_rate = 8000  # type: ignore[misc]


def test_silence() -> None:
    f = AudioFrame.silence(0.25)
    assert f.sample_rate == 16000
    assert f.samples_per_channel == 4000
    assert f.duration == approx(0.25)
    assert set(f.data) == {0}
    s = AudioFrame.silence(0.01, sample_rate=48000, num_channels=2)
    assert len(s.data) == 480 * 2 * 2
    assert s.duration == approx(0.01)
    assert AudioFrame.silence(0).duration == 0
    # rounded to whole samples
    assert AudioFrame.silence(1.5 / 16000).samples_per_channel == 2
    with pytest.raises(ValueError, match="negative"):
        AudioFrame.silence(-0.1)


# =========================================================================== PlaybackSegment

def segment(captured: float = 1.0) -> PlaybackSegment:
    seg = PlaybackSegment(7)
    seg.captured = captured
    return seg


async def test_segment_finishes_exactly_once() -> None:
    seg = segment()
    assert not seg.done()
    assert seg.result is None
    assert seg.finish(0.4, interrupted=True) is True
    assert seg.done()
    assert seg.result == PlaybackResult(0.4, True, True)
    # a duplicated or late report is ignored and changes nothing
    assert seg.finish(1.0, interrupted=False) is False
    assert seg.abandon(0.9) is False
    assert seg.result == PlaybackResult(0.4, True, True)
    assert await seg.wait() == PlaybackResult(0.4, True, True)


async def test_segment_position_is_clamped_to_what_was_captured() -> None:
    a, b = segment(0.5), segment(0.5)
    a.finish(3.0, interrupted=False)
    b.finish(-1.0, interrupted=True)
    assert a.result is not None and a.result.position == 0.5
    assert b.result is not None and b.result.position == 0.0


async def test_abandon_is_unconfirmed_and_interrupted() -> None:
    seg = segment()
    assert seg.abandon(0.3) is True
    assert seg.result == PlaybackResult(0.3, interrupted=True, confirmed=False)
    # the sink confirming late is ignored
    assert seg.finish(0.5, interrupted=True) is False
    assert seg.result.confirmed is False


async def test_abandon_after_finish_is_ignored() -> None:
    seg = segment()
    seg.finish(1.0, interrupted=False)
    assert seg.abandon(0.2) is False
    assert seg.result == PlaybackResult(1.0, False, True)


async def test_report_position_is_monotonic_and_clamped() -> None:
    seg = segment(0.5)
    assert seg.reported_position == 0.0
    seg.report_position(0.2)
    assert seg.reported_position == approx(0.2)
    seg.report_position(0.1)  # never goes back
    assert seg.reported_position == approx(0.2)
    seg.report_position(9.0)
    assert seg.reported_position == approx(0.5)
    seg.finish(0.3, interrupted=True)
    # once finished, the result is the truth
    assert seg.reported_position == approx(0.3)


async def test_finished_at_position_zero_reports_zero() -> None:
    seg = segment()
    seg.report_position(0.6)
    seg.finish(0.0, interrupted=True)
    assert seg.reported_position == 0.0


async def test_all_waiters_wake_once_finished() -> None:
    seg = segment()
    got: list[tuple[str, PlaybackResult]] = []

    async def waiter(name: str) -> None:
        got.append((name, await seg.wait()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter, "a")
        nursery.start_soon(waiter, "b")
        await wait_all_tasks_blocked()
        assert got == []
        seg.finish(0.5, interrupted=False)
    assert sorted(got) == [("a", PlaybackResult(0.5, False)), ("b", PlaybackResult(0.5, False))]


async def test_cancelling_a_waiter_changes_nothing(autojump_clock: trio.testing.MockClock) -> None:
    seg = segment()
    with trio.move_on_after(1) as scope:
        await seg.wait()
    assert scope.cancelled_caught
    assert not seg.done()
    assert seg.finish(0.2, interrupted=True) is True
    assert (await seg.wait()).position == approx(0.2)


def test_segment_repr() -> None:
    assert "PlaybackSegment 7" in repr(segment())


# =========================================================================== AudioOutput base

class ManualSink(AudioOutput):
    """A sink the test drives by hand: it finishes segments only when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[tuple[int, float]] = []
        self.cleared: list[list[int]] = []
        self.opened: list[int] = []
        self.flushed: list[int] = []

    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        self.written.append((segment.id, frame.duration))
        await trio.lowlevel.checkpoint()

    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        self.opened.append(segment.id)

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        self.flushed.append(segment.id)

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        self.cleared.append([s.id for s in segments])


class DoubleFinishSink(ManualSink):
    """Finishes every flushed segment twice (a buggy sink)."""

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        super().on_segment_flushed(segment)
        self.first = segment.finish(segment.captured, interrupted=False)
        self.second = segment.finish(0.0, interrupted=True)

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        super().on_clear(segments)
        for s in segments:
            s.finish(0.0, interrupted=True)
            s.finish(0.0, interrupted=True)


async def test_capture_opens_one_segment_until_flush() -> None:
    sink = ManualSink()
    assert sink.current_segment is None
    assert sink.flush() is None  # nothing captured
    assert sink.flushed == []
    a = await sink.capture_frame(AudioFrame.silence(0.1))
    b = await sink.capture_frame(AudioFrame.silence(0.2))
    assert a is b
    assert sink.current_segment is a
    assert a.captured == approx(0.3)
    assert not a.flushed
    assert sink.opened == [a.id]
    assert sink.written == [(a.id, approx(0.1)), (a.id, approx(0.2))]
    assert sink.flush() is a
    assert a.flushed
    assert sink.flushed == [a.id]
    assert sink.current_segment is None
    c = await sink.capture_frame(AudioFrame.silence(0.1))
    assert c is not a
    assert c.id != a.id
    assert sink.opened == [a.id, c.id]


async def test_pending_segments_oldest_first_until_finished() -> None:
    sink = ManualSink()
    a = await play(sink, 0.2)
    b = await play(sink, 0.2)
    c = await capture(sink, 0.1)  # still open
    assert sink.pending_segments == (a, b, c)
    b.finish(0.2, interrupted=False)
    assert sink.pending_segments == (a, c)
    a.abandon(0.0)
    c.finish(0.1, interrupted=False)
    assert sink.pending_segments == ()


async def test_clear_buffer_closes_the_open_segment_and_clears_pending() -> None:
    sink = ManualSink()
    a = await play(sink, 0.2)
    b = await capture(sink, 0.1)
    sink.clear_buffer()
    assert sink.cleared == [[a.id, b.id]]
    assert sink.current_segment is None
    assert b.flushed
    assert sink.flushed == [a.id]  # clear is not a flush: the hook is not called
    # the next frame opens a fresh segment
    c = await sink.capture_frame(AudioFrame.silence(0.1))
    assert c is not b


async def test_clear_buffer_with_nothing_pending_is_a_noop() -> None:
    sink = ManualSink()
    sink.clear_buffer()
    sink.clear_buffer()
    assert sink.cleared == []
    a = await play(sink, 0.1)
    a.finish(0.1, interrupted=False)
    sink.clear_buffer()
    assert sink.cleared == []


async def test_clear_buffer_twice_offers_unfinished_segments_again() -> None:
    sink = ManualSink()
    a = await play(sink, 0.2)
    sink.clear_buffer()
    sink.clear_buffer()  # safe: the sink sees the same segment, and finishing it twice is ignored
    assert sink.cleared == [[a.id], [a.id]]
    assert a.finish(0.1, interrupted=True) is True
    assert a.finish(0.1, interrupted=True) is False
    sink.clear_buffer()
    assert sink.cleared == [[a.id], [a.id]]


async def test_base_playback_position_is_the_reported_one() -> None:
    sink = ManualSink()
    a = await play(sink, 0.5)
    assert sink.playback_position(a) == 0.0
    a.report_position(0.25)
    assert sink.playback_position(a) == approx(0.25)


async def test_base_class_hooks() -> None:
    base = AudioOutput()
    with pytest.raises(NotImplementedError):
        await base.capture_frame(AudioFrame.silence(0.1))
    with pytest.raises(NotImplementedError):
        base.clear_buffer()  # there is an open segment now
    async with trio.open_nursery() as nursery:
        await nursery.start(base.serve)
        await wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert nursery.cancel_scope.cancelled_caught


async def test_sink_finishing_twice_cannot_confuse_later_segments() -> None:
    sink = DoubleFinishSink()
    a = await play(sink, 0.3)
    assert (sink.first, sink.second) == (True, False)
    assert a.result == PlaybackResult(approx(0.3), False, True)
    b = await capture(sink, 0.2)
    assert not b.done()  # a's duplicate finish did not land on b
    sink.clear_buffer()
    assert b.result == PlaybackResult(0.0, True, True)
    assert a.result == PlaybackResult(approx(0.3), False, True)
    c = await play(sink, 0.1)
    assert c.result == PlaybackResult(approx(0.1), False, True)


async def test_sink_that_never_finishes_cannot_wedge_later_segments() -> None:
    sink = ManualSink()  # never finishes anything by itself
    a = await play(sink, 0.3)
    b = await play(sink, 0.2)
    assert not a.done() and not b.done()
    # a late finish of b is recorded on b only
    b.finish(0.2, interrupted=False)
    assert not a.done()
    assert sink.pending_segments == (a,)
    # the session gives up on a after its grace; a later confirmation is ignored
    assert a.abandon(0.1)
    assert not a.finish(0.3, interrupted=False)
    assert a.result == PlaybackResult(approx(0.1), True, False)
    assert b.result == PlaybackResult(approx(0.2), False, True)
    assert sink.pending_segments == ()


# =========================================================================== RealtimeAudioSink

@pytest.mark.parametrize(("clear_delay", "buffer"), [(-0.1, 0.2), (math.nan, 0.2), (0.0, 0.0), (0.0, -1.0)])
def test_realtime_sink_validation(clear_delay: float, buffer: float) -> None:
    with pytest.raises(ValueError):
        RealtimeAudioSink(clear_delay, buffer=buffer)


def test_realtime_sink_defaults() -> None:
    sink = RealtimeAudioSink()
    assert sink.clear_delay == 0.0
    assert sink.buffer == 0.2
    assert sink.records == []
    assert sink.clear_calls == 0
    assert RealtimeAudioSink(math.inf).clear_delay == math.inf


async def test_natural_finish_at_the_end_of_audio(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink()
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        assert not sink.is_playing()
        seg = await play(sink, 0.5)
        assert sink.is_playing()
        result = await seg.wait()
        assert trio.current_time() - t0 == approx(0.5)
        assert result == PlaybackResult(approx(0.5), interrupted=False, confirmed=True)
        assert not sink.is_playing()
        assert sink.playback_position(seg) == approx(0.5)
        assert sink.records == [PlayoutRecord(seg.id, started_at=approx(t0), stopped_at=approx(t0 + 0.5),
                                              position=approx(0.5), interrupted=False, confirmed=True)]
        assert sink.pending_segments == ()
        nursery.cancel_scope.cancel()


async def test_unflushed_segment_plays_but_does_not_finish(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink()
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await capture(sink, 0.3)
        await trio.sleep(1.0)
        assert not sink.is_playing()
        assert not seg.done()  # more audio may still come
        assert sink.playback_position(seg) == approx(0.3)
        sink.flush()  # flushed after its audio ended: finishes at once, at the real end
        await wait_all_tasks_blocked()
        assert seg.result == PlaybackResult(approx(0.3), False, True)
        assert sink.records[0].stopped_at == approx(t0 + 0.3)
        nursery.cancel_scope.cancel()


async def test_pacing_and_playback_position(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink()
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)
        # back-pressure: capture returned when only `buffer` (0.2 s) was left ahead
        assert trio.current_time() - t0 == approx(0.8)
        assert sink.playback_position(seg) == approx(0.8)
        assert sink.is_playing()
        await trio.sleep(0.1)
        assert sink.playback_position(seg) == approx(0.9)
        assert not seg.done()
        await seg.wait()
        assert trio.current_time() - t0 == approx(1.0)
        nursery.cancel_scope.cancel()


async def test_capture_blocks_only_beyond_the_buffer(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(buffer=1.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await capture(sink, 1.0)
        assert trio.current_time() == t0  # everything fit in the buffer
        await sink.capture_frame(AudioFrame.silence(0.5))
        assert trio.current_time() - t0 == approx(0.5)
        sink.flush()
        assert (await seg.wait()).position == approx(1.5)
        assert trio.current_time() - t0 == approx(1.5)
        nursery.cancel_scope.cancel()


async def test_segments_play_back_to_back(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        a = await play(sink, 0.3)
        b = await play(sink, 0.2)
        assert a.id != b.id
        assert [r.started_at for r in sink.records] == [approx(t0), approx(t0 + 0.3)]
        assert sink.playback_position(b) == 0.0
        await a.wait()
        assert trio.current_time() - t0 == approx(0.3)
        assert not b.done()
        await b.wait()
        assert trio.current_time() - t0 == approx(0.5)
        assert [r.position for r in sink.records] == [approx(0.3), approx(0.2)]
        nursery.cancel_scope.cancel()


async def test_clear_delay_zero_stops_and_confirms_at_once(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)
        await trio.sleep_until(t0 + 0.85)
        sink.clear_buffer()
        # confirmed inside clear_buffer(), no await needed
        assert seg.result == PlaybackResult(approx(0.85), interrupted=True, confirmed=True)
        assert not sink.is_playing()
        assert sink.clear_calls == 1
        rec = sink.records[0]
        assert (rec.stopped_at, rec.position, rec.interrupted, rec.confirmed, rec.clear_requested_at) == (
            approx(t0 + 0.85), approx(0.85), True, True, approx(t0 + 0.85))
        assert sink.pending_segments == ()
        assert sink.playback_position(seg) == approx(0.85)
        nursery.cancel_scope.cancel()


async def test_clear_delay_models_a_slow_confirmation(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.15)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)  # returns at t0 + 0.8
        clear_at = trio.current_time()
        assert clear_at - t0 == approx(0.8)
        sink.clear_buffer()
        assert not seg.done()
        await wait_all_tasks_blocked()
        assert not seg.done()
        assert sink.is_playing()  # an avatar keeps talking until it confirms
        assert sink.pending_segments == (seg,)
        result = await seg.wait()
        assert trio.current_time() == approx(clear_at + 0.15)
        assert result == PlaybackResult(approx(clear_at - t0 + 0.15), interrupted=True, confirmed=True)
        assert not sink.is_playing()
        rec = sink.records[0]
        assert rec.clear_requested_at == approx(clear_at)
        assert rec.stopped_at == approx(clear_at + 0.15)
        assert rec.interrupted and rec.confirmed
        nursery.cancel_scope.cancel()


async def test_slow_clear_mid_segment(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)
        await trio.sleep(0.3)
        sink.clear_buffer()
        assert sink.playback_position(seg) == approx(0.3)
        await trio.sleep(0.1)
        assert sink.playback_position(seg) == approx(0.4)
        result = await seg.wait()
        assert trio.current_time() - t0 == approx(0.45)
        assert result == PlaybackResult(approx(0.45), True, True)
        nursery.cancel_scope.cancel()


async def test_slow_clear_after_the_natural_end_finishes_uninterrupted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 0.5)
        await trio.sleep(0.4)
        sink.clear_buffer()  # the clear would take effect at 0.55, after the end at 0.5
        result = await seg.wait()
        assert trio.current_time() - t0 == approx(0.5)
        assert result == PlaybackResult(approx(0.5), interrupted=False, confirmed=True)
        nursery.cancel_scope.cancel()


async def test_slow_clear_drops_queued_segments(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        a = await play(sink, 0.5)
        b = await play(sink, 0.5)
        await trio.sleep(0.1)
        sink.clear_buffer()
        ra, rb = await a.wait(), await b.wait()
        assert trio.current_time() - t0 == approx(0.25)
        assert ra == PlaybackResult(approx(0.25), True, True)
        assert rb == PlaybackResult(0.0, True, True)  # never heard
        # new audio starts once the cleared audio has stopped
        c = await play(sink, 0.1)
        assert sink.records[-1].started_at == approx(t0 + 0.25)
        await c.wait()
        assert c.result == PlaybackResult(approx(0.1), False, True)
        nursery.cancel_scope.cancel()


async def test_never_confirming_sink(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)
        await trio.sleep_until(t0 + 0.9)
        sink.clear_buffer()
        assert sink.is_playing()  # it ignores the clear
        with trio.move_on_after(5.0) as scope:
            await seg.wait()
        assert scope.cancelled_caught
        assert not seg.done()
        assert not sink.is_playing()
        # it played out; the position it reached is known for abandon()
        assert seg.reported_position == approx(1.0)
        assert sink.playback_position(seg) == approx(1.0)
        rec = sink.records[0]
        assert rec.confirmed is False
        assert rec.stopped_at == approx(t0 + 1.0)
        assert rec.clear_requested_at == approx(t0 + 0.9)
        assert sink.pending_segments == (seg,)
        assert seg.abandon(seg.reported_position)
        assert seg.result == PlaybackResult(approx(1.0), True, False)
        assert sink.pending_segments == ()
        nursery.cancel_scope.cancel()


async def test_lost_finish_does_not_wedge_the_next_segment(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        old = await play(sink, 0.5)
        sink.clear_buffer()  # never confirmed
        new = await play(sink, 0.3)
        result = await new.wait()
        assert result == PlaybackResult(approx(0.3), False, True)
        assert not old.done()
        # a late abandon of the old one leaves the new one alone
        old.abandon(0.5)
        assert new.result == result
        nursery.cancel_scope.cancel()


async def test_clear_twice(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)
        await trio.sleep_until(t0 + 0.85)
        sink.clear_buffer()
        first = seg.result
        await trio.sleep(0.05)
        sink.clear_buffer()
        assert seg.result == first
        assert sink.clear_calls == 1  # nothing was pending the second time
        assert len(sink.records) == 1
        nursery.cancel_scope.cancel()


async def test_slow_clear_twice_keeps_the_first_deadline(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await play(sink, 1.0)
        await trio.sleep(0.2)
        sink.clear_buffer()
        await trio.sleep(0.1)
        sink.clear_buffer()  # a clear already in flight: not restarted
        assert sink.clear_calls == 2
        result = await seg.wait()
        assert trio.current_time() - t0 == approx(0.35)
        assert result == PlaybackResult(approx(0.35), True, True)
        assert sink.records[0].clear_requested_at == approx(t0 + 0.2)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("clear_delay", [0.0, 0.15, math.inf])
async def test_clear_with_nothing_pending(autojump_clock: trio.testing.MockClock, clear_delay: float) -> None:
    sink = RealtimeAudioSink(clear_delay)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        sink.clear_buffer()
        assert sink.clear_calls == 0
        assert sink.records == []
        seg = await play(sink, 0.2)
        await seg.wait()
        sink.clear_buffer()  # after the natural end
        assert sink.clear_calls == 0
        assert seg.result == PlaybackResult(approx(0.2), False, True)
        nursery.cancel_scope.cancel()


async def test_clear_of_an_open_segment(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        t0 = trio.current_time()
        seg = await capture(sink, 0.5)  # returns at t0 + 0.3, never flushed
        sink.clear_buffer()
        assert sink.current_segment is None
        assert seg.result == PlaybackResult(approx(0.3), True, True)
        nxt = await play(sink, 0.2)
        assert nxt is not seg
        assert sink.records[-1].started_at == approx(t0 + 0.3)
        assert (await nxt.wait()).position == approx(0.2)
        nursery.cancel_scope.cancel()


async def test_clear_before_any_audio_was_heard(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(0.0, buffer=10.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 0.5)
        sink.clear_buffer()  # same instant: nothing heard
        assert seg.result == PlaybackResult(0.0, True, True)
        nursery.cancel_scope.cancel()


async def test_serve_twice_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink()
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        with pytest.raises(RuntimeError, match="already being served"):
            await nursery.start(sink.serve)
        nursery.cancel_scope.cancel()
    # once the first serve ended, the sink can be served again
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        seg = await play(sink, 0.1)
        assert (await seg.wait()).position == approx(0.1)
        nursery.cancel_scope.cancel()


async def test_slow_clear_needs_serve_to_confirm(autojump_clock: trio.testing.MockClock) -> None:
    """Confirmation after a delay is the serve task's work: without it nothing finishes."""
    sink = RealtimeAudioSink(0.15, buffer=10.0)
    seg = await play(sink, 0.5)
    sink.clear_buffer()
    await trio.sleep(1.0)
    assert not seg.done()
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        await wait_all_tasks_blocked()
        assert seg.result == PlaybackResult(approx(0.15), True, True)
        nursery.cancel_scope.cancel()


async def test_clear_releases_blocked_writer(autojump_clock: trio.testing.MockClock) -> None:
    sink = RealtimeAudioSink(buffer=0.2)
    async with trio.open_nursery() as nursery:
        await nursery.start(sink.serve)
        returned: list[float] = []

        async def writer() -> None:
            await sink.capture_frame(AudioFrame.silence(3.0))
            returned.append(trio.current_time())

        nursery.start_soon(writer)
        await trio.sleep(0.5)
        assert returned == []  # blocked: 2.8 s ahead of playback
        sink.clear_buffer()
        await trio.testing.wait_all_tasks_blocked()
        assert returned == [pytest.approx(0.5)]
        assert sink.records[0].started_at <= sink.records[0].stopped_at  # type: ignore[operator]
        nursery.cancel_scope.cancel()
