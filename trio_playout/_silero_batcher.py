"""Many streams' Silero windows in one onnxruntime call (opt-in; re-exported by ``trio_playout.silero``).

Why: one model call per 32 ms window costs about 77 us of CPU; B windows of B
streams in one call cost about 35 us each at B = 16 (``python -m
benchmarks._silero_batch``), with bit-identical probabilities and states: the
model's batch axis keeps the rows apart. With hundreds of conversations in one
process the VAD is most of the CPU, so batching raises what a core holds
(``python -m benchmarks.voice_cost`` measures it side by side).

How: ``SileroVAD(..., batcher=batcher)`` streams hand each window to the batcher
and wait. The batcher's own task runs one call for the pending windows when
``max_batch`` are pending, or ``max_wait`` seconds after the oldest pending one
arrived, whichever comes first, and hands every stream exactly the probability
(and next state and context) it would have got alone. Without a batcher nothing
changes: the model runs inline, one call per window.

What it costs:

- latency: a window waits up to ``max_wait`` for its batch (2 ms by default, on top
  of the VAD's 32 ms windows and the microphone's frame), so every VAD decision,
  and the barge-in that waits for it, comes up to ``max_wait`` later;
- the call blocks the trio thread, as the unbatched call does, but for the whole
  batch: about 0.6 ms at B = 16 (35 us per window), 2 ms at B = 64. Every other
  task of the thread (the sessions' audio, timers) waits that long. Keep
  ``max_batch`` moderate (8-32): the gain flattens beyond 16 and the stall grows.

Run it as ``async with SileroBatcher(...) as batcher:`` (its task lives in a
nursery of its own for the block) or, like a sink, as ``await
nursery.start(batcher.serve)``. A batcher serves once. Streams whose batcher is
not running, or stops while their window waits, raise :class:`BatcherClosedError`.

One batcher runs one model file at one sample rate (its own onnxruntime session,
the process-wide :func:`~trio_playout.silero.shared_session`); a ``SileroVAD``
with another rate or model file is refused with
:class:`~trio_playout.VoiceOptionsError` when it is made.

Cancellation: a window that is cancelled while pending is withdrawn (the model
never sees it, the stream's state stays as it was); the other windows are not
affected. A batch runs synchronously, from taking its windows to waking their
streams, so no stream can leave in the middle of one; a cancel raised from inside
the call itself (it cannot be, short of a session hook) is delivered after the
stream got its result. Once its task is cancelled the batcher runs no more
batches: the windows still waiting get :class:`BatcherClosedError`.

Failures: if the model raises, or answers with the wrong number of rows (of
probabilities or of states), every stream of that batch and every window still waiting gets a
:class:`BatcherClosedError` whose ``__cause__`` is that error, and the batcher
closes with it (the error comes out of ``serve`` / the ``async with``).

Ctrl-C: the batcher's bookkeeping (queueing a window, a batch, the close, the
wake-ups) is KeyboardInterrupt-protected, as trio's own primitives are: a
KeyboardInterrupt landing between two of its steps would leave a window queued
by a task that went on elsewhere, or streams marked as in a batch that never
wakes them (a TrioInternalError later, or a task that no cancel can end). A
Ctrl-C arriving there is delivered by trio at the next checkpoint instead; a
stream waiting for its window is woken by it like any blocked task (its window
is withdrawn).
"""

from __future__ import annotations

import math
import sys
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import outcome
import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._exceptions import BatcherClosedError, ModelNotFoundError, VoiceOptionsError
from ._resample import FloatArray

__all__ = ["BatchedSileroModel", "BatcherClosedError", "SileroBatcher"]

_IDLE, _PENDING, _RUNNING = 0, 1, 2


class BatchedSileroModel:
    """One stream's view of a :class:`SileroBatcher`: ``await model(window)`` -> probability.

    What :meth:`SileroVAD.stream <trio_playout.silero.SileroVAD.stream>` uses with a
    batcher; it carries the stream's recurrent state and context between windows,
    like :class:`~trio_playout.silero.SileroModel`. One window at a time.
    """

    __slots__ = ("_batcher", "_context", "_slot", "_state", "_task", "_window", "at", "context", "window")

    def __init__(self, batcher: SileroBatcher) -> None:
        self._batcher = batcher
        self.window = batcher.window
        self.context = batcher.context
        self._context: FloatArray = np.zeros(batcher.context, dtype=np.float32)
        self._state: Any = np.zeros(batcher.state_shape, dtype=np.float32)
        self._slot = _IDLE
        self._task: trio.lowlevel.Task | None = None
        self._window: FloatArray | None = None
        self.at = 0.0  # clock time the pending window was handed over

    async def __call__(self, window: FloatArray) -> float:
        """Probability of speech in ``window`` (exactly :attr:`window` float samples)."""
        return await self._batcher._infer(self, window)


class SileroBatcher:
    """Runs the windows of many :class:`~trio_playout.silero.SileroVAD` streams in shared calls.

    ``max_batch`` (>= 1) windows at most per call; a window waits at most
    ``max_wait`` seconds (>= 0) after the oldest pending one arrived. ``sample_rate``
    and ``model_path`` are those of the ``SileroVAD`` objects it serves (16000 and
    the installed model by default). Bad options raise
    :class:`~trio_playout.VoiceOptionsError`; a missing model
    :class:`~trio_playout.ModelNotFoundError`.

    Counters (read them any time): :attr:`batches_run`, :attr:`windows_run`,
    :attr:`largest_batch`.
    """

    def __init__(self, *, max_batch: int = 16, max_wait: float = 0.002, sample_rate: int = 16000,
                 model_path: str | Path | None = None) -> None:
        from .silero import _GEOMETRY, _check_duration, find_model, shared_session

        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise VoiceOptionsError(f"max_batch must be an int >= 1, got {max_batch!r}")
        self.max_batch = max_batch
        self.max_wait = _check_duration("max_wait", max_wait)
        if sample_rate not in _GEOMETRY:
            raise VoiceOptionsError(
                f"sample_rate must be 8000 or 16000 (the model's rates), got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.window, self.context = _GEOMETRY[sample_rate]
        self.model_path = (Path(model_path) if model_path is not None else find_model()).resolve()
        self._session = shared_session(self.model_path)
        inputs = {i.name: i for i in self._session.get_inputs()}
        if not {"input", "state", "sr"} <= inputs.keys():
            raise ModelNotFoundError(f"not a Silero v5 model: inputs {sorted(inputs)}")
        shape = list(inputs["state"].shape)
        if len(shape) != 3 or isinstance(shape[1], int):
            raise ModelNotFoundError(f"this Silero model cannot batch: state shape {shape}")
        self.state_shape = (shape[0] if isinstance(shape[0], int) else 2,
                            shape[2] if isinstance(shape[2], int) else 128)
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._buffers: dict[int, tuple[Any, Any]] = {}
        self._pending: list[BatchedSileroModel] = []
        self._wake = trio.Event()
        self._running = False
        self._closed = False
        self._failure: BaseException | None = None  # what ended serve, if not a cancel
        self._nursery_cm: AbstractAsyncContextManager[trio.Nursery] | None = None
        self._nursery: trio.Nursery | None = None
        self.batches_run = 0
        self.windows_run = 0
        self.largest_batch = 0

    @property
    def running(self) -> bool:
        return self._running

    @property
    def pending(self) -> int:
        """Windows waiting for their batch now."""
        return len(self._pending)

    def model(self) -> BatchedSileroModel:
        """A new stream's view of the model (zero state and context)."""
        return BatchedSileroModel(self)

    # -- lifetime ---------------------------------------------------------------------------

    def _check_can_start(self) -> None:
        if self._running:
            raise RuntimeError("this SileroBatcher is already running")
        if self._closed:
            raise BatcherClosedError("this SileroBatcher has closed: a batcher serves once, make a new one")

    @trio.lowlevel.enable_ki_protection
    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the batches until cancelled; then fail the windows still waiting and close.

        KI-protected (see the module's doc) so that a Ctrl-C cannot skip the close in
        ``finally``; it is delivered to the main task instead. Once cancelled it runs
        no more batches (``checkpoint_if_cancelled``): a stopping batcher fails its
        waiting windows rather than running them, and ``__aexit__`` can rely on
        ``_failure`` being final once it has cancelled the task.
        """
        self._check_can_start()
        self._running = True
        cause: BaseException | None = None
        try:
            task_status.started()
            pending = self._pending
            while True:
                await trio.lowlevel.checkpoint_if_cancelled()
                due = pending[0].at + self.max_wait if pending else math.inf
                if len(pending) >= self.max_batch or due <= trio.current_time():
                    self._run_batch()
                    await trio.lowlevel.checkpoint()
                    continue
                self._wake = trio.Event()
                with trio.move_on_at(due):
                    await self._wake.wait()
        except BaseException as exc:
            if not isinstance(exc, trio.Cancelled):
                cause = self._failure = exc
            raise
        finally:
            self._close(cause)

    async def __aenter__(self) -> SileroBatcher:
        self._check_can_start()
        cm = trio.open_nursery()
        nursery = await cm.__aenter__()
        try:
            await nursery.start(self.serve)
        except BaseException as exc:
            nursery.cancel_scope.cancel()
            await cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        self._nursery_cm, self._nursery = cm, nursery
        return self

    async def __aexit__(self, etype: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        cm, nursery = self._nursery_cm, self._nursery
        assert cm is not None and nursery is not None
        self._nursery_cm = self._nursery = None
        nursery.cancel_scope.cancel()
        # The block's error goes to the nursery, as in a plain nursery, when
        # - it is a Cancelled: it may belong to our nursery's scope (serve failed and
        #   cancelled the block), which must see it to catch it;
        # - serve has failed: the nursery raises serve's error, and the block's own
        #   (a KeyError in its handler, a KeyboardInterrupt) must come out with it,
        #   not vanish. serve cannot fail from here on (cancelled, it runs no batch),
        #   so _failure is final.
        # Otherwise (serve healthy) the block's error is re-raised as it is, not
        # wrapped in an ExceptionGroup.
        cancelled = isinstance(exc, trio.Cancelled) or (
            isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[0] is not None)
        if exc is not None and (cancelled or self._failure is not None):
            return bool(await cm.__aexit__(etype, exc, tb))
        await cm.__aexit__(None, None, None)
        return False

    @trio.lowlevel.enable_ki_protection
    def _close(self, cause: BaseException | None) -> None:
        """Fail every waiting window with a :class:`BatcherClosedError` caused by ``cause``.

        KI-protected. Each stream leaves the queue only once woken, so even an error
        here (none is expected) leaves the others queued and withdrawable by a cancel,
        never out of the queue but still marked pending (their abort would fail).
        """
        self._running = False
        self._closed = True
        pending = self._pending
        woken = 0
        try:
            for stream in pending:
                self._wake_stream(stream, outcome.Error(_closed_error(
                    "the SileroBatcher closed while this stream's window was waiting", cause)))
                woken += 1
        finally:
            del pending[:woken]

    # -- the streams' side ------------------------------------------------------------------

    @trio.lowlevel.enable_ki_protection
    async def _infer(self, stream: BatchedSileroModel, window: FloatArray) -> float:
        """Queue ``window`` and park until the batch (or the close) wakes this task.

        KI-protected, and everything that could raise comes before the window is
        queued: once queued, the task parks at once, so a batch never reschedules a
        task that is not waiting. A Ctrl-C still reaches a task parked here: trio
        delivers it through ``abort``, which withdraws the window.
        """
        if not self._running:
            raise BatcherClosedError("the SileroBatcher is not running: use `async with SileroBatcher(...)` "
                                     "or `await nursery.start(batcher.serve)` around the streams"
                                     if not self._closed else "the SileroBatcher has closed")
        if stream._slot != _IDLE:
            raise RuntimeError("a BatchedSileroModel takes one window at a time")
        if len(window) != self.window:
            raise ValueError(f"a window is {self.window} samples, got {len(window)}")
        pending = self._pending

        def abort(_: Any) -> trio.lowlevel.Abort:
            if stream._slot == _PENDING:  # not taken yet: withdraw it, the model never sees it
                pending.remove(stream)
                stream._slot, stream._task, stream._window = _IDLE, None, None
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED  # inside the running batch: woken with its result

        task, now = trio.lowlevel.current_task(), trio.current_time()
        if not pending or len(pending) + 1 >= self.max_batch:
            self._wake.set()  # the batcher's task runs only once this one has parked
        stream._task, stream._window, stream._slot, stream.at = task, window, _PENDING, now
        pending.append(stream)
        probability: float = await trio.lowlevel.wait_task_rescheduled(abort)
        return probability

    @trio.lowlevel.enable_ki_protection
    def _wake_stream(self, stream: BatchedSileroModel, result: outcome.Outcome[float]) -> None:
        """Hand ``result`` to the stream's parked task (KI-protected: both or neither)."""
        task = stream._task
        stream._slot, stream._task, stream._window = _IDLE, None, None
        assert task is not None
        trio.lowlevel.reschedule(task, result)

    # -- one batch ---------------------------------------------------------------------------

    def _arrays(self, n: int) -> tuple[Any, Any]:
        arrays = self._buffers.get(n)
        if arrays is None:
            arrays = self._buffers[n] = (
                np.zeros((n, self.context + self.window), dtype=np.float32),
                np.zeros((self.state_shape[0], n, self.state_shape[1]), dtype=np.float32))
        return arrays

    @trio.lowlevel.enable_ki_protection
    def _run_batch(self) -> None:
        """One model call for the oldest ``max_batch`` pending windows; wakes their streams.

        Synchronous from taking the windows to waking the streams: no other task runs
        in between, so none can withdraw a window of this batch. Its streams are
        marked running (their abort fails: only this function can wake them), so it
        must wake each exactly once whatever happens: every result (the output's
        shape checked, context, state, probability) is computed before the first
        wake-up, then a loop of assignments and reschedules hands them out; on any
        error, each stream not woken yet gets a :class:`BatcherClosedError` caused by
        it, and the error ends ``serve``. KI-protected, so a Ctrl-C cannot split it.
        """
        pending = self._pending
        batch = pending[:self.max_batch]
        del pending[:self.max_batch]
        n = len(batch)
        try:
            inp, state = self._arrays(n)
            ctx, win = self.context, self.window
            for j, stream in enumerate(batch):
                stream._slot = _RUNNING
                inp[j, :ctx] = stream._context
                inp[j, ctx:] = stream._window
                state[:, j, :] = stream._state
            out, new_state = self._session.run(None, {"input": inp, "state": state, "sr": self._sr})
            probabilities = np.asarray(out).reshape(-1).tolist()
            new_state = np.asarray(new_state)
            want = (self.state_shape[0], n, self.state_shape[1])
            if len(probabilities) != n or new_state.shape != want:
                raise RuntimeError(
                    f"the Silero model returned {len(probabilities)} probabilities and a state of shape "
                    f"{new_state.shape} for a batch of {n} windows (expected {n} and {want})")
            results = [(inp[j, win:].copy(), new_state[:, j, :], probabilities[j]) for j in range(n)]
            for stream, (context, next_state, probability) in zip(batch, results, strict=True):
                stream._context, stream._state = context, next_state
                self._wake_stream(stream, outcome.Value(probability))
        except BaseException as exc:
            for stream in batch:
                if stream._task is not None:  # not woken yet (a woken stream's task is None)
                    self._wake_stream(stream, outcome.Error(_closed_error(
                        f"the Silero model failed on a batch of {n} windows; the SileroBatcher closes", exc)))
            raise
        self.batches_run += 1
        self.windows_run += n
        self.largest_batch = max(self.largest_batch, n)


def _closed_error(message: str, cause: BaseException | None) -> BatcherClosedError:
    """A fresh exception per stream (one object raised in several tasks mixes tracebacks)."""
    error = BatcherClosedError(message if cause is None else f"{message} ({cause!r})")
    error.__cause__ = cause
    return error
