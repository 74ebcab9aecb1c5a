"""Lifecycle rules of a speech and of a tool call, with no event loop.

Theory of operation
-------------------
This module holds every rule about *what may happen next*; the trio layer
(``_speech.py``, ``_session.py``, ``_step_audio.py``) only asks it and then acts. Nothing here awaits,
so each rule is tested with plain function calls.

A speech moves through these phases::

    CREATED -> SCHEDULED -> AUTHORIZED -> PLAYED -+-> DONE
                   ^                              |
                   +------ (tool reply step) -----+

* ``SCHEDULED``: waiting in the session queue for step ``k``.
* ``AUTHORIZED``: the scheduler let step ``k`` speak; its LLM, TTS and audio run.
* ``PLAYED``: the audio of step ``k`` is finished (played out, or cleared and
  confirmed by the sink, or the sink's grace ran out); its tools may still run. A
  step whose tools all finished un-interrupted schedules step ``k + 1``.
* ``DONE`` is terminal and is entered from any phase, only by the speech's own
  supervisor once all of its work has joined.

Beside the phase, a speech carries an **interrupted latch**. The first accepted
interrupt sets it and records its source; it never goes back. An interrupt is

* ignored (``NOOP``) if the speech is done or already interrupted;
* refused (``DENIED``) without any change if the speech is protected and the
  interrupt is not forced. A speech is protected while ``allow_interruptions`` is
  False or while it holds one or more interruption holds; holds are counted and the
  user's flag is kept apart from them, so releasing the last hold restores exactly
  the user's choice;
* otherwise ``ACCEPTED``.

A tool call moves through::

    PENDING -> RUNNING -> RESULT | ERROR | INTERRUPTED
    PENDING -> INTERRUPTED              (interrupted before it started: never started)
    PENDING -> ERROR                    (rejected: unknown tool, invalid arguments,
                                         a repeated call id, or any failure preparing it)

Exactly-once delivery: ``request_cancel`` answers True at most once per call, and
only for a running, unprotected call; the trio layer cancels the call's scope exactly
when it answers True. A call still pending when the interrupt lands is marked and
never starts, protected or not: protection covers a call that is running. A
protected call (``interruptible=False`` or one that called
``disallow_interruptions()``) is refused unless the request overrides protection,
which only session close does after its timeout. ``finish`` accepts exactly one
terminal outcome; a second is a bug and raises :class:`IllegalTransition`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "IllegalTransition",
    "InterruptDecision",
    "SpeechPhase",
    "SpeechState",
    "ToolCallPhase",
    "ToolCallState",
    "ToolOutcome",
]


class IllegalTransition(RuntimeError):
    """A transition the rules forbid: always a bug in the driver, never user error."""


class SpeechPhase(enum.Enum):
    CREATED = "created"
    SCHEDULED = "scheduled"
    AUTHORIZED = "authorized"
    PLAYED = "played"
    DONE = "done"


class InterruptDecision(enum.Enum):
    ACCEPTED = "accepted"
    NOOP = "noop"
    DENIED = "denied"


class SpeechState:
    """The rules of one speech's lifecycle (see the module docstring)."""

    def __init__(self, *, allow_interruptions: bool = True) -> None:
        self.phase = SpeechPhase.CREATED
        self.num_steps = 1
        self.interrupted = False
        self.interrupt_source: str | None = None
        self.forced = False
        self._allow_interruptions = allow_interruptions
        self._holds = 0

    # -- protection ---------------------------------------------------------
    @property
    def allow_interruptions(self) -> bool:
        """The user's flag (holds are separate; see :attr:`protected`)."""
        return self._allow_interruptions

    def set_allow_interruptions(self, value: bool) -> None:
        if not value and self.interrupted:
            raise IllegalTransition("the speech is already interrupted")
        self._allow_interruptions = value

    @property
    def holds(self) -> int:
        return self._holds

    @property
    def protected(self) -> bool:
        return not self._allow_interruptions or self._holds > 0

    def hold(self) -> None:
        if self.interrupted:
            raise IllegalTransition("the speech is already interrupted")
        self._holds += 1

    def release(self) -> None:
        if self._holds == 0:
            raise IllegalTransition("release() without a matching hold()")
        self._holds -= 1

    # -- interrupt latch ----------------------------------------------------
    def request_interrupt(self, *, force: bool, source: str) -> InterruptDecision:
        if self.phase is SpeechPhase.DONE or self.interrupted:
            return InterruptDecision.NOOP
        if self.protected and not force:
            return InterruptDecision.DENIED
        self.interrupted = True
        self.interrupt_source = source
        self.forced = force
        return InterruptDecision.ACCEPTED

    # -- phases -------------------------------------------------------------
    def _move(self, expected: tuple[SpeechPhase, ...], to: SpeechPhase) -> None:
        if self.phase not in expected:
            raise IllegalTransition(f"cannot go from {self.phase.value} to {to.value}")
        self.phase = to

    def schedule(self) -> None:
        self._move((SpeechPhase.CREATED,), SpeechPhase.SCHEDULED)

    def authorize(self) -> None:
        self._move((SpeechPhase.SCHEDULED,), SpeechPhase.AUTHORIZED)

    def playout_finished(self) -> None:
        self._move((SpeechPhase.AUTHORIZED,), SpeechPhase.PLAYED)

    def may_continue(self) -> bool:
        """Whether a played step may be followed by a tool reply step."""
        return self.phase is SpeechPhase.PLAYED and not self.interrupted

    def next_step(self) -> None:
        if self.interrupted:
            raise IllegalTransition("an interrupted speech takes no further step")
        self._move((SpeechPhase.PLAYED,), SpeechPhase.SCHEDULED)
        self.num_steps += 1

    def finish(self) -> None:
        if self.phase is SpeechPhase.DONE:
            raise IllegalTransition("the speech is already done")
        self.phase = SpeechPhase.DONE

    @property
    def done(self) -> bool:
        return self.phase is SpeechPhase.DONE


class ToolCallPhase(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    RESULT = "result"
    ERROR = "error"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in (ToolCallPhase.RESULT, ToolCallPhase.ERROR, ToolCallPhase.INTERRUPTED)


@dataclass(frozen=True)
class ToolOutcome:
    """The terminal outcome of one call: exactly one per call."""

    phase: ToolCallPhase
    output: str


class ToolCallState:
    """The rules of one tool call (see the module docstring)."""

    def __init__(self, *, protected: bool = False) -> None:
        self.phase = ToolCallPhase.PENDING
        self.protected = protected
        self.cancel_requested = False
        self.cancel_source: str | None = None
        self.deliveries = 0
        self.outcome: ToolOutcome | None = None

    def start(self) -> bool:
        """PENDING -> RUNNING; False if an interrupt came first (do not run it)."""
        if self.phase is not ToolCallPhase.PENDING:
            raise IllegalTransition(f"cannot start a call that is {self.phase.value}")
        if self.cancel_requested:
            return False
        self.phase = ToolCallPhase.RUNNING
        return True

    def protect(self) -> None:
        if self.phase.terminal:
            raise IllegalTransition("the call is already finished")
        if self.deliveries:
            raise IllegalTransition("the call was already interrupted")
        self.protected = True

    def request_cancel(self, source: str, *, override_protection: bool = False) -> bool:
        """Record an interrupt; True exactly when the caller must cancel the call now."""
        if self.phase.terminal:
            return False
        if self.phase is ToolCallPhase.PENDING:
            # Not started yet: it never will be, protected or not.
            self.cancel_requested = True
            self.cancel_source = self.cancel_source or source
            return False
        if self.protected and not override_protection:
            return False
        if not self.cancel_requested:
            self.cancel_requested = True
            self.cancel_source = source
        if self.phase is ToolCallPhase.RUNNING and self.deliveries == 0:
            self.deliveries = 1
            return True
        return False

    def finish(self, phase: ToolCallPhase, output: str) -> ToolOutcome:
        if not phase.terminal:
            raise IllegalTransition(f"{phase.value} is not a terminal phase")
        if self.phase.terminal:
            raise IllegalTransition(f"the call already finished ({self.phase.value})")
        if phase is ToolCallPhase.RESULT and self.phase is ToolCallPhase.PENDING:
            raise IllegalTransition("a call that never ran has no result")
        self.phase = phase
        self.outcome = ToolOutcome(phase, output)
        return self.outcome
