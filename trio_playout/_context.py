"""``RunContext``: what a tool knows about the call it serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._exceptions import SpeechAlreadyInterrupted
from ._history import FunctionCall
from ._state import IllegalTransition

if TYPE_CHECKING:
    from ._session import Session
    from ._speech import SpeechHandle, _ToolRun

__all__ = ["RunContext"]


class RunContext:
    """What a tool receives in its context parameter, if it has one.

    The context parameter is the one annotated ``RunContext`` (any position), or
    an unannotated first parameter named ``ctx`` or ``context``; a tool without one
    is called without it. The context is bound to the step that started the call
    (an object, not an index), so :meth:`wait_for_playout` always means the audio
    of that step.
    """

    def __init__(self, session: Session, run: _ToolRun) -> None:
        self._session = session
        self._run = run

    @property
    def session(self) -> Session:
        return self._session

    @property
    def speech_handle(self) -> SpeechHandle:
        return self._run.speech

    @property
    def function_call(self) -> FunctionCall:
        return self._run.call

    @property
    def interrupted(self) -> bool:
        """Whether the speech that called this tool was interrupted."""
        return self._run.speech.interrupted

    async def wait_for_playout(self) -> None:
        """Return when the audio of the step that started this call is finished.

        Finished means played out, or interrupted and confirmed stopped by the sink
        (or its grace ran out). Unlike ``speech_handle.wait_for_playout()`` this is
        safe inside the tool: the step's audio does not wait for its tools.
        """
        await self._run.step.playout_done.wait()

    def disallow_interruptions(self) -> None:
        """Protect this call and its speech from now on.

        The speech's ``allow_interruptions`` becomes False (a non-forced interrupt
        raises), and this call is never cancelled by an interrupt, forced or not.
        Raises :class:`SpeechAlreadyInterrupted` if the interrupt already landed.
        """
        speech = self._run.speech
        if speech.interrupted:
            raise SpeechAlreadyInterrupted(f"{speech.id} is already interrupted")
        try:
            self._run.state.protect()  # first: if it fails, nothing has changed
        except IllegalTransition as exc:
            raise SpeechAlreadyInterrupted(f"cannot protect this call: {exc}") from None
        speech.allow_interruptions = False
