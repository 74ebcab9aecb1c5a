"""Tool calls of a session: call ids, preparing a call, running it, its one output.

Rules this module keeps (DESIGN 3.3 and 3.5):

* **Exactly one output per call id, for any LLM output.** Ids are unique in a
  session. An id the session makes up (``call_1``, ``call_2``, ...) skips every id
  already used. A call whose LLM id repeats one used earlier in the session is not
  run: it is recorded under a fresh id with an error output that names the repeated
  id; the first call keeps its id and its own output.
* **Nothing leaves a call unfinished.** Every call the LLM emits becomes a run of
  its step at once. Any failure while preparing it (unknown tool, bad arguments, a
  conversion or bookkeeping error) is that run's one error output, so the step,
  ``wait_for_playout()`` and close never wait for a run that will not finish.
* **What the LLM reads.** A tool's return value, as text; the message of a
  :class:`~trio_playout.ToolError` it raised (argument errors are ToolErrors too);
  for any other exception a generic message, never the exception's text (it may
  hold secrets), with the traceback in the log. A ``BaseException`` that is not a
  cancellation (``KeyboardInterrupt``, ``SystemExit``) is recorded as an error
  naming its type and then propagates.
"""

from __future__ import annotations

import itertools
import json
import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._context import RunContext
from ._exceptions import ToolError, UnknownToolError
from ._history import FunctionCall
from ._models import ToolCall
from ._speech import _current_run, _Step, _ToolRun
from ._state import ToolCallPhase, ToolCallState
from ._tools import FunctionTool

if TYPE_CHECKING:
    from ._session import Session
    from ._speech import SpeechHandle

__all__: list[str] = []

logger = logging.getLogger("trio_playout.session")


class _ToolRunner:
    """Prepares and runs the tool calls of one session."""

    def __init__(self, session: Session, tools: Mapping[str, FunctionTool]) -> None:
        self._session = session
        self.tools = dict(tools)
        self._counter = itertools.count(1)
        self._used_ids: set[str] = set()

    def claim_call_id(self, wanted: str | None) -> tuple[str, str | None]:
        """The id to record the call under, and the id it repeats (None if new)."""
        if wanted is not None and wanted not in self._used_ids:
            self._used_ids.add(wanted)
            return wanted, None
        while True:
            fresh = f"call_{next(self._counter)}"
            if fresh not in self._used_ids:
                self._used_ids.add(fresh)
                return fresh, wanted

    def launch(self, speech: SpeechHandle, step: _Step, call: ToolCall, nursery: trio.Nursery) -> None:
        """Make ``call`` a run of ``step`` and start it; never raises (but Cancelled)."""
        call_id, repeated = self.claim_call_id(call.call_id or None)
        tool = self.tools.get(call.name) if repeated is None else None
        run = _ToolRun(speech, step, FunctionCall(call_id, call.name, _arguments_text(call)), tool,
                       ToolCallState(protected=tool is not None and not tool.interruptible))
        step.runs.append(run)  # from here on, the run ends with exactly one outcome
        try:
            if repeated is not None:
                raise ToolError(f"call id {repeated!r} was already used in this session; this call "
                                f"was not run (it is recorded as {call_id!r})")
            if tool is None:
                known = ", ".join(sorted(self.tools)) or "none"
                raise UnknownToolError(f"there is no tool named {call.name!r} (available: {known})")
            arguments = tool.parse_arguments(call.arguments)
            run.ctx = RunContext(self._session, run)
            speech._runs.append(run)
            if speech.interrupted:
                run.deliver(speech.interrupt_source or "programmatic")
            nursery.start_soon(self._run, run, arguments, name=f"tool {call.name} ({call_id})")
        except Exception as exc:
            if not run.state.phase.terminal:
                run.state.finish(ToolCallPhase.ERROR, _message_for_llm(run, exc))
            run.finished.set()

    async def _run(self, run: _ToolRun, arguments: dict[str, Any]) -> None:
        assert run.tool is not None and run.ctx is not None
        try:
            if not run.state.start():
                run.state.finish(ToolCallPhase.INTERRUPTED,
                                 f"not started: the speech was interrupted ({run.state.cancel_source})")
                return
            _current_run.set(run)
            # Errors are caught outside the scope: a group mixing the scope's
            # Cancelled with an error then arrives here as just the error.
            try:
                with run.scope:
                    value = await run.tool.call(run.ctx, arguments)
            except Exception as exc:
                run.state.finish(ToolCallPhase.ERROR, _message_for_llm(run, exc))
            except BaseException as exc:
                _record_base_exception(run, exc)
                raise
            else:
                if not run.scope.cancelled_caught:
                    run.state.finish(ToolCallPhase.RESULT, _to_text(value))
        finally:
            if not run.state.phase.terminal:
                source = run.state.cancel_source or "cancelled"
                run.state.finish(ToolCallPhase.INTERRUPTED, f"interrupted ({source})")
            run.finished.set()


def _arguments_text(call: ToolCall) -> str:
    try:
        return call.arguments_json()
    except Exception:  # a mapping JSON cannot encode: keep a readable record anyway
        return repr(call.arguments)


def _tool_errors(exc: BaseException) -> list[ToolError] | None:
    """The ToolErrors ``exc`` consists of (also inside groups), or None if anything else."""
    if isinstance(exc, ToolError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found: list[ToolError] = []
        for inner in exc.exceptions:
            errors = _tool_errors(inner)
            if errors is None:
                return None
            found.extend(errors)
        return found
    return None


def _message_for_llm(run: _ToolRun, exc: Exception) -> str:
    """The error output of a failed call: ToolError messages, else a generic line."""
    errors = _tool_errors(exc)
    if errors is not None:
        return "; ".join(str(e) for e in errors)
    logger.error("tool %s (%s, %s) failed", run.call.name, run.call.call_id, run.speech.id, exc_info=exc)
    return f"{run.call.name} failed with an internal error (see the application log)"


def _record_base_exception(run: _ToolRun, exc: BaseException) -> None:
    """Record a KeyboardInterrupt, SystemExit, ... as what it is; Cancelled stays "interrupted"."""
    rest: BaseException | None = exc
    if isinstance(exc, trio.Cancelled):
        rest = None
    elif isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
    if rest is not None and not run.state.phase.terminal:
        names = sorted({type(e).__name__ for e in _leaves(rest)})
        logger.error("tool %s (%s, %s) was stopped by %s", run.call.name, run.call.call_id,
                     run.speech.id, ", ".join(names), exc_info=rest)
        run.state.finish(ToolCallPhase.ERROR, f"not finished: the tool raised {', '.join(names)}")


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _to_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)
