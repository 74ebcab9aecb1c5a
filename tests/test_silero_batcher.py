"""The opt-in Silero batcher (trio_playout.silero.SileroBatcher), in virtual time.

Batched streams must get exactly what they would get alone (the model's batch axis
keeps rows apart; measured bit-identical), within ``max_wait`` of handing a window
over, and a batch must run as soon as ``max_batch`` windows wait. Cancelling one
stream, closing the batcher, a failing or lying model, or a KeyboardInterrupt must
not lose or corrupt another stream's result nor hang anyone. The interleavings are
explored with Hypothesis on trio's MockClock; no real-time sleeps, no wall-clock
asserts. Every trio run is bounded in virtual time (:func:`_no_hang`), so a deadlock
fails at once instead of hanging CI.
"""

from __future__ import annotations

import functools
import shutil
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

import outcome
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import event as note_event
from hypothesis import strategies as st

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")

import trio_playout as tp  # noqa: E402
from trio_playout._resample import StreamResampler, float_to_pcm16, pcm16_to_float_mono  # noqa: E402
from trio_playout.silero import (  # noqa: E402
    BatcherClosedError,
    ModelNotFoundError,
    SileroBatcher,
    SileroModel,
    SileroVAD,
    VoiceOptionsError,
    shared_session,
)
from trio_playout.testing import PacedAudio  # noqa: E402

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

T = tp.VADEventType
PHRASES = ["Hello there, I would like to book a table for two people tonight please.",
           "Stop, wait a second.", "Could you tell me what the weather will be like in Paris tomorrow?"]


@functools.cache
def _speech_16k() -> Any:
    """16 kHz float mono: the phrases (espeak-ng) each followed by 1 s of silence."""
    try:
        from trio_playout.espeak import EspeakTTS
        tts = EspeakTTS()
    except tp.PlayoutError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    parts = []
    for text in PHRASES:
        frame = tts.render_sync(text, sample_rate=16000)
        parts += [pcm16_to_float_mono(frame.data, 1), np.zeros(16000, np.float32)]
    return np.concatenate(parts).astype(np.float32)


def _windows(start: int, count: int, size: int = 512) -> list[Any]:
    """``count`` consecutive windows of the speech from window ``start`` (looped)."""
    signal = _speech_16k()
    total = len(signal) // size
    return [signal[((start + n) % total) * size:((start + n) % total + 1) * size] for n in range(count)]


def _alone(windows: list[Any], rate: int = 16000) -> list[float]:
    model = SileroModel(shared_session(), rate)
    return [model(w) for w in windows]


async def _frames(source: PacedAudio) -> AsyncIterator[tp.AudioFrame]:
    async for frame in source:
        yield frame


# -- no test hangs -------------------------------------------------------------------------------

DEADLINE = 120.0  # virtual seconds; the longest test runs about 24
P = ParamSpec("P")


async def _bounded(body: Callable[[], Awaitable[None]], seconds: float = DEADLINE) -> None:
    """``body()`` under ``trio.fail_after(seconds)``: with the autojump clock a deadlock jumps to
    the deadline and fails at once. A stream parked in a batch that never wakes it cannot be
    cancelled (its abort refuses: the batch owns it), so the deadline alone would still hang:
    :func:`_wake_stuck_streams` wakes such streams with an AssertionError just after it."""
    async with trio.open_nursery() as guard:
        guard.start_soon(_wake_stuck_streams, seconds + 1.0)
        with trio.fail_after(seconds):
            await body()
        guard.cancel_scope.cancel()


def _no_hang(test: Callable[P, Awaitable[None]]) -> Callable[P, Coroutine[Any, Any, None]]:
    """Decorator for the async tests: the test runs under :func:`_bounded`."""
    @functools.wraps(test)
    async def bounded(*args: P.args, **kwargs: P.kwargs) -> None:
        await _bounded(functools.partial(test, *args, **kwargs))
    return bounded


async def _wake_stuck_streams(after: float) -> None:
    """After ``after`` virtual seconds (reached only when every task waits: autojump), wake each
    task still parked in the batcher's ``_infer`` with an AssertionError, so the test fails."""
    await trio.sleep(after)
    root = trio.lowlevel.current_root_task()
    assert root is not None
    tasks, stuck = [root], []
    while tasks:
        task = tasks.pop()
        tasks += [child for nursery in task.child_nurseries for child in nursery.child_tasks]
        if any(frame.f_code is SileroBatcher._infer.__code__ for frame, _ in task.iter_await_frames()):
            stuck.append(task)
    for task in stuck:
        trio.lowlevel.reschedule(task, outcome.Error(AssertionError(
            f"{task.name} is stuck in the batcher: never woken, not even by the deadline's cancel")))


class Interrupt(BaseException):
    """Stands for a KeyboardInterrupt raised inside the batcher's bookkeeping (a real one that
    escaped would end the pytest session)."""


class Broken:
    def run(self, *args: Any) -> Any:
        raise RuntimeError("onnxruntime says no")


def _noise(count: int) -> list[Any]:
    """``count`` distinct 512-sample windows (speech windows can repeat: silence)."""
    return [np.random.default_rng(i).normal(0.0, 0.2, 512).astype(np.float32) for i in range(count)]


# -- exactly what each stream would get alone ----------------------------------------------------

@_no_hang
async def test_batched_equals_unbatched_over_real_speech(autojump_clock: trio.testing.MockClock) -> None:
    """Six streams, staggered starts (some inside one max_wait, some far apart), one at 48 kHz
    stereo: every event equals the unbatched VAD's, to the bit, and is decided within max_wait
    of the frame that completed its window."""
    speech = tp.AudioFrame(float_to_pcm16(_speech_16k()), 16000)
    stereo48 = tp.AudioFrame(float_to_pcm16(np.repeat(StreamResampler(16000, 48000).push(_speech_16k()), 2)),
                             48000, 2)
    plans = [(0.0, 0.3, speech), (0.0004, 0.0, speech), (0.0011, 0.7, speech), (0.013, 0.1, speech),
             (0.5, 0.0, speech), (0.0017, 0.2, stereo48)]  # (start delay, lead silence, audio)
    max_wait = 0.002

    async def run(vad: SileroVAD, delay: float, lead: float, audio: tp.AudioFrame,
                  out: list[tuple[float, tp.VADEvent]]) -> None:
        await trio.sleep(delay)
        t0 = trio.current_time()
        async for event in vad.stream(_frames(PacedAudio([(lead, audio)], then_silence=False))):
            out.append((trio.current_time() - t0, event))

    alone: list[list[tuple[float, tp.VADEvent]]] = [[] for _ in plans]
    async with trio.open_nursery() as nursery:
        for i, plan in enumerate(plans):
            nursery.start_soon(run, SileroVAD(), *plan, alone[i])
    batched: list[list[tuple[float, tp.VADEvent]]] = [[] for _ in plans]
    async with SileroBatcher(max_batch=4, max_wait=max_wait) as batcher, trio.open_nursery() as nursery:
        vad = SileroVAD(batcher=batcher)
        for i, plan in enumerate(plans):
            nursery.start_soon(run, vad, *plan, batched[i])

    for a, b in zip(alone, batched, strict=True):
        assert [e for _, e in b] == [e for _, e in a]  # probabilities, durations, timestamps: exact
        assert sum(e.type is not T.INFERENCE for _, e in a) >= 4  # real speech: starts and ends
        for (t_alone, _), (t_batched, _) in zip(a, b, strict=True):
            assert t_alone - 1e-9 <= t_batched <= t_alone + max_wait + 1e-9
    windows = sum(e.type is T.INFERENCE for per in alone for _, e in per)
    assert batcher.windows_run == windows
    assert batcher.largest_batch == 4 and batcher.windows_run >= 1.5 * batcher.batches_run  # it batched
    assert batcher.pending == 0 and not batcher.running


@_no_hang
async def test_8khz_batcher(autojump_clock: trio.testing.MockClock) -> None:
    windows = [w[::2].copy() for w in _windows(0, 60)]  # 256-sample windows
    ref = _alone(windows, 8000)
    got: list[list[float]] = [[], []]
    async with SileroBatcher(sample_rate=8000, max_batch=2) as batcher, trio.open_nursery() as nursery:
        assert (batcher.window, batcher.context) == (256, 32)
        for i in range(2):
            nursery.start_soon(_feed, batcher.model(), windows, got[i], 0.0)
    assert got == [ref, ref] and batcher.largest_batch == 2


async def _feed(model: Any, windows: list[Any], out: list[float], gap: float) -> None:
    for w in windows:
        out.append(await model(w))
        await trio.sleep(gap)


# -- timing: max_wait and max_batch ------------------------------------------------------------

@_no_hang
async def test_max_wait_is_honoured_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    windows = _windows(40, 3)
    ref = _alone(windows[:1])
    async with SileroBatcher(max_batch=16, max_wait=0.005) as batcher:
        m = batcher.model()
        t0 = trio.current_time()
        assert await m(windows[0]) == ref[0]
        assert trio.current_time() - t0 == pytest.approx(0.005, abs=1e-9)  # alone: the whole wait

        # Two windows, 3 ms apart: both served 5 ms after the first one arrived.
        done: dict[str, float] = {}

        async def late(model: Any, w: Any, name: str, delay: float) -> None:
            await trio.sleep(delay)
            await model(w)
            done[name] = trio.current_time()

        t1 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(late, batcher.model(), windows[1], "a", 0.0)
            nursery.start_soon(late, batcher.model(), windows[2], "b", 0.003)
        assert done["a"] == done["b"] == pytest.approx(t1 + 0.005, abs=1e-9)
        assert batcher.batches_run == 2 and batcher.largest_batch == 2


@_no_hang
async def test_max_batch_runs_at_once(autojump_clock: trio.testing.MockClock) -> None:
    """The clock must not move: a full batch must not wait for max_wait. (Autojump moves it only
    when every task waits, and the test's own wait_all_tasks_blocked comes first: a batch that
    waited would show in ``got`` and in the time.)"""
    windows = _windows(10, 3)
    ref = [_alone([w])[0] for w in windows]
    got: dict[int, float] = {}

    async def one(i: int, model: Any) -> None:
        got[i] = await model(windows[i])

    async with SileroBatcher(max_batch=3, max_wait=10.0) as batcher, trio.open_nursery() as nursery:
        t0 = trio.current_time()
        for i in range(2):
            nursery.start_soon(one, i, batcher.model())
        await trio.testing.wait_all_tasks_blocked()
        assert batcher.pending == 2 and got == {} and batcher.batches_run == 0
        nursery.start_soon(one, 2, batcher.model())
        await trio.testing.wait_all_tasks_blocked()
        assert got == dict(enumerate(ref))
        assert batcher.batches_run == 1 and batcher.largest_batch == 3 and batcher.pending == 0
        assert trio.current_time() == t0


@_no_hang
async def test_max_wait_zero_serves_what_is_ready(autojump_clock: trio.testing.MockClock) -> None:
    windows = _windows(5, 1)
    async with SileroBatcher(max_batch=8, max_wait=0.0) as batcher:
        t0 = trio.current_time()
        assert await batcher.model()(windows[0]) == _alone(windows)[0]
        assert trio.current_time() == t0


@_no_hang
async def test_the_oldest_windows_go_first(autojump_clock: trio.testing.MockClock) -> None:
    """Five windows arrive in one scheduling round, max_batch 2: the batches take them oldest
    first (2, 2, then the last one alone, max_wait after it arrived), each gets its own result."""
    windows = _noise(5)
    ref = [_alone([w])[0] for w in windows]
    arrived: list[int] = []  # queue order: a task queues its window right after appending here
    batches: list[list[int]] = []
    got: dict[int, float] = {}
    done: dict[int, float] = {}

    class Spy:
        def __init__(self, session: Any) -> None:
            self.session = session

        def run(self, names: Any, feeds: dict[str, Any]) -> Any:
            rows = feeds["input"][:, -512:]
            batches.append([next(i for i, w in enumerate(windows) if np.array_equal(w, row)) for row in rows])
            return self.session.run(names, feeds)

    async def one(i: int, model: Any) -> None:
        arrived.append(i)
        got[i] = await model(windows[i])
        done[i] = trio.current_time()

    async with SileroBatcher(max_batch=2, max_wait=1.0) as batcher, trio.open_nursery() as nursery:
        batcher._session = Spy(batcher._session)
        t0 = trio.current_time()
        for i in range(5):
            nursery.start_soon(one, i, batcher.model())
    assert batches == [arrived[0:2], arrived[2:4], arrived[4:]]
    assert got == dict(enumerate(ref))
    assert [done[i] - t0 for i in arrived] == [0.0, 0.0, 0.0, 0.0, pytest.approx(1.0)]


# -- cancellation ------------------------------------------------------------------------------

@_no_hang
async def test_cancelled_while_pending_is_withdrawn(autojump_clock: trio.testing.MockClock) -> None:
    """A cancelled window leaves the batch; the other stream gets its exact result; the cancelled
    stream's state is untouched (its next call gives what a fresh model gives)."""
    wa, wb = _windows(20, 1)[0], _windows(33, 1)[0]
    ref_a, ref_b = _alone([wa])[0], _alone([wb])[0]
    got: dict[str, float] = {}
    async with SileroBatcher(max_batch=3, max_wait=1.0) as batcher, trio.open_nursery() as nursery:
        a, b = batcher.model(), batcher.model()
        scope = trio.CancelScope()

        async def stream_a() -> None:
            with scope:
                got["a"] = await a(wa)

        async def stream_b() -> None:
            got["b"] = await b(wb)

        t0 = trio.current_time()
        nursery.start_soon(stream_a)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(stream_b)
        await trio.testing.wait_all_tasks_blocked()
        assert batcher.pending == 2
        scope.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert batcher.pending == 1 and scope.cancelled_caught and "a" not in got
    assert got == {"b": ref_b}
    assert trio.current_time() - t0 == pytest.approx(1.0)  # b's own wait, from when b arrived
    assert batcher.windows_run == 1
    async with SileroBatcher(max_batch=1) as again:  # the state of `a` did not move
        a._batcher = again
        assert await a(wa) == ref_a


@_no_hang
async def test_cancel_raised_inside_the_model_call_is_delivered_after_the_result(
        autojump_clock: trio.testing.MockClock) -> None:
    """A cancel that fires while the batch runs (here from a session hook) cannot take a window
    out of it: the stream gets its result and state, then the Cancelled at its next checkpoint."""
    wa, wb = _windows(50, 2), _windows(70, 1)[0]
    ref_a, ref_b = _alone(wa), _alone([wb])[0]
    scope = trio.CancelScope()

    class Hook:
        def __init__(self, session: Any) -> None:
            self.session = session

        def run(self, *args: Any) -> Any:
            scope.cancel()
            return self.session.run(*args)

    got: dict[str, Any] = {}
    async with SileroBatcher(max_batch=2, max_wait=1.0) as batcher, trio.open_nursery() as nursery:
        a, b = batcher.model(), batcher.model()
        batcher._session = Hook(batcher._session)

        async def stream_a() -> None:
            with scope:
                got["a"] = await a(wa[0])
                await trio.lowlevel.checkpoint()
                got["after"] = True

        async def stream_b() -> None:
            got["b"] = await b(wb)

        nursery.start_soon(stream_a)
        nursery.start_soon(stream_b)
    assert got == {"a": ref_a[0], "b": ref_b} and scope.cancelled_caught
    batcher2 = SileroBatcher(max_batch=1)
    async with batcher2:
        a._batcher = batcher2
        assert await a(wa[1]) == ref_a[1]  # the state moved on with the result


# -- closing -----------------------------------------------------------------------------------

@_no_hang
async def test_closing_fails_the_waiting_windows(autojump_clock: trio.testing.MockClock) -> None:
    windows = _windows(0, 3)
    errors: dict[int, BaseException] = {}

    async def one(i: int, model: Any) -> None:
        try:
            await model(windows[i])
        except BatcherClosedError as exc:
            errors[i] = exc

    async with trio.open_nursery() as nursery:
        async with SileroBatcher(max_batch=8, max_wait=10.0) as batcher:
            for i in range(3):
                nursery.start_soon(one, i, batcher.model())
            await trio.testing.wait_all_tasks_blocked()
            assert batcher.pending == 3
        t_closed = trio.current_time()
    assert sorted(errors) == [0, 1, 2] and trio.current_time() == t_closed  # at once, no hang
    assert len({id(e) for e in errors.values()}) == 3  # one exception object per stream
    assert all(isinstance(e, tp.PlayoutError) and "closed" in str(e) for e in errors.values())
    assert batcher.pending == 0 and not batcher.running and batcher.batches_run == 0
    with pytest.raises(BatcherClosedError, match="closed"):
        await batcher.model()(windows[0])  # after the close: at once
    with pytest.raises(BatcherClosedError, match="serves once"):
        async with batcher:
            pass


@_no_hang
async def test_a_vad_stream_sees_the_close(autojump_clock: trio.testing.MockClock) -> None:
    speech = tp.AudioFrame(float_to_pcm16(_speech_16k()), 16000)
    seen: list[tp.VADEvent] = []
    errors: list[BatcherClosedError] = []
    async with trio.open_nursery() as nursery, SileroBatcher() as batcher:
        vad = SileroVAD(batcher=batcher)

        async def listen() -> None:
            try:
                async for event in vad.stream(_frames(PacedAudio(speech))):
                    seen.append(event)
            except BatcherClosedError as exc:
                errors.append(exc)

        nursery.start_soon(listen)
        await trio.sleep(1.01)
    assert len(errors) == 1  # the error, not a hang
    assert 20 < len(seen) < 40  # 1 s of windows before it
    unbatched = [e async for e in SileroVAD().stream(_frames(PacedAudio(speech, duration=1.5)))]
    assert seen == unbatched[:len(seen)]


@_no_hang
async def test_not_running_yet_and_serve_form(autojump_clock: trio.testing.MockClock) -> None:
    batcher = SileroBatcher(max_batch=2, max_wait=0.001)
    window = _windows(3, 1)[0]
    with pytest.raises(BatcherClosedError, match="not running"):
        await batcher.model()(window)
    async with trio.open_nursery() as nursery:
        await nursery.start(batcher.serve)
        assert batcher.running
        with pytest.raises(RuntimeError, match="already running"):
            await batcher.serve()
        assert await batcher.model()(window) == _alone([window])[0]
        nursery.cancel_scope.cancel()
    assert not batcher.running


@_no_hang
async def test_an_error_in_the_block_is_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(KeyError):
        async with SileroBatcher():
            raise KeyError("mine")
    with trio.move_on_after(1.0) as outer:  # an outer cancel goes through the block as usual
        async with SileroBatcher() as batcher:
            await trio.sleep_forever()
    assert outer.cancelled_caught and not batcher.running


@_no_hang
async def test_a_failing_model_fails_its_batch_and_closes(autojump_clock: trio.testing.MockClock) -> None:
    errors: list[BaseException] = []
    batcher = SileroBatcher(max_batch=2, max_wait=0.001)
    batcher._session = Broken()

    async def one() -> None:
        try:
            await batcher.model()(_windows(0, 1)[0])
        except BatcherClosedError as exc:
            errors.append(exc)

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.serve)
            nursery.start_soon(one)
            nursery.start_soon(one)
    assert info.group_contains(RuntimeError, match="says no")
    assert len(errors) == 2 and all(isinstance(e.__cause__, RuntimeError) for e in errors)
    assert not batcher.running

    # The same inside `async with`: the block is cancelled, the model's error comes out.
    errors.clear()
    batcher = SileroBatcher(max_batch=1)
    with pytest.raises(BaseExceptionGroup) as info:
        async with batcher:
            batcher._session = Broken()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one)
                await trio.sleep_forever()
    assert info.group_contains(RuntimeError, match="says no") and len(errors) == 1


@_no_hang
async def test_waiters_outside_the_failing_batch_get_the_model_error_as_cause(
        autojump_clock: trio.testing.MockClock) -> None:
    """max_batch 1, three windows waiting: the first batch fails; its stream and the two still
    waiting all get a BatcherClosedError whose __cause__ is the model's own error."""
    batcher = SileroBatcher(max_batch=1, max_wait=1.0)
    batcher._session = Broken()
    arrived: list[int] = []
    errors: dict[int, BaseException] = {}

    async def one(i: int) -> None:
        arrived.append(i)
        try:
            await batcher.model()(_noise(1)[0])
        except BatcherClosedError as exc:
            errors[i] = exc

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.serve)
            for i in range(3):
                nursery.start_soon(one, i)
    failure = info.value.exceptions[0]
    assert isinstance(failure, RuntimeError) and len(info.value.exceptions) == 1
    assert sorted(errors) == [0, 1, 2]
    assert all(e.__cause__ is failure for e in errors.values())
    assert "failed on a batch of 1" in str(errors[arrived[0]])
    assert all("closed while" in str(errors[i]) for i in arrived[1:])
    assert not batcher.running and batcher.pending == 0 and batcher.batches_run == 0


@pytest.mark.parametrize("lie", ["rows", "state"])
@_no_hang
async def test_a_malformed_model_output_fails_the_whole_batch(
        autojump_clock: trio.testing.MockClock, lie: str) -> None:
    """A session that answers a batch of 2 with 1 probability, or with the state of 1 stream: no
    stream gets a result (not even the first), all get BatcherClosedError caused by the check,
    the batcher closes, nobody hangs."""
    class OneRow:
        def __init__(self, session: Any) -> None:
            self.session = session

        def run(self, names: Any, feeds: dict[str, Any]) -> Any:
            out, state = self.session.run(names, feeds)
            return (out[:1], state) if lie == "rows" else (out, state[:, :1])

    batcher = SileroBatcher(max_batch=2, max_wait=1.0)
    batcher._session = OneRow(batcher._session)
    models = [batcher.model(), batcher.model()]
    got: dict[int, Any] = {}

    async def one(i: int) -> None:
        try:
            got[i] = await models[i](_noise(2)[i])
        except BatcherClosedError as exc:
            got[i] = exc

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.serve)
            nursery.start_soon(one, 0)
            nursery.start_soon(one, 1)
    assert info.group_contains(RuntimeError, match="for a batch of 2 windows")
    assert sorted(got) == [0, 1] and all(isinstance(e, BatcherClosedError) for e in got.values())
    assert all(isinstance(e.__cause__, RuntimeError) for e in got.values())
    assert not batcher.running and batcher.batches_run == 0 and batcher.windows_run == 0
    assert all(not m._context.any() and not m._state.any() for m in models)  # untouched


@_no_hang
async def test_a_block_error_after_the_model_failed_comes_out_with_it(
        autojump_clock: trio.testing.MockClock) -> None:
    """The block catches the stream's BatcherClosedError and raises its own error (a bug in the
    handler, or a Ctrl-C there): both that error and the model's failure come out, as a plain
    nursery reports them (neither is lost)."""
    for error in (KeyError("mine"), Interrupt("ctrl-c")):
        with pytest.raises(BaseExceptionGroup) as info:
            async with SileroBatcher(max_batch=1) as batcher:
                batcher._session = Broken()
                try:
                    await batcher.model()(_noise(1)[0])
                except BatcherClosedError:
                    raise error from None
        assert info.group_contains(RuntimeError, match="says no")
        assert info.group_contains(type(error), match=str(error.args[0]))
        assert not batcher.running


@_no_hang
async def test_a_stopping_batcher_runs_no_more_batches(autojump_clock: trio.testing.MockClock) -> None:
    """The block raises just as a batch became due and the batcher's task was woken (as when a
    window completes a batch): once cancelled, the batcher does not run it (the model would
    fail here, and its error would replace the block's); the window gets BatcherClosedError
    and the block's own error comes out unwrapped."""
    errors: list[BaseException] = []

    async def one(model: Any) -> None:
        try:
            await model(_noise(1)[0])
        except BatcherClosedError as exc:
            errors.append(exc)

    async with trio.open_nursery() as outer:
        with pytest.raises(KeyError):
            async with SileroBatcher(max_batch=2, max_wait=10.0) as batcher:
                batcher._session = Broken()
                outer.start_soon(one, batcher.model())
                await trio.testing.wait_all_tasks_blocked()
                assert batcher.pending == 1
                batcher.max_batch = 1  # a batch is due now ...
                batcher._wake.set()  # ... and the batcher's task woken, not run yet
                raise KeyError("mine")
    assert len(errors) == 1 and errors[0].__cause__ is None and "closed while" in str(errors[0])
    assert batcher.batches_run == 0 and not batcher.running


# -- options -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"max_batch": 0}, {"max_batch": -3}, {"max_batch": 1.5}, {"max_batch": True}, {"max_batch": "16"},
    {"max_wait": -0.001}, {"max_wait": float("nan")}, {"max_wait": float("inf")}, {"max_wait": "2ms"},
    {"sample_rate": 44100},
])
def test_bad_batcher_options(kwargs: dict[str, Any]) -> None:
    with pytest.raises(VoiceOptionsError) as info:
        SileroBatcher(**kwargs)
    assert isinstance(info.value, ValueError) and next(iter(kwargs)) in str(info.value)


def test_missing_model_for_the_batcher() -> None:
    with pytest.raises(ModelNotFoundError):
        SileroBatcher(model_path="/nonexistent/silero_vad.onnx")


def test_vad_and_batcher_must_agree(tmp_path: Path) -> None:
    batcher = SileroBatcher()
    with pytest.raises(VoiceOptionsError, match="8000"):
        SileroVAD(sample_rate=8000, batcher=batcher)
    with pytest.raises(VoiceOptionsError, match="exclude"):
        SileroVAD(share_session=False, batcher=batcher)
    with pytest.raises(VoiceOptionsError, match="SileroBatcher"):
        SileroVAD(batcher="yes")  # type: ignore[arg-type]
    copy = tmp_path / "silero_vad.onnx"
    shutil.copy(batcher.model_path, copy)
    with pytest.raises(VoiceOptionsError, match="model file"):
        SileroVAD(batcher=batcher, model_path=copy)
    other = SileroBatcher(model_path=copy)
    assert SileroVAD(model_path=copy, batcher=other).batcher is other
    vad = SileroVAD(batcher=batcher, model_path=batcher.model_path)
    assert vad._session is batcher._session is shared_session()
    assert SileroVAD().batcher is None


# -- KeyboardInterrupt -------------------------------------------------------------------------

@_no_hang
async def test_the_bookkeeping_is_ki_protected(autojump_clock: trio.testing.MockClock) -> None:
    """A KeyboardInterrupt raised between two steps of the bookkeeping would leave a window queued
    by a task that is not parked, or streams marked as in a batch that never wakes them (a
    TrioInternalError later, or a hang). Like trio's own primitives, the batcher's are
    KeyboardInterrupt-protected (a Ctrl-C is then delivered at a checkpoint, see
    test_ctrl_c_reaches_a_stream_waiting_for_its_window). Each is called here straight from the
    test's own, unprotected, code, and the first thing it calls notes what trio thinks and stops
    it: each True comes from that function itself, not from a protected caller (serve calls
    _run_batch and _close)."""
    assert not trio.lowlevel.currently_ki_protected()
    seen: dict[str, bool] = {}

    class Noted(Exception):
        """Stops the function once its protection is noted."""

    def note(where: str) -> Any:
        seen[where] = trio.lowlevel.currently_ki_protected()
        raise Noted

    class Status:
        def started(self, value: object = None) -> None:
            note("serve")

    class WakeSpy:  # notes, then wakes the batcher's task (the window runs)
        def __init__(self, event: trio.Event) -> None:
            self.event = event

        def set(self) -> None:
            seen["_infer"] = trio.lowlevel.currently_ki_protected()
            self.event.set()

    class StreamSpy:  # stands for a stream: _wake_stream reads its task first
        @property
        def _task(self) -> Any:
            return note("_wake_stream")

    with pytest.raises(Noted):
        await SileroBatcher().serve(task_status=Status())

    async with SileroBatcher() as running:
        await trio.testing.wait_all_tasks_blocked()  # its task waits on its current event
        running._wake = WakeSpy(running._wake)  # type: ignore[assignment]
        assert await running.model()(_noise(1)[0]) == _alone(_noise(1))[0]

    batcher = SileroBatcher()
    batcher._arrays = lambda n: note("_run_batch")  # type: ignore[method-assign]
    with pytest.raises(Noted):
        batcher._run_batch()
    batcher._pending.append(batcher.model())
    batcher._wake_stream = lambda stream, result: note("_close")  # type: ignore[method-assign]
    with pytest.raises(Noted):
        batcher._close(None)
    with pytest.raises(Noted):
        SileroBatcher._wake_stream(batcher, StreamSpy(), outcome.Value(0.0))  # type: ignore[arg-type]
    assert seen == dict.fromkeys(["serve", "_infer", "_run_batch", "_close", "_wake_stream"], True)


@_no_hang
async def test_an_error_while_queueing_leaves_nothing_queued(autojump_clock: trio.testing.MockClock) -> None:
    """Where a Ctrl-C could land before the protection (probe: waking the batcher's task raises):
    the window is not left queued for a task that went on elsewhere (a later batch would then
    reschedule a task that is not waiting: TrioInternalError). The stream stays usable."""
    window = _noise(1)[0]

    class Boom:
        def set(self) -> None:
            raise Interrupt

    async with SileroBatcher(max_batch=4, max_wait=0.001) as batcher:
        model = batcher.model()
        real, batcher._wake = batcher._wake, Boom()  # type: ignore[assignment]
        with pytest.raises(Interrupt):
            await model(window)
        batcher._wake = real
        assert batcher.pending == 0 and model._slot == 0 and model._task is None
        await trio.sleep(0.01)  # the batcher's deadline passes with nothing to do
        assert batcher.batches_run == 0
        assert await model(window) == _alone([window])[0]


@_no_hang
async def test_an_error_while_handing_results_out_fails_the_rest_once(
        autojump_clock: trio.testing.MockClock) -> None:
    """The second wake-up of a batch of three raises: the first stream keeps its result, the
    other two get BatcherClosedError caused by it, each stream is woken exactly once, the
    batcher closes, nobody hangs."""
    windows = _noise(3)
    woken: list[tuple[int, str]] = []
    batcher = SileroBatcher(max_batch=3, max_wait=1.0)
    models = [batcher.model() for _ in windows]
    real_wake_stream = batcher._wake_stream

    def wake_stream(stream: Any, result: Any) -> None:
        woken.append((models.index(stream), type(result).__name__))
        if len(woken) == 2:
            raise Interrupt("while handing out")
        real_wake_stream(stream, result)

    batcher._wake_stream = wake_stream  # type: ignore[method-assign]
    got: dict[int, Any] = {}

    async def one(i: int) -> None:
        try:
            got[i] = await models[i](windows[i])
        except BatcherClosedError as exc:
            got[i] = exc

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(batcher.serve)
            for i in range(3):
                nursery.start_soon(one, i)
    assert info.group_contains(Interrupt)
    first, second = woken[0][0], woken[1][0]
    assert got[first] == _alone([windows[first]])[0]
    closed = [i for i in range(3) if i != first]
    assert all(isinstance(got[i], BatcherClosedError) for i in closed)
    assert all(isinstance(got[i].__cause__, Interrupt) for i in closed)
    # the raising wake-up did not wake `second`: it and the third get the error, each once
    assert woken[:2] == [(first, "Value"), (second, "Value")] and second in closed
    assert sorted(woken[2:]) == [(i, "Error") for i in closed]
    assert not batcher.running and batcher.pending == 0


@_no_hang
async def test_an_error_while_closing_leaves_the_rest_withdrawable(
        autojump_clock: trio.testing.MockClock) -> None:
    """The second wake-up of the close raises: the streams not woken yet stay queued and
    withdrawable (a cancel takes them out), rather than in no list with their abort failing
    (TrioInternalError)."""
    woken: list[int] = []
    batcher = SileroBatcher(max_batch=8, max_wait=10.0)
    real_wake_stream = batcher._wake_stream

    def wake_stream(stream: Any, result: Any) -> None:
        woken.append(1)
        if len(woken) == 2:
            raise Interrupt("while closing")
        real_wake_stream(stream, result)

    batcher._wake_stream = wake_stream  # type: ignore[method-assign]
    serving = trio.CancelScope()
    closed: list[BaseException] = []

    async def serve(task_status: trio.TaskStatus[None]) -> None:
        with serving:
            await batcher.serve(task_status=task_status)

    async def one() -> None:
        try:
            await batcher.model()(_noise(1)[0])
        except BatcherClosedError as exc:
            closed.append(exc)

    with pytest.raises(BaseExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(serve)
            for _ in range(3):
                nursery.start_soon(one)
            await trio.testing.wait_all_tasks_blocked()
            serving.cancel()
    assert info.group_contains(Interrupt) and not info.group_contains(trio.TrioInternalError)
    assert len(closed) == 1 and batcher.pending == 0 and not batcher.running


def test_ctrl_c_reaches_a_stream_waiting_for_its_window() -> None:
    """A real SIGINT while a stream waits for its window (parked in the KI-protected ``_infer``):
    trio defers it (it arrives in protected code, as while trio waits for I/O) and delivers it
    to the main task, which is parked in the batcher: the window is withdrawn (the model never
    sees it) and the KeyboardInterrupt comes out of trio.run as it is, the batcher closed."""
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("trio handles SIGINT only in the main thread with the default handler")
    batcher = SileroBatcher(max_batch=8, max_wait=10.0)
    waited: list[float] = []

    @trio.lowlevel.enable_ki_protection
    def ctrl_c() -> None:
        signal.raise_signal(signal.SIGINT)

    async def press_ctrl_c() -> None:
        await trio.sleep(0.5)
        ctrl_c()

    async def main() -> None:
        trio.lowlevel.spawn_system_task(press_ctrl_c)  # not in a nursery of ours: no group around the KI
        with trio.fail_after(DEADLINE):
            async with batcher:
                t0 = trio.current_time()
                try:
                    await batcher.model()(_noise(1)[0])
                finally:
                    waited.append(trio.current_time() - t0)

    with pytest.raises(KeyboardInterrupt):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert waited == [0.5]
    assert batcher.windows_run == 0 and batcher.pending == 0 and not batcher.running


# -- random interleavings ----------------------------------------------------------------------

STEP = 0.00025  # the random schedules' time unit (s)
streams = st.lists(st.tuples(
    st.integers(0, 16),  # start delay, in STEPs
    st.integers(1, 8),  # windows
    st.integers(0, 12),  # gap between windows, in STEPs
    st.one_of(st.none(), st.none(), st.integers(0, 80)),  # cancelled after, in STEPs
    st.integers(0, 200),  # where in the speech it starts
), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams, st.integers(1, 4), st.sampled_from([0.0, 0.001, 0.002, 0.005]),
       st.one_of(st.none(), st.none(), st.integers(0, 80)))
def test_random_interleavings_keep_every_result(
        plans: list[tuple[int, int, int, int | None, int]], max_batch: int, max_wait: float,
        close_at: int | None) -> None:
    """Streams start, hand windows over, get cancelled and the batcher closes at random times.
    Every result delivered is the unbatched one (a prefix of each stream's), within max_wait
    of its hand-over; nothing is delivered twice or lost; nobody hangs."""
    step = STEP
    inputs = [_windows(where, count) for _, count, _, _, where in plans]
    refs = [_alone(w) for w in inputs]
    got: list[list[float]] = [[] for _ in plans]
    waits: list[float] = []
    closed: list[int] = []

    async def stream(i: int, batcher: SileroBatcher) -> None:
        delay, _, gap, cancel_after, _ = plans[i]
        model = batcher.model()
        with trio.move_on_after(cancel_after * step if cancel_after is not None else float("inf")):
            await trio.sleep(delay * step)
            try:
                for w in inputs[i]:
                    t = trio.current_time()
                    got[i].append(await model(w))
                    waits.append(trio.current_time() - t)
                    await trio.sleep(gap * step)
            except BatcherClosedError:
                closed.append(i)

    async def body() -> None:
        batcher = SileroBatcher(max_batch=max_batch, max_wait=max_wait)
        serving = trio.CancelScope()  # the batcher's alone: the streams outlive it

        async def serve(task_status: trio.TaskStatus[None]) -> None:
            with serving:
                await batcher.serve(task_status=task_status)

        async with trio.open_nursery() as outer:
            await outer.start(serve)
            if close_at is not None:
                outer.start_soon(_close_later, serving, close_at * step)
            async with trio.open_nursery() as nursery:
                for i in range(len(plans)):
                    nursery.start_soon(stream, i, batcher)
            outer.cancel_scope.cancel()
        assert batcher.pending == 0 and not batcher.running
        assert batcher.windows_run == sum(len(g) for g in got)
        note_event(f"largest batch {batcher.largest_batch}")

    trio.run(_bounded, body, clock=trio.testing.MockClock(autojump_threshold=0))
    for i, (g, ref) in enumerate(zip(got, refs, strict=True)):
        assert g == ref[:len(g)]
        if len(g) < len(ref):
            note_event("a stream closed" if i in closed else "a stream cancelled before its last window")
        if plans[i][3] is None and i not in closed:
            assert len(g) == len(ref)
    assert all(w <= max_wait + 1e-9 for w in waits)
    if close_at is None:
        assert closed == []


async def _close_later(scope: trio.CancelScope, delay: float) -> None:
    await trio.sleep(delay)
    scope.cancel()
