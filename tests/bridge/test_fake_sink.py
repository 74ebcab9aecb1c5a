"""FakeAudioSink keeps the SDK's segment contract (run on the bridge loop, virtual time)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
from livekit import rtc

import bridge
from bridge.testing import FakeAudioSink


def frame(seconds: float = 0.1, rate: int = 16000) -> rtc.AudioFrame:
    n = int(seconds * rate)
    return rtc.AudioFrame(data=b"\x00\x00" * n, sample_rate=rate, num_channels=1, samples_per_channel=n)


async def play(sink: FakeAudioSink, seconds: float) -> None:
    for _ in range(round(seconds / 0.1)):
        await sink.capture_frame(frame())
    sink.flush()


async def test_plays_out_in_loop_time(autojump_clock: trio.abc.Clock) -> None:
    async with bridge.open_loop():
        sink = FakeAudioSink()
        events: list[Any] = []
        sink.on("playback_finished", events.append)
        t0 = trio.current_time()
        await bridge.aio(play)(sink, 1.0)
        ev = await bridge.aio(sink.wait_for_playout)()
        assert trio.current_time() - t0 == pytest.approx(1.0)
        assert not ev.interrupted and ev.playback_position == pytest.approx(1.0)
        assert len(events) == 1 and not sink.playing


@pytest.mark.parametrize("delay", [0.0, 0.15])
async def test_clear_takes_effect_after_delay(autojump_clock: trio.abc.Clock, delay: float) -> None:
    """The audio plays on until the clear reaches the sink, then stops and is confirmed."""
    async with bridge.open_loop():
        sink = FakeAudioSink(clear_delay=delay)
        events: list[Any] = []
        sink.on("playback_finished", events.append)
        await bridge.aio(play)(sink, 2.0)
        await trio.sleep(0.5)
        t_clear = trio.current_time()
        sink.clear_buffer()
        sink.clear_buffer()  # twice is fine
        seg = sink.segments[0]
        assert seg.cleared_at == t_clear
        assert seg.playing is (delay > 0)
        await bridge.aio(sink.wait_for_playout)()
        assert trio.current_time() - t_clear == pytest.approx(delay)
        assert seg.stopped_at == pytest.approx(t_clear + delay)
        assert seg.confirmed_at == seg.stopped_at
        assert seg.position == pytest.approx(0.5 + delay)
        assert len(events) == 1 and events[0].interrupted
        await trio.sleep(5)
        assert len(events) == 1  # no second finish for the same segment


async def test_never_confirming_sink_plays_out_its_buffer(autojump_clock: trio.abc.Clock) -> None:
    """clear_delay=inf: the clear never arrives; the buffered audio plays to its end,
    that end is recorded, and on_playback_finished never comes for the segment."""
    async with bridge.open_loop():
        sink = FakeAudioSink(clear_delay=math.inf)
        events: list[Any] = []
        sink.on("playback_finished", events.append)
        await bridge.aio(play)(sink, 2.0)
        await trio.sleep(0.5)
        sink.clear_buffer()
        seg = sink.segments[0]
        assert seg.cleared_at == 0.5 and seg.clear_ignored and seg.playing
        await trio.sleep(1.0)
        assert sink.playing
        await trio.sleep(1.0)
        assert not sink.playing
        assert seg.stopped_at == pytest.approx(2.0) and seg.position == pytest.approx(2.0)
        assert not seg.interrupted and seg.confirmed_at is None
        await trio.sleep(10)
        assert events == [] and sink.unconfirmed == [seg]


async def test_never_confirming_sink_and_clear_while_capturing(
    autojump_clock: trio.abc.Clock,
) -> None:
    async with bridge.open_loop():
        sink = FakeAudioSink(clear_delay=math.inf)
        sink.clear_buffer()  # nothing pending: no-op

        async def capture_clear_flush() -> None:
            await sink.capture_frame(frame())
            sink.clear_buffer()
            await sink.capture_frame(frame())  # dropped: the segment was cleared
            sink.flush()

        await bridge.aio(capture_clear_flush)()
        seg = sink.segments[0]
        assert seg.frames == 1 and seg.dropped_frames == 1
        await trio.sleep(10)
        assert not seg.playing and seg.stopped_at == pytest.approx(seg.started_at + 0.1)
        assert sink.unconfirmed == [seg] and sink._pending_playback_count == 1


async def test_buffer_back_pressure_released_by_clear(autojump_clock: trio.abc.Clock) -> None:
    async with bridge.open_loop():
        sink = FakeAudioSink(buffer=0.2)
        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bridge.aio(play), sink, 2.0)
            await trio.sleep(0.5)
            assert 0.6 <= sink.segments[0].captured <= 0.8  # held ~0.2 s ahead of playback
            sink.clear_buffer()
        assert trio.current_time() - t0 == pytest.approx(0.5)  # the clear released it
        assert sink.segments[0].stopped_at == pytest.approx(0.5)


async def test_sink_that_stops_but_never_confirms(autojump_clock: trio.abc.Clock) -> None:
    """confirm_clear=False: the clear stops the audio; on_playback_finished never comes."""
    async with bridge.open_loop():
        sink = FakeAudioSink(confirm_clear=False)
        events: list[Any] = []
        sink.on("playback_finished", events.append)
        await bridge.aio(play)(sink, 2.0)
        await trio.sleep(0.5)
        sink.clear_buffer()
        seg = sink.segments[0]
        assert not seg.playing and seg.stopped_at == 0.5 and seg.position == pytest.approx(0.5)
        assert seg.interrupted and not seg.clear_ignored
        await trio.sleep(10)
        assert events == [] and sink.unconfirmed == [seg]
