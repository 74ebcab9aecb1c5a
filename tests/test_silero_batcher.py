"""The opt-in Silero batcher (trio_playout.silero.SileroBatcher), in virtual time.

Batched streams must get exactly what they would get alone (the model's batch axis
keeps rows apart; measured bit-identical), within ``max_wait`` of handing a window
over, and a batch must run as soon as ``max_batch`` windows wait. Cancelling one
stream, or closing the batcher, must not lose or corrupt another stream's result
nor hang anyone. The interleavings are explored with Hypothesis on trio's
MockClock; no real-time sleeps, no wall-clock asserts.
"""

from __future__ import annotations

import functools
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


# -- exactly what each stream would get alone ----------------------------------------------------

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


async def test_max_batch_runs_at_once(mock_clock: trio.testing.MockClock) -> None:
    """The clock never moves (no autojump): a full batch must not wait for max_wait."""
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


async def test_max_wait_zero_serves_what_is_ready(mock_clock: trio.testing.MockClock) -> None:
    windows = _windows(5, 1)
    async with SileroBatcher(max_batch=8, max_wait=0.0) as batcher:
        t0 = trio.current_time()
        assert await batcher.model()(windows[0]) == _alone(windows)[0]
        assert trio.current_time() == t0


# -- cancellation ------------------------------------------------------------------------------

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


async def test_an_error_in_the_block_is_not_wrapped(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(KeyError):
        async with SileroBatcher():
            raise KeyError("mine")
    with trio.move_on_after(1.0) as outer:  # an outer cancel goes through the block as usual
        async with SileroBatcher() as batcher:
            await trio.sleep_forever()
    assert outer.cancelled_caught and not batcher.running


async def test_a_failing_model_fails_its_batch_and_closes(autojump_clock: trio.testing.MockClock) -> None:
    class Broken:
        def run(self, *args: Any) -> Any:
            raise RuntimeError("onnxruntime says no")

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

    async def main() -> None:
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

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
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
