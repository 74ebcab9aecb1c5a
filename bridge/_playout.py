"""Trio-side waits on livekit speeches, and calling asyncio SDK code from trio.

* :func:`wait_for_playout` - trio wait for a livekit ``SpeechHandle`` to be done;
* :func:`interruptible` - a trio cancel scope tied to a handle's interrupt;
* :func:`aio` - call an asyncio SDK coroutine function from trio.

All three must run under a bridge loop (``bridge.run``/``bridge.open_loop`` or
``bridge.install``), else they raise :class:`bridge.NotInstalledError`.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import trio
import trio_asyncio

from . import _lk
from ._errors import CircularWaitError
from ._loop import current_bridge_loop

if TYPE_CHECKING:
    from ._tools import RunContext

__all__ = ["aio", "current_call", "interruptible", "wait_for_playout"]

P = ParamSpec("P")
T = TypeVar("T")

# The bridged tool call whose trio code is running (inherited by the tool's child tasks,
# which is what closes livekit's helper-task bypass of the circular-wait check).
_current_call: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar(
    "bridge_current_call", default=None
)


def current_call() -> RunContext | None:
    """The ``bridge.RunContext`` of the bridged tool running in this trio context."""
    return _current_call.get()


async def wait_for_playout(handle: Any) -> None:
    """Wait (trio) until the livekit speech ``handle`` is done.

    Same meaning as livekit's ``SpeechHandle.wait_for_playout()``: all of the speech's
    work finished and its audio stopped (played out, or cleared and confirmed by the
    sink). Cancelling the waiter never affects the speech. Called from a bridged tool on
    its own speech it raises :class:`bridge.CircularWaitError` at once (the speech waits
    for the tool); use ``ctx.wait_for_playout()`` there.
    """
    current_bridge_loop()
    call = _current_call.get()
    if (call is not None and call.speech_handle is handle and not call._state.phase.terminal
            and not _lk.is_released(call.function_call)):
        raise CircularWaitError(
            f"tool {call.function_call.name!r} waited for its own speech {handle.id}, "
            "which waits for the tool: use ctx.wait_for_playout() instead"
        )
    if handle.done():
        await trio.lowlevel.checkpoint()
        return
    fut = _lk.done_future(handle)
    if fut is None:
        await trio_asyncio.aio_as_trio(handle.wait_for_playout)()
        return
    done = trio.Event()

    def _on_done(_f: asyncio.Future[Any]) -> None:
        done.set()

    fut.add_done_callback(_on_done)
    try:
        await done.wait()
    finally:
        fut.remove_done_callback(_on_done)


class interruptible:
    """A trio cancel scope cancelled when the livekit speech ``handle`` is interrupted.

    ::

        with bridge.interruptible(handle) as scope:
            await long_trio_work()
        if scope.cancelled_caught:
            ...  # the user barged in

    An interrupt that landed before the ``with`` is honoured: the scope is cancelled on
    entry and fires at the first checkpoint. The cancel carries a reason naming the
    speech and the interrupt's source. Must be entered and exited in the same trio task.
    """

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self._scope = trio.CancelScope()
        self._unsubscribe: Callable[[], None] | None = None

    def __enter__(self) -> trio.CancelScope:
        current_bridge_loop()
        handle = self._handle
        if handle.interrupted:
            self._scope.cancel(reason=_lk.interrupt_reason(handle))
        elif not handle.done():
            self._unsubscribe = _lk.subscribe_interrupt(
                handle, lambda: self._scope.cancel(reason=_lk.interrupt_reason(handle))
            )
        return self._scope.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        return self._scope.__exit__(exc_type, exc, tb)


def aio(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Wrap an asyncio coroutine function so trio code can await it.

    ``await bridge.aio(session.start)(agent)`` runs the coroutine as an asyncio task on
    the bridge loop (``trio_asyncio.aio_as_trio`` semantics: cancelling the trio caller
    cancels the task and waits for it to finish). Inside a bridged tool, the task also
    carries the tool call's livekit identity, so SDK calls behave as they do from a
    stock tool (``session.say()`` inside a tool, livekit's own circular-wait check).
    Synchronous SDK calls (``handle.interrupt()``, ``session.interrupt()``) need no
    wrapper: call them directly from trio.
    """

    @functools.wraps(fn)
    async def call(*args: P.args, **kwargs: P.kwargs) -> T:
        current_bridge_loop()
        ctx = _current_call.get()
        info = ctx._activity_info if ctx is not None else None

        async def _in_asyncio() -> T:
            task = asyncio.current_task()
            if task is not None:
                _lk.set_activity_task_info(task, info)
            return await fn(*args, **kwargs)

        result: T = await trio_asyncio.aio_as_trio(_in_asyncio)()
        return result

    return call
