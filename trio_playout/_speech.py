"""Speech handles: one per ``say()`` or ``generate_reply()``.

A handle is the user's view of a speech; the session's supervisor task drives it.
Its lifecycle rules live in :mod:`._state`; this module adds the trio objects:
``trio.Event`` for interrupted and done, the scopes an interrupt must cancel, and
the tool runs an interrupt must reach exactly once.
"""

from __future__ import annotations

import enum
import itertools
import logging
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from ._audio import PlaybackResult
from ._exceptions import (
    CircularWaitError,
    InterruptionNotAllowed,
    SpeechAlreadyInterrupted,
    SpeechNotDone,
)
from ._history import ChatItem, FunctionCall
from ._state import IllegalTransition, InterruptDecision, SpeechState, ToolCallState

if TYPE_CHECKING:
    from ._context import RunContext
    from ._tools import FunctionTool

__all__ = ["SpeechHandle", "SpeechPriority"]

logger = logging.getLogger("trio_playout.speech")

_ids = itertools.count(1)


class SpeechPriority(enum.IntEnum):
    """Queue priority: higher plays first; FIFO within a priority."""

    LOW = 0
    NORMAL = 5
    HIGH = 10


@dataclass(eq=False)
class _Step:
    """One LLM round of a speech (reply, then tool reply, ...)."""

    index: int
    authorized: trio.Event = field(default_factory=trio.Event)
    playout_done: trio.Event = field(default_factory=trio.Event)
    playback: PlaybackResult | None = None
    runs: list[_ToolRun] = field(default_factory=list)
    audio_started: bool = False  # its first frame went to the sink


@dataclass(eq=False)
class _ToolRun:
    """One tool call: its rules, its own cancel scope, and when it finished."""

    speech: SpeechHandle
    step: _Step
    call: FunctionCall
    tool: FunctionTool | None
    state: ToolCallState
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    finished: trio.Event = field(default_factory=trio.Event)
    ctx: RunContext | None = None
    committed: bool = False  # its call and output are in the history

    def deliver(self, source: str, *, override_protection: bool = False) -> None:
        if self.state.request_cancel(source, override_protection=override_protection):
            self.scope.cancel(reason=f"speech {self.speech.id} interrupted ({source})")


class _Interruptible:
    """``with speech._interruptible():`` a cancel scope linked to the speech's interrupt."""

    __slots__ = ("_scope", "_speech")

    def __init__(self, speech: SpeechHandle) -> None:
        self._speech = speech
        self._scope = trio.CancelScope()

    def __enter__(self) -> trio.CancelScope:
        speech = self._speech
        if speech.interrupted:
            self._scope.cancel(reason=f"speech {speech.id} interrupted ({speech.interrupt_source})")
        speech._scopes.add(self._scope)
        return self._scope.__enter__()

    def __exit__(self, *exc_info: Any) -> bool:
        self._speech._scopes.discard(self._scope)
        return self._scope.__exit__(*exc_info)


# The tool run the current task belongs to; children spawned by a tool inherit it,
# so a helper task cannot bypass the circular-wait guard.
_current_run: ContextVar[_ToolRun | None] = ContextVar("trio_playout_tool_run", default=None)


class SpeechHandle:
    """A speech the session will play, is playing, or has played.

    ``say()`` and ``generate_reply()`` return one; you do not build it yourself.
    Once done it stays done: all of its work has joined, its audio is confirmed
    stopped (or the sink's grace ran out, see :attr:`sink_timed_out`) and its
    history records are written. ``await handle`` waits for that, like
    :meth:`wait_for_playout`.
    """

    def __init__(self, *, allow_interruptions: bool, priority: SpeechPriority) -> None:
        self.id = f"speech_{next(_ids)}"
        self.priority = priority
        self._state = SpeechState(allow_interruptions=allow_interruptions)
        self._interrupted = trio.Event()
        self._done = trio.Event()
        self._error: BaseException | None = None
        self._scopes: set[trio.CancelScope] = set()
        self._runs: list[_ToolRun] = []
        self._steps: list[_Step] = [_Step(0)]
        self._chat_items: list[ChatItem] = []
        self._stop_audio: Callable[[], None] | None = None  # set while a step's audio is out
        self._on_change: Callable[[SpeechHandle], None] | None = None  # the session's observer
        self.sink_timed_out = False
        """True if the sink never confirmed a stop (or the natural end) within
        ``sink_grace``: the speech finished without it, possibly while audio the
        sink already held was still playing. History then records the step's text
        up to all the audio the sink had been given (the sink ignored the stop, so
        assume it plays what it holds), with ``interrupted=True`` if the speech was
        interrupted."""

    def __repr__(self) -> str:
        flags = [self._state.phase.value]
        if self.interrupted:
            flags.append(f"interrupted by {self.interrupt_source}")
        return f"<SpeechHandle {self.id} {' '.join(flags)}>"

    # -- read-only state --------------------------------------------------------
    @property
    def interrupted(self) -> bool:
        """True once an interrupt was accepted; it never goes back to False."""
        return self._state.interrupted

    @property
    def interrupt_source(self) -> str | None:
        """The source named by the first accepted interrupt."""
        return self._state.interrupt_source

    @property
    def num_steps(self) -> int:
        return self._state.num_steps

    @property
    def chat_items(self) -> list[ChatItem]:
        """Everything this speech wrote to the history, in order (a copy)."""
        return list(self._chat_items)

    def done(self) -> bool:
        return self._done.is_set()

    def exception(self) -> BaseException | None:
        """The error that ended the speech, if any. Raises :class:`SpeechNotDone` before done."""
        if not self.done():
            raise SpeechNotDone(f"{self.id} is not done yet; await wait_for_playout() first")
        return self._error

    # -- protection -------------------------------------------------------------
    @property
    def allow_interruptions(self) -> bool:
        """Whether a non-forced ``interrupt()`` is accepted now.

        Reads False while a hold is active (:meth:`hold_interruptions`). Setting it
        sets your own choice, which holds never change: do not copy the value read
        during a hold back into it, or the speech stays protected after the hold.
        """
        return not self._state.protected

    @allow_interruptions.setter
    def allow_interruptions(self, value: bool) -> None:
        try:
            self._state.set_allow_interruptions(value)
        except IllegalTransition:
            raise SpeechAlreadyInterrupted(
                f"cannot disallow interruptions: {self.id} is already interrupted"
            ) from None

    @contextmanager
    def hold_interruptions(self) -> Iterator[None]:
        """Protect the speech for the duration of the ``with`` block.

        Holds are counted; leaving the last one restores the ``allow_interruptions``
        the user set. Raises :class:`SpeechAlreadyInterrupted` if it is too late.
        """
        try:
            self._state.hold()
        except IllegalTransition:
            raise SpeechAlreadyInterrupted(f"{self.id} is already interrupted") from None
        try:
            yield
        finally:
            self._state.release()

    # -- interrupt ----------------------------------------------------------------
    def interrupt(self, *, force: bool = False, source: str = "programmatic") -> SpeechHandle:
        """Stop this speech: its audio is cleared and its unprotected tools are cancelled.

        The first interrupt wins and records ``source``; later calls, and calls on a
        done speech, change nothing. On a protected speech a non-forced interrupt
        raises :class:`InterruptionNotAllowed` and changes nothing. It does not wait:
        use :meth:`wait_for_playout` for "the audio has stopped".
        """
        decision = self._state.request_interrupt(force=force, source=source)
        if decision is InterruptDecision.DENIED:
            raise InterruptionNotAllowed(f"{self.id} does not allow interruptions; use force=True")
        if decision is InterruptDecision.ACCEPTED:
            logger.debug("%s interrupted (%s%s)", self.id, source, ", forced" if force else "")
            self._interrupted.set()
            if self._stop_audio is not None:
                # The sink hears about it now, not after the speech's tasks unwind. The
                # clear comes before the cancel: a writer blocked in the sink's
                # back-pressure is then woken by the clear and returns normally, which
                # is much cheaper than raising Cancelled through the whole step; the
                # step sees the interrupt and captures nothing more (Session._speak).
                try:
                    self._stop_audio()
                except Exception:
                    logger.exception("%s: stopping the audio failed; retrying in cleanup", self.id)
            reason = f"speech {self.id} interrupted ({source})"
            for scope in self._scopes:
                scope.cancel(reason=reason)
            for run in self._runs:
                run.deliver(source)
            if self._on_change is not None:
                self._on_change(self)
        return self

    async def wait_for_interrupt(self) -> None:
        """Return once the speech has been interrupted (at once if it already was)."""
        await self._interrupted.wait()

    def _interruptible(self) -> _Interruptible:
        """A cancel scope that an interrupt of this speech cancels, also an earlier one."""
        return _Interruptible(self)

    # -- waiting ------------------------------------------------------------------
    def __await__(self) -> Generator[Any, None, None]:
        """``await handle`` is ``await handle.wait_for_playout()`` (as in livekit)."""
        return self.wait_for_playout().__await__()

    async def wait_for_playout(self) -> None:
        """Return when the speech is done: its work joined and its audio stopped.

        After an interrupt that is as soon as the sink confirmed the stop (or its
        grace ran out). Cancelling the waiter never affects the speech. Inside one of
        this speech's own tools it raises :class:`CircularWaitError` at once: use
        :meth:`RunContext.wait_for_playout` there.
        """
        run = _current_run.get()
        if run is not None and run.speech is self and not run.finished.is_set():
            raise CircularWaitError(
                f"tool {run.call.name!r} waits for its own speech {self.id}, which waits for "
                "the tool; use ctx.wait_for_playout() to wait for the audio of its step"
            )
        await self._done.wait()
