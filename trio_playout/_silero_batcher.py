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
stream got its result.
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

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the batches until cancelled; then fail the windows still waiting and close."""
        self._check_can_start()
        self._running = True
        cause: BaseException | None = None
        try:
            task_status.started()
            pending = self._pending
            while True:
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
                cause = exc
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
        # A Cancelled may belong to our nursery's scope (the serve task failed): the
        # nursery must see it. Any other error of the block is re-raised as it is,
        # not wrapped in an ExceptionGroup.
        cancelled = isinstance(exc, trio.Cancelled) or (
            isinstance(exc, BaseExceptionGroup) and exc.split(trio.Cancelled)[0] is not None)
        if cancelled:
            return bool(await cm.__aexit__(etype, exc, tb))
        await cm.__aexit__(None, None, None)
        return False

    def _close(self, cause: BaseException | None) -> None:
        self._running = False
        self._closed = True
        waiting, self._pending[:] = list(self._pending), []
        for stream in waiting:
            self._wake_stream(stream, outcome.Error(_closed_error(
                "the SileroBatcher closed while this stream's window was waiting", cause)))

    # -- the streams' side ------------------------------------------------------------------

    async def _infer(self, stream: BatchedSileroModel, window: FloatArray) -> float:
        if not self._running:
            raise BatcherClosedError("the SileroBatcher is not running: use `async with SileroBatcher(...)` "
                                     "or `await nursery.start(batcher.serve)` around the streams"
                                     if not self._closed else "the SileroBatcher has closed")
        if stream._slot != _IDLE:
            raise RuntimeError("a BatchedSileroModel takes one window at a time")
        if len(window) != self.window:
            raise ValueError(f"a window is {self.window} samples, got {len(window)}")
        stream._task = trio.lowlevel.current_task()
        stream._window = window
        stream._slot = _PENDING
        stream.at = trio.current_time()
        pending = self._pending
        pending.append(stream)
        if len(pending) == 1 or len(pending) >= self.max_batch:
            self._wake.set()

        def abort(_: Any) -> trio.lowlevel.Abort:
            if stream._slot == _PENDING:  # not taken yet: withdraw it, the model never sees it
                pending.remove(stream)
                stream._slot, stream._task, stream._window = _IDLE, None, None
                return trio.lowlevel.Abort.SUCCEEDED
            return trio.lowlevel.Abort.FAILED  # inside the running batch: woken with its result

        probability: float = await trio.lowlevel.wait_task_rescheduled(abort)
        return probability

    def _wake_stream(self, stream: BatchedSileroModel, result: outcome.Outcome[float]) -> None:
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

    def _run_batch(self) -> None:
        """One model call for the oldest ``max_batch`` pending windows; wakes their streams.

        Synchronous from taking the windows to waking the streams: no other task runs
        in between, so none can withdraw a window of this batch.
        """
        batch = self._pending[:self.max_batch]
        del self._pending[:self.max_batch]
        n = len(batch)
        inp, state = self._arrays(n)
        ctx = self.context
        for j, stream in enumerate(batch):
            stream._slot = _RUNNING
            inp[j, :ctx] = stream._context
            inp[j, ctx:] = stream._window
            state[:, j, :] = stream._state
        try:
            out, new_state = self._session.run(None, {"input": inp, "state": state, "sr": self._sr})
            probabilities = out.reshape(-1).tolist()
        except BaseException as exc:
            for stream in batch:
                self._wake_stream(stream, outcome.Error(_closed_error(
                    f"the Silero model failed on a batch of {n} windows; the SileroBatcher closes", exc)))
            raise
        win = self.window
        for j, stream in enumerate(batch):
            stream._context = inp[j, win:].copy()
            stream._state = new_state[:, j, :]
            self._wake_stream(stream, outcome.Value(probabilities[j]))
        self.batches_run += 1
        self.windows_run += n
        self.largest_batch = max(self.largest_batch, n)


def _closed_error(message: str, cause: BaseException | None) -> BatcherClosedError:
    """A fresh exception per stream (one object raised in several tasks mixes tracebacks)."""
    error = BatcherClosedError(message if cause is None else f"{message} ({cause!r})")
    error.__cause__ = cause
    return error
