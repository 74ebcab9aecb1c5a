"""The speech queue and what :meth:`Session.interrupt` hands back.

Kept apart from the session so the scheduler's data structure reads on its own:
a priority heap, FIFO within a priority, with one parking lot that every push and
every end of a step's audio wakes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from heapq import heappop, heappush

import trio

from ._speech import SpeechHandle

__all__ = ["InterruptResult"]


class InterruptResult:
    """The speeches a :meth:`Session.interrupt` call interrupted.

    ``await result.wait()`` returns when every one of them is done (their audio
    confirmed stopped). Cancelling that wait changes nothing.
    """

    def __init__(self, speeches: Iterable[SpeechHandle]) -> None:
        self.speeches: tuple[SpeechHandle, ...] = tuple(speeches)

    def __repr__(self) -> str:
        return f"<InterruptResult {[s.id for s in self.speeches]}>"

    async def wait(self) -> None:
        for speech in self.speeches:
            await speech.wait_for_playout()


class _SpeechQueue:
    """Speeches waiting for the scheduler: highest priority first, FIFO within one."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, SpeechHandle]] = []
        self._seq = itertools.count()
        self._lot = trio.lowlevel.ParkingLot()

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, speech: SpeechHandle) -> None:
        heappush(self._heap, (-speech.priority, next(self._seq), speech))
        self._lot.unpark_all()

    def wake(self) -> None:
        """Wake the scheduler (it re-checks what it waits for)."""
        self._lot.unpark_all()

    async def park(self) -> None:
        await self._lot.park()

    async def pop(self) -> SpeechHandle:
        while not self._heap:
            await self._lot.park()
        return heappop(self._heap)[2]

    def in_playout_order(self) -> list[SpeechHandle]:
        return [entry[2] for entry in sorted(self._heap)]
