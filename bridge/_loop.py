"""The bridge's asyncio loop: trio-asyncio's loop with four fixes the SDK needs.

Stock trio-asyncio 0.16 breaks livekit-agents in four places (measured; see the
project's trio_asyncio_findings notes). :class:`_FixesMixin` repairs them on both of
trio-asyncio's loops:

1. ``run_in_executor(<concurrent.futures executor>)`` asserted that the executor is a
   ``TrioExecutor``. The SDK's VAD and audio decoder own ``ThreadPoolExecutor``s. We wrap
   the foreign executor's future, as stock asyncio does.
2. Cancelling a task waiting on ``run_in_executor(None, ...)`` / ``asyncio.to_thread``
   was lost: the task resumed with the thread's result when the thread finished. The
   default executor now abandons the thread on cancel (trio's
   ``to_thread.run_sync(abandon_on_cancel=True)``), so the waiter gets
   ``CancelledError`` at once, as on stock asyncio.
3. ``call_later`` with a negative delay asserted (trio-asyncio #159); the SDK's
   ``utils.aio.interval`` computes one when a tick is late. Clamped to zero, like uvloop.
4. An unhandled task error ("Task exception was never retrieved", "Task was destroyed
   but it is pending!") was re-raised into the loop's nursery and stopped the whole
   program. It is logged, as stock asyncio does.

Hosting:

* :func:`open_loop` / :func:`run` for trio-first programs;
* :func:`install` for asyncio-first programs (livekit's CLI and job processes create
  their loop with ``asyncio.new_event_loop()``): after it, that call returns a
  :class:`BridgeSyncEventLoop` (trio-asyncio's greenlet-hosted loop with the fixes), in
  every thread.

Importing this module imports ``trio_asyncio``, which patches asyncio process-wide;
:mod:`bridge` imports it lazily for that reason.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
import trio_asyncio
import trio_asyncio._sync as _ta_sync
from trio_asyncio import TrioEventLoop, TrioExecutor

from ._errors import NotInstalledError

__all__ = [
    "BridgeSyncEventLoop",
    "BridgeTrioEventLoop",
    "current_bridge_loop",
    "install",
    "open_loop",
    "run",
]

T = TypeVar("T")

_OriginalSyncLoop: type[Any] = _ta_sync.SyncTrioEventLoop


class _FixesMixin:
    """The four fixes; placed before trio-asyncio's loop class in the MRO."""

    def run_in_executor(
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        loop: Any = self
        loop._check_closed()
        if executor is None:
            executor = loop._default_executor
        if isinstance(executor, TrioExecutor):
            # fix 2: let a cancelled waiter go; the thread finishes on its own
            run = functools.partial(
                trio.to_thread.run_sync,
                func,
                *args,
                abandon_on_cancel=True,
                limiter=getattr(executor, "_limiter", None),
            )
            fut: asyncio.Future[T] = loop.trio_as_future(run)
            return fut
        # fix 1: a foreign executor, wrapped the way stock asyncio does it
        assert executor is not None
        return asyncio.wrap_future(executor.submit(func, *args), loop=loop)

    def call_later(
        self, delay: float, callback: Callable[..., object], *args: Any, **kwargs: Any
    ) -> asyncio.TimerHandle:
        # fix 3: a late tick asks for a negative delay; run it as soon as possible
        handle: asyncio.TimerHandle = super().call_later(  # type: ignore[misc]
            max(0.0, delay), callback, *args, **kwargs
        )
        return handle

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        # fix 4: log like asyncio instead of re-raising into the loop's nursery
        asyncio.BaseEventLoop.default_exception_handler(self, context)  # type: ignore[arg-type]


class BridgeTrioEventLoop(_FixesMixin, TrioEventLoop):  # type: ignore[misc]
    """trio-asyncio's async loop (``open_loop``) with the bridge's fixes."""


class BridgeSyncEventLoop(_FixesMixin, _OriginalSyncLoop):  # type: ignore[misc]
    """trio-asyncio's greenlet-hosted loop (``asyncio.new_event_loop()``) with the fixes."""


def current_bridge_loop() -> Any:
    """The running bridge loop, or raise :class:`NotInstalledError`.

    Works from trio code (inside ``open_loop``/``run`` or a bridged tool) and from
    asyncio code running on a bridge loop.
    """
    loop = trio_asyncio.current_loop.get()
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
    if not isinstance(loop, _FixesMixin):
        raise NotInstalledError(
            "no bridge loop is running here: use bridge.run()/bridge.open_loop() "
            "(trio first) or call bridge.install() before livekit creates its loop "
            f"(asyncio first); found {type(loop).__name__}"
        )
    return loop


@asynccontextmanager
async def open_loop(queue_len: int | None = None) -> AsyncIterator[asyncio.AbstractEventLoop]:
    """Open the bridge loop inside a running ``trio.run`` (trio-first programs).

    Same contract as ``trio_asyncio.open_loop`` (asyncio tasks are cancelled and joined
    on exit), with the bridge's fixes. Inside it, drive SDK coroutines with
    :func:`bridge.aio` and call its synchronous APIs directly.
    """
    async with trio_asyncio.open_loop(queue_len=queue_len) as loop:
        # Same layout, more methods: switching the class adds the fixes to this loop
        # only, without patching trio-asyncio for other users in the process.
        loop.__class__ = BridgeTrioEventLoop
        yield loop


def run(async_fn: Callable[..., Awaitable[T]], *args: Any, **trio_run_kwargs: Any) -> T:
    """``trio.run(async_fn, *args)`` with a bridge loop open around ``async_fn``.

    ``trio_run_kwargs`` go to ``trio.run`` (``clock=``, ``instruments=``...). This is
    the host for trio-first programs that start an ``AgentSession`` themselves; inside
    it, ``asyncio.new_event_loop()`` is refused, so do not call ``cli.run_app`` here.
    """

    async def _main() -> T:
        async with open_loop():
            return await async_fn(*args)

    return trio.run(_main, **trio_run_kwargs)


def install() -> None:
    """Make ``asyncio.new_event_loop()`` return a bridge loop (asyncio-first programs).

    Call it before livekit creates its loop, at the top of the module that defines the
    entrypoint and calls ``cli.run_app(...)``. It imports trio_asyncio (which patches
    asyncio process-wide) and points trio-asyncio's synchronous loop factory at
    :class:`BridgeSyncEventLoop`, for every thread (thread-based job executors too).
    Idempotent. A loop created before the call is not converted. Tested the way
    livekit's CLI and ``ipc/proc_client.py`` create loops (``new_event_loop()`` then
    ``run_until_complete``); a full worker with job subprocesses needs a LiveKit server
    and was not run: there, make sure the entrypoint module (and so this call) is
    imported in the job process before its loop is created.
    """
    _ta_sync.SyncTrioEventLoop = BridgeSyncEventLoop
