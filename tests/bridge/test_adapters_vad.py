"""``bridge.vad``: livekit's own Silero plugin (livekit-plugins-silero) as a trio_playout VAD.

Real parts only: the livekit plugin's model and stream code on the bridge loop, fed
with espeak-ng speech (trio_playout.espeak, a test-only GPL extra) placed in silence at
a known time. The plugin runs its inference in the loop's default executor (a
thread), so these tests run on trio's real clock: a MockClock with autojump would
jump while the thread works. Nothing waits on the clock for synchronisation; frames
are pushed as fast as the stream takes them, and times are the plugin's audio times.

Measured here (espeak en-us at 16 kHz, 1 s of leading silence): START_OF_SPEECH
0.12 s after the speech onset, END_OF_SPEECH 0.64 s after its end (livekit's
defaults: min_speech_duration 0.05, min_silence_duration 0.55).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import pytest
import trio
import trio.testing

pytest.importorskip("livekit.plugins.silero")
np = pytest.importorskip("numpy")

from livekit.agents import vad as lk_vad  # noqa: E402
from livekit.plugins import silero  # noqa: E402

import bridge  # noqa: E402
import trio_playout as tp  # noqa: E402

T = tp.VADEventType
RATE = 16000
LEAD = 1.0
TAIL = 1.5
PHRASE = "Hello there, I would like to book a table for two people tonight please."


@pytest.fixture(scope="module")
def speech() -> tp.AudioFrame:
    try:
        from trio_playout.espeak import EspeakTTS
        tts = EspeakTTS()
    except tp.PlayoutError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    frame: tp.AudioFrame = tts.render_sync(PHRASE, sample_rate=RATE)
    return frame


@pytest.fixture(scope="module")
def lk_silero() -> Any:
    return silero.VAD.load()


def _audible(frame: tp.AudioFrame) -> tuple[float, float]:
    """Seconds of the first and just after the last sample above 1% of full scale."""
    x = np.abs(np.frombuffer(frame.data, dtype="<i2").astype(np.float32) / 32768.0)
    idx = np.nonzero(x > 0.01)[0]
    return float(idx[0] / frame.sample_rate), float((idx[-1] + 1) / frame.sample_rate)


def _timeline(speech: tp.AudioFrame) -> bytes:
    return (tp.AudioFrame.silence(LEAD, sample_rate=RATE).data + speech.data
            + tp.AudioFrame.silence(TAIL, sample_rate=RATE).data)


async def _frames(pcm: bytes, *, then_silence: bool = False,
                  frame_ms: int = 20) -> AsyncIterator[tp.AudioFrame]:
    n = 2 * RATE * frame_ms // 1000
    for i in range(0, len(pcm), n):
        await trio.lowlevel.checkpoint()
        yield tp.AudioFrame(pcm[i:i + n], RATE)
    while then_silence:  # a live microphone after the speech: never ends by itself
        await trio.lowlevel.checkpoint()
        yield tp.AudioFrame.silence(frame_ms / 1000, sample_rate=RATE)


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every livekit ``VADStream.aclose()`` call, by stream (a spy: the real method runs)."""
    calls: list[Any] = []
    real: Callable[[Any], Any] = lk_vad.VADStream.aclose

    async def counting(self: Any) -> None:
        calls.append(self)
        await real(self)

    monkeypatch.setattr(lk_vad.VADStream, "aclose", counting)
    return calls


def _pending(loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks(loop) if not t.done()]


async def test_speech_start_and_end_near_the_known_onset(
        speech: tp.AudioFrame, lk_silero: Any, closes: list[Any]) -> None:
    onset, offset = _audible(speech)
    with trio.fail_after(60):  # a safety net only
        async with bridge.open_loop() as loop:
            vad = bridge.vad(lk_silero)
            assert isinstance(vad, tp.VAD)
            events = [e async for e in vad.stream(_frames(_timeline(speech)))]
            assert _pending(loop) == []
    marks = [e for e in events if e.type is not T.INFERENCE]
    assert [e.type for e in marks] == [T.START_OF_SPEECH, T.END_OF_SPEECH]
    start, end = marks
    assert LEAD + onset + 0.03 <= start.timestamp <= LEAD + onset + 0.30, start
    assert LEAD + offset + 0.45 <= end.timestamp <= LEAD + offset + 0.85, end
    assert end.speech_duration == pytest.approx(end.timestamp - end.silence_duration - start.timestamp
                                                + start.speech_duration, abs=0.1)
    inference = [e for e in events if e.type is T.INFERENCE]
    # one event per 32 ms window of the whole timeline, audio times increasing
    assert len(inference) == pytest.approx((LEAD + speech.duration + TAIL) / 0.032, abs=2)
    assert all(b.timestamp > a.timestamp for a, b in itertools.pairwise(inference))
    assert max(e.probability for e in inference) > 0.9
    assert len(closes) == 1  # the stream ended with its input; closed once


async def test_closing_mid_stream_closes_the_plugin_stream_once(
        speech: tp.AudioFrame, lk_silero: Any, closes: list[Any]) -> None:
    """The consumer leaves after START_OF_SPEECH while the microphone goes on forever."""
    with trio.fail_after(60):
        async with bridge.open_loop() as loop:
            vad = bridge.vad(lk_silero)
            async with aclosing(vad.stream(_frames(_timeline(speech), then_silence=True))) as stream:
                async for event in stream:
                    if event.type is T.START_OF_SPEECH:
                        break
            assert len(closes) == 1
            assert _pending(loop) == []
            # the feeder stopped too: nothing pushes into the closed stream afterwards
            await trio.testing.wait_all_tasks_blocked()
            assert len(closes) == 1


async def test_cancelling_the_consumer_closes_the_plugin_stream_once(
        speech: tp.AudioFrame, lk_silero: Any, closes: list[Any]) -> None:
    got: list[tp.VADEvent] = []
    with trio.fail_after(60):
        async with bridge.open_loop() as loop:
            vad = bridge.vad(lk_silero)
            with trio.CancelScope() as scope:
                async for event in vad.stream(_frames(_timeline(speech), then_silence=True)):
                    got.append(event)
                    if event.type is T.START_OF_SPEECH:
                        scope.cancel()
            assert scope.cancelled_caught
            assert len(closes) == 1
            assert _pending(loop) == []
    assert got[-1].type is T.START_OF_SPEECH


async def test_an_error_of_the_audio_input_comes_out_as_is(lk_silero: Any, closes: list[Any]) -> None:
    class MicrophoneUnplugged(Exception):
        pass

    async def broken() -> AsyncIterator[tp.AudioFrame]:
        for _ in range(20):
            await trio.lowlevel.checkpoint()
            yield tp.AudioFrame.silence(0.02, sample_rate=RATE)
        raise MicrophoneUnplugged

    with trio.fail_after(60):
        async with bridge.open_loop() as loop:
            with pytest.raises(MicrophoneUnplugged):
                async for _ in bridge.vad(lk_silero).stream(broken()):
                    pass
            assert len(closes) == 1
            assert _pending(loop) == []


def test_vad_refuses_what_is_not_a_livekit_vad() -> None:
    with pytest.raises(TypeError, match=r"livekit vad\.VAD"):
        bridge.vad(object())  # type: ignore[arg-type]


async def test_livekit_silero_barges_in_on_a_trio_native_session(lk_silero: Any, closes: list[Any]) -> None:
    """The user talks over the agent: livekit's VAD, adapted, interrupts the reply.

    Real clock (see the module docstring): the microphone is paced in real time for
    about 3 s. Assertions are on order and cause, not on wall-clock durations.
    """
    from trio_playout.espeak import EspeakTTS
    from trio_playout.testing import FakeTTS, PacedAudio, ScriptedLLM

    user = EspeakTTS().render_sync("Stop, wait a second.", sample_rate=RATE)
    onset, _ = _audible(user)
    lead = 0.6
    sink = tp.RealtimeAudioSink()
    text = "one two three four five six seven eight nine ten eleven twelve."
    events: list[tuple[float, tp.SessionEvent]] = []
    user_done = trio.Event()
    with trio.fail_after(60):
        async with bridge.open_loop() as loop, trio.open_nursery() as nursery:
            async with tp.open_session(
                llm=ScriptedLLM([]), tts=FakeTTS(), output=sink,
                audio_input=PacedAudio([(lead, user)], duration=lead + user.duration + 1.0),
                vad=bridge.vad(lk_silero),
                turn=tp.TurnOptions(false_interruption_timeout=None),  # barge-in interrupts
            ) as session:
                t0 = trio.current_time()  # the microphone's clock starts with the session

                async def record(task_status: trio.TaskStatus[None]) -> None:
                    async with session.subscribe(buffer=10_000) as stream:
                        task_status.started()
                        async for event in stream:
                            events.append((trio.current_time() - t0, event))
                            if isinstance(event, tp.UserStateChanged) and event.new == "listening":
                                user_done.set()

                await nursery.start(record)
                speech = session.say(text)
                await speech
                assert speech.interrupted and speech.interrupt_source == "audio_activity"
                stopped_at = trio.current_time() - t0
                await user_done.wait()  # the VAD's end of speech
            assert _pending(loop) == []
    users = [(t, e.new) for t, e in events if isinstance(e, tp.UserStateChanged)]
    assert [state for _, state in users] == ["speaking", "listening"]
    # cause before effect: the VAD heard the speech after it was played into the
    # microphone, and the reply was stopped after 0.5 s of it (min_interruption_duration)
    assert users[0][0] >= lead + onset
    assert stopped_at >= lead + onset + 0.5
    heard = session.history[-1]
    assert isinstance(heard, tp.ChatMessage) and heard.interrupted
    assert text.startswith(heard.text) and 0 < len(heard.text) < len(text)
    assert len(closes) == 1  # the session closed the VAD stream once


def test_under_bridge_run(speech: tp.AudioFrame, lk_silero: Any) -> None:
    """The other trio-first host: ``bridge.run(main)`` instead of ``open_loop``."""

    async def main() -> list[tp.VADEventType]:
        vad = bridge.vad(lk_silero)
        return [e.type async for e in vad.stream(_frames(_timeline(speech))) if e.type is not T.INFERENCE]

    assert bridge.run(main) == [T.START_OF_SPEECH, T.END_OF_SPEECH]


async def test_outside_a_bridge_loop_the_adapter_says_so(lk_silero: Any) -> None:
    with pytest.raises(bridge.NotInstalledError):
        async for _ in bridge.vad(lk_silero).stream(_frames(b"\0\0" * 320)):
            pass
