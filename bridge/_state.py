"""The lifecycle of one bridged tool call, as a pure state machine (no trio, no asyncio).

Theory of operation
-------------------
A call moves ``PENDING -> RUNNING -> RESULT | ERROR | INTERRUPTED`` (or straight from
``PENDING`` to ``INTERRUPTED`` when the interrupt came first). The driver in
:mod:`bridge._tools` asks this object before every side effect, and obeys:

Rule 1. Cancellation is requested at most once per call: :meth:`request_cancel` returns
        True exactly once, and only then does the driver call ``CancelScope.cancel()``.
        Every later source (another ``interrupt()``, a forced one, the 5 s watchdog,
        asyncio teardown) gets False.
Rule 2. A protected call (declared ``interruptible=False``, or protected by
        ``disallow_interruptions()`` before any cancel) is never cancelled.
Rule 3. A call already finished is never cancelled; a call cancelled before it started
        never starts (:meth:`start` returns False).
Rule 4. Exactly one terminal phase is recorded; a second :meth:`finish` is a bug and
        raises ``AssertionError``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

__all__ = ["CallPhase", "ToolCallState"]


class CallPhase(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    RESULT = "result"
    ERROR = "error"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in (CallPhase.RESULT, CallPhase.ERROR, CallPhase.INTERRUPTED)


@dataclass
class ToolCallState:
    """State of one call; see the module docstring for the rules."""

    call_id: str
    interruptible: bool = True
    phase: CallPhase = CallPhase.PENDING
    protected: bool = field(init=False)
    cancel_reason: str | None = None
    cancel_requests: int = 0
    """How many times a cancel was granted (the contract: 0 or 1)."""
    refused: list[str] = field(default_factory=list)
    """Cancel requests that were refused (duplicates, protected, finished), for tests."""

    def __post_init__(self) -> None:
        self.protected = not self.interruptible

    def request_cancel(self, reason: str) -> bool:
        """Return True if the driver must cancel the call's scope now (Rules 1-3)."""
        if self.protected or self.phase.terminal or self.cancel_reason is not None:
            self.refused.append(reason)
            return False
        self.cancel_reason = reason
        self.cancel_requests += 1
        return True

    def protect(self) -> bool:
        """Protect the call from cancellation; False if a cancel was already granted."""
        if self.cancel_reason is not None:
            return False
        self.protected = True
        return True

    def start(self) -> bool:
        """PENDING -> RUNNING; False (stay PENDING) if a cancel came first (Rule 3)."""
        assert self.phase is CallPhase.PENDING, self.phase
        if self.cancel_reason is not None:
            return False
        self.phase = CallPhase.RUNNING
        return True

    def finish(self, phase: CallPhase) -> None:
        """Record the one terminal phase (Rule 4)."""
        assert phase.terminal, phase
        assert not self.phase.terminal, f"{self.call_id}: second terminal phase {phase}"
        self.phase = phase
