"""Session events and the broadcaster behind ``Session.subscribe()``.

Events are frozen dataclasses (livekit's names without the ``Event`` suffix). The
session publishes them synchronously, from any task and without awaiting, so a
subscriber can never slow the session down: each subscriber has its own bounded
buffer, and when a subscriber falls behind the *oldest* events in its buffer are
dropped to make room. Drops are counted (:attr:`EventBroadcaster.dropped`, per
subscription on :class:`Subscription`) and logged, never silent. Use a larger
``buffer`` if you need every event of a burst.

Usage::

    async with session.subscribe() as events:
        async for event in events:
            if isinstance(event, tp.AgentStateChanged): ...
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import trio

from ._turn import AgentState, UserState

if TYPE_CHECKING:
    from ._speech import SpeechHandle

__all__ = [
    "AgentStateChanged",
    "EventBroadcaster",
    "FalseInterruption",
    "SessionEvent",
    "SpeechCreated",
    "Subscription",
    "UserInputTranscribed",
    "UserStateChanged",
    "UserTurnCompleted",
]

logger = logging.getLogger("trio_playout.events")


@dataclass(frozen=True)
class UserStateChanged:
    """The user started (``"speaking"``) or stopped (``"listening"``) speaking, by the VAD."""

    old: UserState
    new: UserState


@dataclass(frozen=True)
class AgentStateChanged:
    """``"speaking"`` while audio plays, ``"thinking"`` from the user's turn to the first
    frame of the reply, ``"listening"`` otherwise (also while paused by a barge-in),
    ``"idle"`` in a session without audio input."""

    old: AgentState
    new: AgentState


@dataclass(frozen=True)
class UserInputTranscribed:
    """Text from the STT; ``final=False`` is an interim guess it may still revise."""

    text: str
    final: bool


@dataclass(frozen=True)
class FalseInterruption:
    """A barge-in paused ``speech`` and no words followed. ``resumed``: its audio went
    on where it paused; False when the speech could no longer be resumed.
    ``provisional``: the pause was taken at the start of the user's speech
    (``TurnOptions.pause_on_speech_start``) and the sound ended before it counted as
    a barge-in (a cough, a click), so the audio resumed at once."""

    speech: SpeechHandle
    resumed: bool
    provisional: bool = False


@dataclass(frozen=True)
class UserTurnCompleted:
    """The user finished a turn; ``text`` is the whole turn, as written to history."""

    text: str


@dataclass(frozen=True)
class SpeechCreated:
    """A speech was scheduled; ``source`` says why (``"say"``, ``"generate_reply"``, ...)."""

    speech: SpeechHandle
    source: str


SessionEvent = (UserStateChanged | AgentStateChanged | UserInputTranscribed | FalseInterruption
                | UserTurnCompleted | SpeechCreated)


class Subscription:
    """One subscriber's buffer (what :meth:`EventBroadcaster.subscribe` registers)."""

    def __init__(self, number: int, buffer: int) -> None:
        self.number = number
        self.dropped = 0
        self._send, self.receive = trio.open_memory_channel[SessionEvent](buffer)
        # Our own handle on the buffer, to take the oldest event out when it is full.
        self._oldest = self.receive.clone()
        self._behind = False

    def offer(self, event: SessionEvent) -> int:
        """Queue ``event`` without waiting; returns how many old events were dropped."""
        dropped = 0
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:  # full (buffer >= 1), so the oldest is there to drop
            self._oldest.receive_nowait()
            dropped = 1
            self._send.send_nowait(event)
        if dropped:
            self.dropped += dropped
            if not self._behind:
                logger.warning("event subscriber %d fell behind: dropping its oldest events",
                               self.number)
            self._behind = True
        else:
            self._behind = False
        return dropped

    def close(self) -> None:
        self._send.close()
        self._oldest.close()


class EventBroadcaster:
    """Fan session events out to subscribers; publishing never blocks (see the module)."""

    def __init__(self, *, buffer: int = 256) -> None:
        _check_buffer(buffer)
        self.buffer = buffer
        self.dropped = 0
        self._subscriptions: dict[int, Subscription] = {}
        self._numbers = 0
        self._closed = False

    @property
    def subscribers(self) -> int:
        return len(self._subscriptions)

    def publish(self, event: SessionEvent) -> None:
        """Give ``event`` to every subscriber now. Synchronous: call it from anywhere.

        After :meth:`close` it does nothing: the subscriptions have ended, and a late
        publisher (a task finishing its last step as the session closes) must not fail.
        """
        if self._closed:
            logger.debug("event after the session closed, not delivered: %r", event)
            return
        for subscription in self._subscriptions.values():
            self.dropped += subscription.offer(event)

    def close(self) -> None:
        """End every subscription (their channels end after the buffered events)."""
        self._closed = True
        for subscription in self._subscriptions.values():
            subscription.close()

    @asynccontextmanager
    async def subscribe(self, *, buffer: int | None = None
                        ) -> AsyncIterator[trio.MemoryReceiveChannel[SessionEvent]]:
        """``async with`` a receive channel of the events published from now on.

        The channel ends when the broadcaster closes (the session closed). Leaving the
        block unsubscribes; events are never waited for on your behalf.
        """
        size = self.buffer if buffer is None else _check_buffer(buffer)
        self._numbers += 1
        subscription = Subscription(self._numbers, size)
        if self._closed:
            subscription.close()
        else:
            self._subscriptions[subscription.number] = subscription
        try:
            with subscription.receive:
                yield subscription.receive
        finally:
            self._subscriptions.pop(subscription.number, None)
            subscription.close()
            if subscription.dropped:
                logger.warning("event subscriber %d dropped %d event(s) in all",
                               subscription.number, subscription.dropped)


def _check_buffer(buffer: int) -> int:
    if not isinstance(buffer, int) or isinstance(buffer, bool):
        raise TypeError(f"buffer must be an int, got {type(buffer).__name__}")
    if not 1 <= buffer < math.inf:
        raise ValueError(f"buffer must be >= 1, got {buffer}")
    return buffer
