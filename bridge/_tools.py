"""``@bridge.function_tool``: livekit function tools whose body is trio code.

What changes for a tool author, compared with a stock livekit tool: a stock tool is
never told about an interrupt (it runs to completion; past livekit's 5 s watchdog it is
"released" with a placeholder). A bridged tool's body runs in its own trio cancel scope,
and an interrupt of the speech that called it cancels that scope exactly once, with a
reason naming the speech and the interrupt's source. Protect a tool with
``@bridge.function_tool(interruptible=False)`` or ``ctx.disallow_interruptions()``; a
protected tool is never cancelled (by interrupts, forced or not, livekit's watchdog or
session teardown) and its result is recorded.

Each call produces exactly one output in livekit's history: the body's result, its
error (a ``livekit.agents.llm.ToolError`` message, or livekit's masked "internal error"),
or an interrupted record (``is_error=True``, text starting with
:data:`INTERRUPTED_OUTPUT_PREFIX`; test with :func:`is_interrupted_output`).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
import typing
from collections.abc import Awaitable, Callable
from typing import Any, overload

import trio
from livekit.agents import llm as lk_llm
from livekit.agents.voice.events import RunContext as LkRunContext

from trio_playout._state import IllegalTransition, ToolCallPhase, ToolCallState

from . import _lk
from ._errors import AlreadyInterruptedError, ToolSignatureError, UnexpectedCancelError
from ._loop import current_bridge_loop, install
from ._playout import _current_call, aio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

__all__ = [
    "INTERRUPTED_OUTPUT_PREFIX",
    "RunContext",
    "function_tool",
    "is_interrupted_output",
]

logger = logging.getLogger("bridge")

INTERRUPTED_OUTPUT_PREFIX = "interrupted:"
"""Start of the output text livekit records for a bridged call cut short by a cancel."""

_HIDDEN_CTX = "_bridge_livekit_ctx"
_TEARDOWN_REASON = "asyncio task of tool {name!r} cancelled (session teardown or executor)"


def is_interrupted_output(item: Any) -> bool:
    """True if ``item`` is the output livekit recorded for an interrupted bridged call."""
    return (
        getattr(item, "type", None) == "function_call_output"
        and bool(getattr(item, "is_error", False))
        and str(getattr(item, "output", "")).startswith(INTERRUPTED_OUTPUT_PREFIX)
    )


class RunContext:
    """The trio face of livekit's ``RunContext`` for one bridged tool call.

    Attributes mirror livekit's (``session``, ``speech_handle``, ``function_call``,
    ``userdata``); ``livekit`` is the underlying livekit context, for anything else
    (drive its coroutines with ``bridge.aio``).
    """

    def __init__(self, lk_ctx: LkRunContext[Any], state: ToolCallState, activity_info: Any):
        self._lk = lk_ctx
        self._state = state
        self._activity_info = activity_info

    @property
    def livekit(self) -> LkRunContext[Any]:
        return self._lk

    @property
    def session(self) -> Any:
        return self._lk.session

    @property
    def speech_handle(self) -> Any:
        return self._lk.speech_handle

    @property
    def function_call(self) -> lk_llm.FunctionCall:
        return self._lk.function_call

    @property
    def userdata(self) -> Any:
        return self._lk.userdata

    @property
    def interrupted(self) -> bool:
        """True once the speech that called this tool was interrupted (latched)."""
        return bool(self._lk.speech_handle.interrupted)

    @property
    def protected(self) -> bool:
        """True if interrupts will never cancel this call."""
        return self._state.protected

    @property
    def cancel_reason(self) -> str | None:
        """Why this call's scope was cancelled, or None if it was not."""
        return self._state.cancel_source if self._state.deliveries else None

    async def wait_for_playout(self) -> None:
        """Wait (trio) until the audio of the step that called this tool is finished.

        Same meaning as livekit's ``RunContext.wait_for_playout()``: played out, or
        interrupted and confirmed stopped by the sink. Cancel-aware: an interrupt
        cancels it together with the rest of the tool (unless the tool is protected).
        """
        await aio(self._lk.wait_for_playout)()

    def disallow_interruptions(self) -> None:
        """Protect this call and its speech (livekit's ``disallow_interruptions``).

        Afterwards ``interrupt()`` on the speech raises, a forced interrupt still stops
        the audio, and this tool is never cancelled. Raises
        :class:`bridge.AlreadyInterruptedError` if the speech was already interrupted.
        """
        if self._state.cancel_requested or self._lk.speech_handle.interrupted:
            raise AlreadyInterruptedError(f"speech {self._lk.speech_handle.id} was already interrupted")
        try:
            self._state.protect()  # first: if it fails, the speech is left as it was
        except IllegalTransition as exc:  # the call already finished: nothing to protect
            raise AlreadyInterruptedError(f"tool call {self.function_call.call_id}: {exc}") from exc
        try:
            self._lk.disallow_interruptions()
        except RuntimeError as exc:
            raise AlreadyInterruptedError(str(exc)) from exc


async def _run_bridged(
    fn: Callable[..., Awaitable[Any]],
    name: str,
    interruptible: bool,
    ctx_param: str | None,
    lk_ctx: LkRunContext[Any],
    kwargs: dict[str, Any],
) -> Any:
    """The asyncio side of one call: start the trio body, relay cancels exactly once.

    The call's lifecycle is trio_playout's :class:`~trio_playout._state.ToolCallState`
    (the same rules as a trio-native tool call); this driver asks it before every side
    effect and obeys:

    * every cancel source (each ``interrupt()``, forced or not, and livekit cancelling
      this asyncio task at teardown or by its executor) goes through
      ``request_cancel``; the trio scope is cancelled only when it answers True, which
      is at most once, and only for a running unprotected call. The bridge never
      overrides protection: a protected call runs to completion whatever livekit does;
    * a call whose speech was interrupted (or whose task was cancelled) before its body
      started is never started, protected or not, and records an interrupted output;
    * exactly one terminal phase is recorded, mirroring the one output livekit writes.
    """
    loop = current_bridge_loop()
    handle = lk_ctx.speech_handle
    state = ToolCallState(protected=not interruptible)
    scope = trio.CancelScope()
    ctx = RunContext(lk_ctx, state, _lk.activity_task_info(asyncio.current_task()))

    def cancel(reason: str) -> None:
        if state.request_cancel(reason):
            scope.cancel(reason=reason)

    unsubscribe: Callable[[], None] | None = None
    if handle.interrupted:
        cancel(_lk.interrupt_reason(handle))  # still pending: marks it, it never starts
    else:
        unsubscribe = _lk.subscribe_interrupt(handle, lambda: cancel(_lk.interrupt_reason(handle)))

    async def body() -> tuple[bool, Any]:
        _current_call.set(ctx)  # this task's own context: inherited by its children
        if ctx_param is not None:
            kwargs[ctx_param] = ctx
        if not state.start():
            return False, None
        with scope:
            return True, await fn(**kwargs)
        return False, None

    fut: asyncio.Future[tuple[bool, Any]] = loop.trio_as_future(body)
    try:
        # asyncio.wait never raises the body's outcome, so a CancelledError here always
        # means this asyncio task was cancelled, never that the body ended in one (which
        # a shielded await of the future cannot tell apart: it spun on the done future).
        while not fut.done():
            try:
                await asyncio.wait((fut,))
            except asyncio.CancelledError:
                # livekit cancelled this asyncio task (teardown, executor cancel). The
                # trio body hears about it once, through the state machine, or never if
                # it is protected; we keep waiting for it to finish either way.
                cancel(_TEARDOWN_REASON.format(name=name))
                task = asyncio.current_task()
                if task is not None and hasattr(task, "uncancel"):
                    task.uncancel()  # absorbed: keep asyncio's cancelling() count honest
        if fut.cancelled():
            raise asyncio.CancelledError  # the loop itself shut the trio task down
        error = fut.exception()
        if error is None:
            completed, value = fut.result()
        elif _is_stray_cancel(error) and state.deliveries:
            completed, value = False, None  # the body answered our cancel, asyncio-style
        elif _is_stray_cancel(error):
            raise UnexpectedCancelError(
                f"tool {name!r} ended in asyncio.CancelledError, but nothing cancelled the "
                "call (an asyncio task it awaited through bridge.aio was cancelled by "
                "someone else, or the body raised it)"
            ) from error
        else:
            raise error
    except BaseException as exc:
        if not state.phase.terminal:
            if isinstance(exc, asyncio.CancelledError):
                state.finish(ToolCallPhase.INTERRUPTED, "the bridge loop cancelled the call")
            else:
                state.finish(ToolCallPhase.ERROR, f"{type(exc).__name__}: {exc}")
        raise
    finally:
        if unsubscribe is not None:
            unsubscribe()
    if completed:
        state.finish(ToolCallPhase.RESULT, "" if value is None else str(value))
        return value
    output = f"{INTERRUPTED_OUTPUT_PREFIX} {state.cancel_source}"
    state.finish(ToolCallPhase.INTERRUPTED, output)
    logger.debug("tool call %s (%s) %s", lk_ctx.function_call.call_id, name, output)
    _lk.quiet_tool_error_warning(output)
    raise lk_llm.ToolError(output)


def _is_stray_cancel(exc: BaseException) -> bool:
    """``asyncio.CancelledError``, alone or in a trio nursery's group (and no KeyboardInterrupt
    or SystemExit, which keep their meaning)."""
    if isinstance(exc, asyncio.CancelledError):
        return True
    if isinstance(exc, BaseExceptionGroup) and not isinstance(exc, Exception):
        cancels, _ = exc.split(asyncio.CancelledError)
        fatal, _ = exc.split((KeyboardInterrupt, SystemExit))
        return cancels is not None and fatal is None
    return False


ToolFn = Callable[..., Awaitable[Any]]


@overload
def function_tool(
    f: ToolFn,
    *,
    interruptible: bool = True,
    name: str | None = None,
    description: str | None = None,
    **livekit_options: Any,
) -> lk_llm.FunctionTool[Any, Any]: ...


@overload
def function_tool(
    f: None = None,
    *,
    interruptible: bool = True,
    name: str | None = None,
    description: str | None = None,
    **livekit_options: Any,
) -> Callable[[ToolFn], lk_llm.FunctionTool[Any, Any]]: ...


def function_tool(
    f: ToolFn | None = None,
    *,
    interruptible: bool = True,
    name: str | None = None,
    description: str | None = None,
    **livekit_options: Any,
) -> lk_llm.FunctionTool[Any, Any] | Callable[[ToolFn], lk_llm.FunctionTool[Any, Any]]:
    """Turn a trio ``async def`` into a livekit function tool.

    ::

        @bridge.function_tool
        async def lookup(ctx: bridge.RunContext, city: str) -> str:
            \"\"\"Look up the weather.\"\"\"
            await ctx.wait_for_playout()
            return await fetch(city)          # trio code

    The result is a real ``livekit.agents.llm.FunctionTool`` for
    ``Agent(tools=[...])``, next to stock asyncio tools. The schema comes from the
    signature and docstring as for livekit's ``@function_tool``; the parameter
    annotated ``bridge.RunContext`` (optional) receives the trio context.
    ``interruptible=False`` protects every call. Other keyword options (``flags``,
    ``on_duplicate``...) go to livekit's ``function_tool``.

    Defining a bridged tool calls :func:`bridge.install` (importing the bridge already
    imported trio-asyncio, whose loop an asyncio-first program would otherwise get
    without the fixes).
    """

    # trio_asyncio is imported by now, so asyncio.new_event_loop() would return its
    # loop anyway: make it the fixed one (asyncio-first programs), see bridge.install().
    install()

    def deco(fn: ToolFn) -> lk_llm.FunctionTool[Any, Any]:
        return _build(fn, interruptible, name, description, livekit_options)

    return deco(f) if f is not None else deco


def _build(
    fn: ToolFn,
    interruptible: bool,
    name: str | None,
    description: str | None,
    livekit_options: dict[str, Any],
) -> lk_llm.FunctionTool[Any, Any]:
    if not inspect.iscoroutinefunction(fn):
        raise ToolSignatureError(f"{fn!r} is not an async def function")
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception as exc:
        raise ToolSignatureError(f"cannot resolve the annotations of {fn!r}: {exc}") from exc
    sig = inspect.signature(fn)
    ctx_param: str | None = None
    params: list[inspect.Parameter] = []
    var_kw: inspect.Parameter | None = None
    for p in sig.parameters.values():
        ann = hints.get(p.name, p.annotation)
        if ann is RunContext:
            ctx_param = p.name
            continue
        if ann is LkRunContext or typing.get_origin(ann) is LkRunContext:
            raise ToolSignatureError(
                f"{fn.__name__}: annotate the context as bridge.RunContext, not livekit's"
            )
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            raise ToolSignatureError(f"{fn.__name__}: parameter {p.name!r} must be nameable")
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            var_kw = p.replace(annotation=ann)
            continue
        params.append(p.replace(annotation=ann))
    hidden = inspect.Parameter(_HIDDEN_CTX, inspect.Parameter.KEYWORD_ONLY, annotation=LkRunContext)
    new_params = [*params, hidden, *([var_kw] if var_kw is not None else [])]
    new_sig = sig.replace(parameters=new_params, return_annotation=hints.get("return", Any))
    tool_name = name or fn.__name__

    async def entry(*args: Any, **kw: Any) -> Any:
        bound = new_sig.bind(*args, **kw)
        arguments = dict(bound.arguments)
        lk_ctx = arguments.pop(_HIDDEN_CTX)
        call_kwargs: dict[str, Any] = {}
        for pname, value in arguments.items():
            if var_kw is not None and pname == var_kw.name:
                call_kwargs.update(value)
            else:
                call_kwargs[pname] = value
        return await _run_bridged(fn, tool_name, interruptible, ctx_param, lk_ctx, call_kwargs)

    entry.__signature__ = new_sig  # type: ignore[attr-defined]
    entry.__annotations__ = {
        **{p.name: p.annotation for p in new_params},
        "return": new_sig.return_annotation,
    }
    entry.__name__ = fn.__name__
    entry.__qualname__ = fn.__qualname__
    entry.__module__ = fn.__module__
    entry.__doc__ = fn.__doc__
    tool: lk_llm.FunctionTool[Any, Any] = lk_llm.function_tool(
        entry, name=tool_name, description=description, **livekit_options
    )
    return tool
