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

and two more: one of speed, not of meaning (5), and one for ``asyncio.run`` hosting (6):

5. Batched callbacks. trio-asyncio runs *one* asyncio callback per pass of trio's
   scheduler (a ``move_on_after`` scope, a channel receive and a full trio batch with an
   epoll call per callback: about 12 us of overhead on 2 vCPU, against about 1 us on
   stock asyncio). An interrupt of a livekit speech that is still synthesising runs
   about 100 callbacks, so that overhead was a third of the bridge's interrupt latency.
   :meth:`_FixesMixin._main_loop_one` runs the loop the way asyncio's ``_run_once``
   does: every callback queued at the start of a pass, then the timers that are due.
   Callbacks queued during a pass run in the next one, so ordering is asyncio's FIFO.
   Trio tasks and I/O get their turn (one checkpoint) when the loop has nothing left to
   run, and at least every ``_PASSES_PER_CHECKPOINT`` passes. ``call_soon`` also skips
   ``_check_callback`` outside debug mode, as stock asyncio does.
6. Trio tasks the loop starts (``trio_as_future``, the bodies of bridged tools) know
   their loop even when the asyncio code that started them runs in a context that does
   not: ``asyncio.run()`` on 3.11+ and ``asyncio.Runner`` make such a context, and a
   bridged tool under them raised ``NotInstalledError``. See :func:`_run_trio_handle`.

and three more found under load (issue 11: a busy neighbour process stretches every
microsecond of CPU the bridge spends beyond stock asyncio):

7. Cancelled timers leave the timer heap, as in asyncio's ``_run_once`` (trio-asyncio's
   ``_timer_handle_cancelled`` is a no-op, so they stayed until their time came:
   livekit cancels ~200 timeouts per interrupted speech and the heap grew by thousands,
   with Python-level ``TimerHandle.__lt__`` calls on every push and pop).
8. Callbacks go to the loop's own deque instead of trio's memory channel (see
   :meth:`BridgeTrioEventLoop._bridge_enable_queue`).
9. asyncio's running loop is set in the thread state while callbacks run, as asyncio's
   own loop does: code that bound the original ``asyncio.get_running_loop`` before
   trio-asyncio patched it (anyio's asyncio backend, under the openai SDK and livekit's
   plugins) raised "no running event loop" on the bridge loop.

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
import collections
import concurrent.futures
import functools
import heapq
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio
import trio_asyncio
import trio_asyncio._sync as _ta_sync
from sniffio import thread_local as _sniffio_library
from trio_asyncio import TrioEventLoop, TrioExecutor
from trio_asyncio._handles import AsyncHandle

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

#: Loop passes run back to back before trio gets its turn (fix 5). Each pass runs only
#: the callbacks the previous one queued, so this bounds how long trio tasks wait behind
#: a chain of asyncio callbacks: 8 passes halve the cost of a sequential chain (a
#: ``sleep(0)`` step 7.1 -> 3.5 us) and let an interrupt that lands between two bursts
#: of a busy trio task finish before the next one (benchmark S7).
_PASSES_PER_CHECKPOINT = 8

#: Fix 7: the timer heap is compacted once it holds more cancelled timers than this
#: and they are more than half of it (asyncio's own thresholds).
_MIN_CANCELLED_TIMERS = 100

_OriginalSyncLoop: type[Any] = _ta_sync.SyncTrioEventLoop

# Fix 9: the thread's running loop, read and set without trio-asyncio's patches (which
# answer from the trio task's context instead).
_thread_running_loop: Callable[[], Any] = (
    getattr(asyncio.events, "_c__get_running_loop", None)
    or getattr(asyncio.events, "_py__get_running_loop")  # noqa: B009
)
_set_running_loop: Callable[[Any], None] = asyncio.events._set_running_loop


def _nothing() -> None:
    """The wake-up handle's callback (fix 8)."""


class _FixesMixin:
    """The fixes and the batched loop; placed before trio-asyncio's loop class."""

    # Callbacks taken off trio-asyncio's queue and not yet run (fix 5). Created lazily:
    # open_loop() switches the class of an already constructed loop.
    _bridge_ready: collections.deque[asyncio.Handle] | None = None
    # Cancelled timers still in the heap (fix 7).
    _bridge_cancelled_timers = 0
    # The queue that replaces trio-asyncio's memory channel (fix 8; BridgeTrioEventLoop
    # only, None on the greenlet loop), the lot its loop task parks on, and whether it is
    # parked there.
    _bridge_incoming: collections.deque[asyncio.Handle] | None = None
    _bridge_lot: trio.lowlevel.ParkingLot | None = None
    _bridge_parked = False

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

    # -- fix 5: batched callbacks -------------------------------------------------------

    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Any = None
    ) -> asyncio.Handle:
        loop: Any = self
        if loop._debug:  # stock asyncio checks the callback in debug mode only
            loop._check_callback(callback, "call_soon")
        handle = asyncio.Handle(callback, args, loop, context)
        loop._queue_handle(handle)
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # fix 7: count cancelled timers still in the heap (asyncio's bookkeeping;
        # trio-asyncio's is a no-op), so _bridge_take_queued can drop them
        if getattr(handle, "_scheduled", False):
            self._bridge_cancelled_timers += 1

    def _bridge_take_queued(self, ready: collections.deque[asyncio.Handle]) -> None:
        """Move everything queued so far to ``ready`` (timers to the heap), then the due timers."""
        loop: Any = self
        timers: list[asyncio.TimerHandle] = loop._timers
        incoming = self._bridge_incoming
        if incoming is None:  # the greenlet loop: trio-asyncio's channel
            receive = loop._q_recv.receive_nowait
            while True:
                try:
                    obj = receive()
                except trio.WouldBlock:
                    break
                self._bridge_take_one(obj, ready, timers)
        elif incoming:
            for obj in incoming:
                if type(obj) is asyncio.Handle:  # the usual case: a call_soon
                    ready.append(obj)
                else:
                    self._bridge_take_one(obj, ready, timers)
            incoming.clear()
        if timers:
            # fix 7: cancelled timers leave the heap as in asyncio's _run_once: all of
            # them once they are most of a large heap, else those at its head. (They used
            # to stay until their time came: livekit cancels ~200 timeouts per
            # interrupted speech, the heap grew to thousands and every push and pop
            # paid for it in Python-level comparisons.)
            cancelled = self._bridge_cancelled_timers
            if cancelled > _MIN_CANCELLED_TIMERS and cancelled * 2 > len(timers):
                kept = []
                for handle in timers:
                    if handle._cancelled:
                        handle._scheduled = False  # type: ignore[attr-defined]
                    else:
                        kept.append(handle)
                heapq.heapify(kept)
                timers[:] = kept
                self._bridge_cancelled_timers = 0
            else:
                while timers and timers[0]._cancelled:
                    self._bridge_cancelled_timers = max(0, self._bridge_cancelled_timers - 1)
                    heapq.heappop(timers)._scheduled = False  # type: ignore[attr-defined]
            if timers:
                now = loop.time()
                while timers and timers[0].when() <= now:
                    handle = heapq.heappop(timers)
                    handle._scheduled = False  # type: ignore[attr-defined]
                    ready.append(handle)

    @staticmethod
    def _bridge_take_one(obj: asyncio.Handle, ready: collections.deque[asyncio.Handle],
                         timers: list[asyncio.TimerHandle]) -> None:
        if isinstance(obj, asyncio.TimerHandle):
            if not obj._cancelled:  # (a timer cancelled before it reached the heap is dropped)
                obj._scheduled = True  # type: ignore[attr-defined]
                heapq.heappush(timers, obj)
        else:
            ready.append(obj)

    async def _main_loop_one(self, no_wait: bool = False) -> None:
        """Run the loop (fix 5): what is ready now, up to a few passes, then yield once.

        Same contract as trio-asyncio's (which runs a single callback per call): with
        ``no_wait`` it raises ``trio.WouldBlock`` when nothing is ready instead of
        waiting. ``stop()`` works by a callback raising ``TrioAsyncioExit``; callbacks
        after it stay in ``_bridge_ready`` and run when the loop runs again (or when
        ``_main_loop_exit`` drains it), as asyncio keeps its ready queue across stops.
        """
        loop: Any = self
        ready = self._bridge_ready
        if ready is None:
            ready = self._bridge_ready = collections.deque()
        self._bridge_take_queued(ready)
        blocked = False
        if not ready:
            if no_wait:
                raise trio.WouldBlock
            timers: list[asyncio.TimerHandle] = loop._timers
            # loop.time() is trio's clock, so the next timer's time is a trio deadline
            with trio.CancelScope(deadline=timers[0].when() if timers else math.inf):
                lot = self._bridge_lot
                if lot is None:  # the greenlet loop: trio-asyncio's channel
                    self._bridge_take_one(await loop._q_recv.receive(), ready, timers)
                else:
                    self._bridge_parked = True  # the next _bridge_put unparks it
                    try:
                        await lot.park()
                    finally:
                        self._bridge_parked = False
            blocked = True
            self._bridge_take_queued(ready)
        passes = 0
        # fix 9: asyncio's running loop is set (in the thread state) while callbacks run,
        # as asyncio's own loop does, for code that bound the original
        # asyncio.get_running_loop before trio-asyncio patched it (anyio under the
        # openai SDK); the previous value is back whenever trio code may run.
        previous = _thread_running_loop()
        _set_running_loop(loop)
        try:
            while True:
                for _ in range(len(ready)):
                    obj = ready.popleft()
                    if isinstance(obj, AsyncHandle):
                        # a trio task (trio_as_future / run_trio_task): start it as
                        # trio-asyncio does, in the context of the asyncio code that asked
                        # for it (fix 6)
                        obj._context.run(
                            loop._nursery.start_soon, _run_trio_handle, loop, obj,
                            name=obj._callback,
                        )
                        _set_running_loop(previous)
                        try:
                            await obj._started.wait()
                        finally:
                            _set_running_loop(loop)
                        blocked = True
                    elif not obj._cancelled:
                        prev_library, _sniffio_library.name = _sniffio_library.name, "asyncio"
                        try:
                            obj._run()
                        finally:
                            _sniffio_library.name = prev_library
                passes += 1
                if blocked or passes >= _PASSES_PER_CHECKPOINT:
                    break
                self._bridge_take_queued(ready)
                if not ready:
                    break
        finally:
            _set_running_loop(previous)
        if not blocked:
            # the passes ran without yielding: give trio tasks and I/O their turn
            await trio.lowlevel.checkpoint()


async def _run_trio_handle(loop: Any, handle: AsyncHandle) -> None:
    """Run a trio task the loop starts, with ``trio_asyncio.current_loop`` set (fix 6).

    The task inherits the context of the asyncio code that started it, and that context
    need not know the loop: ``asyncio.run()`` (3.11+) and ``asyncio.Runner`` run the main
    task in a context copied before the loop runs. Trio code there then found no loop
    (``bridge.aio`` and ``ctx.wait_for_playout()`` raised ``NotInstalledError``). The
    task's context is its own copy, so the asyncio side is not touched.
    """
    trio_asyncio.current_loop.set(loop)
    await handle._run()


class BridgeTrioEventLoop(_FixesMixin, TrioEventLoop):  # type: ignore[misc]
    """trio-asyncio's async loop (``open_loop``) with the bridge's fixes."""

    def _bridge_enable_queue(self) -> None:
        """Fix 8: callbacks go to a deque, not through trio's memory channel.

        Called by :func:`open_loop` after the class switch. trio-asyncio's channel costs a
        ``send_nowait`` (~50 bytecodes, a parked-receiver check) per callback and a
        ``receive_nowait`` (a ``WouldBlock`` raised on every empty poll); livekit queues
        ~50 callbacks per interrupt. Everything trio-asyncio sends through the channel
        (``call_soon_threadsafe`` and signal handlers, run in the trio thread by the trio
        token) now goes to the same deque, in the order it reaches the trio thread; the
        loop task parks on a ParkingLot when there is nothing to run. A bounded
        ``queue_len`` keeps trio-asyncio's channel.
        """
        loop: Any = self
        if loop._q_send.statistics().max_buffer_size != math.inf:
            return
        self._bridge_incoming = collections.deque()
        self._bridge_lot = trio.lowlevel.ParkingLot()
        # trio-asyncio's own _main_loop_one may be parked on the channel already (the
        # loop task started before the class switch): a no-op handle wakes it, it runs it
        # and returns, and from then on the loop task runs the bridge's _main_loop_one.
        loop._q_send.send_nowait(asyncio.Handle(_nothing, (), loop, None))
        loop._q_send = _QueueSender(self)

    def _bridge_put(self, handle: asyncio.Handle) -> None:
        assert self._bridge_incoming is not None
        self._bridge_incoming.append(handle)
        if self._bridge_parked:
            self._bridge_parked = False
            assert self._bridge_lot is not None
            self._bridge_lot.unpark_all()

    def _queue_handle(self, handle: asyncio.Handle) -> asyncio.Handle:
        incoming = self._bridge_incoming
        if incoming is None:
            queued: asyncio.Handle = super()._queue_handle(handle)
            return queued
        loop: Any = self
        loop._check_closed()
        incoming.append(handle)  # _bridge_put, inlined: this runs for every callback
        if self._bridge_parked:
            self._bridge_parked = False
            assert self._bridge_lot is not None
            self._bridge_lot.unpark_all()
        return handle


class _QueueSender:
    """Stands in for trio-asyncio's send channel once fix 8 is on: its users
    (``call_soon_threadsafe``, signal handlers) call ``send_nowait`` in the trio thread."""

    __slots__ = ("_loop",)

    def __init__(self, loop: BridgeTrioEventLoop) -> None:
        self._loop = loop

    def send_nowait(self, handle: asyncio.Handle) -> None:
        self._loop._bridge_put(handle)


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

    It also calls :func:`install`: importing trio-asyncio already made
    ``asyncio.new_event_loop()`` (and so ``asyncio.run()``, say in a worker thread of
    this program) return trio-asyncio's loop, and every loop in a bridged process should
    be one with the fixes.
    """
    install()
    async with trio_asyncio.open_loop(queue_len=queue_len) as loop:
        # Same layout, more methods: switching the class adds the fixes to this loop
        # only, without patching trio-asyncio for other users in the process.
        loop.__class__ = BridgeTrioEventLoop
        loop._bridge_enable_queue()
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
    Idempotent; :func:`open_loop`, :func:`run` and ``@bridge.function_tool`` call it
    too. A loop created before the call is not converted. Tested the way
    livekit's CLI and ``ipc/proc_client.py`` create loops (``new_event_loop()`` then
    ``run_until_complete``); a full worker with job subprocesses needs a LiveKit server
    and was not run: there, make sure the entrypoint module (and so this call) is
    imported in the job process before its loop is created.
    """
    _ta_sync.SyncTrioEventLoop = BridgeSyncEventLoop
