"""One step's audio bookkeeping and the small helpers of a step's text pipeline.

:class:`_Playout` records what a step gave the sink: its text, word timings, audio
length and every segment its frames went into. From that it cuts the heard text
(see the rules in :mod:`._session`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from ._audio import PlaybackResult, PlaybackSegment

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if TYPE_CHECKING:
    from ._speech import SpeechHandle

__all__: list[str] = []

T = TypeVar("T")

_SENTENCE_END = re.compile(r"[.!?;:]+\s+")


@dataclass
class _Playout:
    """What one step gave the sink, for stopping it and cutting the heard text."""

    text: str = ""
    words: list[tuple[float, int]] = field(default_factory=list)  # (start s, end char)
    audio: float = 0.0
    # Every segment the step's frames went into, learnt before each write: an
    # interrupt during a blocked write must still wait for that segment to stop.
    segments: list[PlaybackSegment] = field(default_factory=list)
    cleared: bool = False  # clear_buffer() was already called for this step
    complete: bool = False  # all of the step's text was synthesized and given to the sink

    def track(self, segment: PlaybackSegment) -> None:
        if not self.segments or self.segments[-1] is not segment:
            self.segments.append(segment)

    def unfinished(self) -> list[PlaybackSegment]:
        return [s for s in self.segments if not s.done()]

    def result(self) -> PlaybackResult:
        """The step's audio as one result; every segment must be finished.

        The position is on the step's own timeline (segments back to back), where
        the word timings are.
        """
        if len(self.segments) == 1:  # the usual case: its own result, same timeline
            only = self.segments[0].result
            assert only is not None
            return only
        offset = position = 0.0
        interrupted, confirmed = False, True
        for segment in self.segments:
            result = segment.result
            assert result is not None
            if result.position > 0:
                position = offset + result.position
            offset += segment.captured
            interrupted = interrupted or result.interrupted
            confirmed = confirmed and result.confirmed
        return PlaybackResult(position, interrupted, confirmed)

    def cut_by_sink(self) -> bool:
        """Whether the sink confirmed it stopped one of the step's segments early."""
        return any(s.result is not None and s.result.interrupted and s.result.confirmed
                   for s in self.segments)

    def heard(self, position: float, interrupted: bool) -> str:
        """The text heard up to ``position`` on the step's timeline."""
        if self.complete and (not interrupted or position >= self.audio):
            return self.text  # all of it played: also any tail after the last timed word
        if not self.words:
            return self.text  # no word timings: the best we know is what was sent
        end = 0
        for start, char in self.words:
            if start < position and char > end:
                end = char
        return self.text[:end]


class _RecordsErrors(Protocol):
    def _record_error(self, speech: SpeechHandle, exc: BaseException) -> None: ...


class _ErrorsInto:
    """``with session._errors_into(speech):`` record errors of a speech's own work on
    it; only cancellation goes on (an error must not escape into the speech's
    nursery, where it would cancel its protected tools).

    A class, not a generator: it is on every step's interrupt path, where a
    generator-based context manager costs a generator and its StopIteration.
    """

    __slots__ = ("_session", "_speech")

    def __init__(self, session: _RecordsErrors, speech: SpeechHandle) -> None:
        self._session = session
        self._speech = speech

    def __enter__(self) -> None:
        return None

    def __exit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> bool:
        if exc is None:
            return False
        if isinstance(exc, Exception):
            self._session._record_error(self._speech, exc)
            return True
        if isinstance(exc, BaseExceptionGroup):
            # Only errors are the speech's: Cancelled, KeyboardInterrupt and
            # SystemExit are the program's and go on.
            errors, rest = exc.split(Exception)
            if errors is not None:
                self._session._record_error(self._speech, errors)
            if rest is not None:
                raise rest from None
            return True
        return False


@dataclass(frozen=True)
class _Say:
    text: str


class _Reply:
    pass


_Source = _Say | _Reply


def _split_sentences(text: str, scan_from: int = 0) -> tuple[list[str], str]:
    """Complete sentences (with their trailing space) and the unfinished rest.

    ``scan_from``: no sentence ends before this index (the caller already looked).
    """
    sentences: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text, scan_from):
        sentences.append(text[start:m.end()])
        start = m.end()
    return sentences, text[start:]


class _aclosing(Generic[T]):
    """``async with``: close an async iterator if it has ``aclose`` (not all do)."""

    __slots__ = ("_iterator",)

    def __init__(self, iterator: AsyncIterator[T]) -> None:
        self._iterator = iterator

    async def __aenter__(self) -> AsyncIterator[T]:
        return self._iterator

    async def __aexit__(self, *exc_info: object) -> None:
        aclose = getattr(self._iterator, "aclose", None)
        if aclose is not None:
            await aclose()
