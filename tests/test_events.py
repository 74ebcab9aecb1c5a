"""Session events and their broadcaster (trio_playout._events)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trio_playout._events import (
    AgentStateChanged,
    EventBroadcaster,
    FalseInterruption,
    SpeechCreated,
    UserInputTranscribed,
    UserStateChanged,
    UserTurnCompleted,
)


def test_events_are_frozen_values() -> None:
    event = UserStateChanged("listening", "speaking")
    assert event == UserStateChanged("listening", "speaking")
    with pytest.raises(AttributeError):
        event.new = "listening"  # type: ignore[misc]
    assert AgentStateChanged("thinking", "speaking").new == "speaking"
    assert UserInputTranscribed("hi", final=False).final is False
    assert FalseInterruption("s", resumed=True).resumed  # type: ignore[arg-type]
    assert UserTurnCompleted("hi").text == "hi"
    assert SpeechCreated("s", "say").source == "say"  # type: ignore[arg-type]


def test_publishing_without_subscribers_does_nothing() -> None:
    events = EventBroadcaster()
    events.publish(UserTurnCompleted("nobody listens"))  # synchronous, outside any trio run
    assert events.dropped == 0 and events.subscribers == 0


async def test_each_subscriber_gets_every_event_in_order() -> None:
    events = EventBroadcaster()
    async with events.subscribe() as a, events.subscribe() as b:
        assert events.subscribers == 2
        for i in range(3):
            events.publish(UserTurnCompleted(str(i)))
        for channel in (a, b):
            received = [channel.receive_nowait() for _ in range(3)]
            assert received == [UserTurnCompleted(str(i)) for i in range(3)]
    assert events.subscribers == 0


async def test_a_slow_subscriber_loses_its_oldest_events_counted_and_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    events = EventBroadcaster(buffer=3)
    async with events.subscribe() as slow, events.subscribe(buffer=10) as fast:
        for i in range(5):
            events.publish(UserTurnCompleted(str(i)))  # never blocks
        assert [slow.receive_nowait().text for _ in range(3)] == ["2", "3", "4"]  # type: ignore[union-attr]
        assert [fast.receive_nowait().text for _ in range(5)] == ["0", "1", "2", "3", "4"]  # type: ignore[union-attr]
    assert events.dropped == 2
    assert caplog.text.count("fell behind: dropping its oldest events") == 1
    assert "dropped 2 event(s) in all" in caplog.text


async def test_a_waiting_subscriber_wakes_and_close_ends_the_channel(autojump_clock: trio.abc.Clock) -> None:
    events = EventBroadcaster()
    got: list[object] = []

    async def listen() -> None:
        async with events.subscribe() as channel:
            async for event in channel:
                got.append(event)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(listen)
        await trio.testing.wait_all_tasks_blocked()
        events.publish(UserTurnCompleted("a"))
        await trio.testing.wait_all_tasks_blocked()
        assert got == [UserTurnCompleted("a")]
        events.publish(UserTurnCompleted("b"))
        events.close()  # the listener ends after the buffered event
    assert got == [UserTurnCompleted("a"), UserTurnCompleted("b")]
    async with events.subscribe() as late:  # after close: ends at once
        assert [e async for e in late] == []


def test_buffer_is_checked() -> None:
    with pytest.raises(ValueError):
        EventBroadcaster(buffer=0)
    with pytest.raises(TypeError):
        EventBroadcaster(buffer=1.5)  # type: ignore[arg-type]
