"""``bridge.vad``: livekit's own Silero plugin (livekit-plugins-silero) as a trio_playout VAD.

Real parts only: the livekit plugin's model and stream code on the bridge loop, fed
with espeak-ng speech (trio_playout.espeak, a test-only GPL extra) placed in silence at
a known time. The plugin runs its inference in the loop's default executor (a
thread), so the stream tests run on trio's real clock: a MockClock with autojump would
jump while the thread works. Nothing waits on the clock for synchronisation; frames
are pushed as fast as the stream takes them, and times are the plugin's audio times.
The session tests of the voiced time run in virtual time instead, with an executor
that runs the plugin's inference inline (``_InlineExecutor``).

Voiced time (``bridge.vad`` recomputes livekit's durations, see
``bridge._adapters.VoicedTime``), measured here on espeak's "Hmm." (0.33 s audible):
livekit's INFERENCE speech_duration reaches 0.90 s before its END_OF_SPEECH (0.32 s);
the adapter reports at most 0.32 s, and its silence run grows from the last voiced
window (0.03 s, 0.06 s, ...) where livekit's stays 0.

Measured here (espeak en-us at 16 kHz, 1 s of leading silence): START_OF_SPEECH
0.12 s after the speech onset, END_OF_SPEECH 0.64 s after its end (livekit's
defaults: min_speech_duration 0.05, min_silence_duration 0.55).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
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
import bridge._adapters as bridge_adapters  # noqa: E402
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


# -- voiced time: trio_playout's meaning of speech_duration and silence_duration --------------


class _InlineExecutor(concurrent.futures.Executor):
    """The loop's default executor, running each call there and then, on the trio thread.

    livekit's Silero runs every window's inference through ``run_in_executor(None,
    ...)``, in a worker thread; under ``autojump_clock`` the clock would jump while the
    thread computes, and the VAD would lag the microphone by arbitrary virtual time.
    With this executor a whole conversation runs deterministically in virtual time. The
    plugin's model and stream code are unchanged; the bridge loop wraps a foreign
    executor's future as stock asyncio does.
    """

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:
            future.set_exception(exc)
        return future


@pytest.fixture(scope="module")
def hmm() -> tp.AudioFrame:
    try:
        from trio_playout.espeak import EspeakTTS
        tts = EspeakTTS()
    except tp.PlayoutError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    frame: tp.AudioFrame = tts.render_sync("Hmm.", sample_rate=RATE)
    onset, offset = _audible(frame)
    assert 0.25 <= offset - onset <= 0.4  # a 0.3 s "hmm", under min_interruption_duration
    return frame


@pytest.fixture
def raw_events(monkeypatch: pytest.MonkeyPatch) -> list[tuple[lk_vad.VADEvent, list[tp.VADEvent]]]:
    """Every livekit event the adapter converts, with what it made of it (a spy: the
    real conversion runs)."""
    seen: list[tuple[lk_vad.VADEvent, list[tp.VADEvent]]] = []
    real = bridge_adapters.VoicedTime.convert

    def spying(self: bridge_adapters.VoicedTime, event: lk_vad.VADEvent) -> list[tp.VADEvent]:
        out = list(real(self, event))
        seen.append((event, out))
        return out

    monkeypatch.setattr(bridge_adapters.VoicedTime, "convert", spying)
    return seen


async def test_a_short_hmm_reports_its_voiced_time_and_a_growing_silence(
        hmm: tp.AudioFrame, lk_silero: Any,
        raw_events: list[tuple[lk_vad.VADEvent, list[tp.VADEvent]]]) -> None:
    """livekit counts the 0.55 s of silence before its end of speech as speech (the
    "hmm" reaches min_interruption_duration there); through the adapter it reports
    its voiced time only, and the silence run grows from the moment the voice stops."""
    onset, offset = _audible(hmm)
    with trio.fail_after(60):
        async with bridge.open_loop():
            events = [e async for e in bridge.vad(lk_silero).stream(_frames(_timeline(hmm)))]
    assert [out for _, out in raw_events if out] == [[e] for e in events]  # one for one, in order
    marks = [e for e in events if e.type is not T.INFERENCE]
    assert [e.type for e in marks] == [T.START_OF_SPEECH, T.END_OF_SPEECH]
    start, end = marks
    lk_inference = [raw for raw, _ in raw_events if raw.type is lk_vad.VADEventType.INFERENCE_DONE]
    # the problem: livekit's own count passes 0.5 s while the user is already silent
    assert max(e.speech_duration for e in lk_inference) >= 0.5 + 0.3
    # the adapter: voiced time under 0.5 s all along, about the audible length
    ours = [e for e in events if e.type is T.INFERENCE]
    assert len(ours) == len(lk_inference)
    voiced = max(e.speech_duration for e in ours)
    assert voiced < 0.5 and voiced == pytest.approx(offset - onset, abs=0.1)
    assert end.speech_duration == pytest.approx(voiced)
    # the windows counted are exactly the ones livekit itself judged speech (its
    # raw_accumulated_speech, reported one window later, grows on each of them)
    lk_voiced = sum(1 for a, b in itertools.pairwise(lk_inference)
                    if b.raw_accumulated_speech > a.raw_accumulated_speech)
    assert voiced == pytest.approx(lk_voiced * 0.032)
    # the silence run: 0 while the voice is heard, then growing one window at a time
    # from the last voiced window through the end of speech and after it
    in_speech = [e for e in ours if start.timestamp < e.timestamp]
    last_voiced = max(e.timestamp for e in in_speech if e.silence_duration == 0.0)
    assert LEAD + offset - 0.05 <= last_voiced <= LEAD + offset + 0.15
    after = [e for e in ours if e.timestamp > last_voiced]
    assert [round(e.silence_duration / 0.032) for e in after] == list(range(1, len(after) + 1))
    assert all(e.speech_duration == pytest.approx(voiced) for e in after if e.timestamp <= end.timestamp)
    assert end.silence_duration == pytest.approx(end.timestamp - last_voiced)
    assert all(e.speech_duration == 0.0 for e in ours if e.timestamp > end.timestamp)
    # livekit kept its silence at 0 all that time
    assert all(raw.silence_duration == 0.0 for raw in lk_inference
               if start.timestamp < raw.timestamp <= end.timestamp)


async def test_voiced_time_leaves_out_a_pause_inside_the_speech(
        lk_silero: Any, raw_events: list[tuple[lk_vad.VADEvent, list[tp.VADEvent]]]) -> None:
    """Two phrases 0.3 s apart (shorter than min_silence_duration: one speech).
    livekit's end of speech counts from its start to the last voice, the pause
    included; ours counts the voiced windows, and the pause shows as a silence run
    that goes back to 0 when the voice returns."""
    from trio_playout.espeak import EspeakTTS

    tts = EspeakTTS()
    first, second = (tts.render_sync(text, sample_rate=RATE) for text in ("Hello there.", "Book a table."))
    (_, first_end), (second_onset, _) = _audible(first), _audible(second)
    gap = 0.3
    pad = tp.AudioFrame.silence(max(0.0, gap - (first.duration - first_end) - second_onset), sample_rate=RATE)
    joined = tp.AudioFrame(first.data + pad.data + second.data, RATE)
    with trio.fail_after(60):
        async with bridge.open_loop():
            events = [e async for e in bridge.vad(lk_silero).stream(_frames(_timeline(joined)))]
    assert [e.type for e in events if e.type is not T.INFERENCE] == [T.START_OF_SPEECH, T.END_OF_SPEECH]
    (end,) = [e for e in events if e.type is T.END_OF_SPEECH]
    (lk_end,) = [raw for raw, _ in raw_events if raw.type is lk_vad.VADEventType.END_OF_SPEECH]
    assert end.timestamp == lk_end.timestamp
    assert end.silence_duration == pytest.approx(lk_end.silence_duration)
    # the pause is left out (less the windows livekit's smoothing still counts as voice)
    assert lk_end.speech_duration - gap <= end.speech_duration <= lk_end.speech_duration - gap + 0.15
    ours = [e for e in events if e.type is T.INFERENCE]
    in_pause = [e for e in ours if LEAD + first_end < e.timestamp < LEAD + first_end + gap]
    longest = max(e.silence_duration for e in in_pause)
    assert gap - 0.15 <= longest <= gap
    after = [e for e in ours if e.timestamp > in_pause[-1].timestamp and e.silence_duration == 0.0]
    assert after and after[0].speech_duration > max(e.speech_duration for e in in_pause)
    # voiced time never goes back while speaking; livekit's silence stayed 0 in the pause
    speaking = [e for e in ours if e.speech_duration > 0]
    assert all(b.speech_duration >= a.speech_duration for a, b in itertools.pairwise(speaking))
    pause_times = {e.timestamp for e in in_pause}
    assert all(raw.silence_duration == 0.0 for raw, _ in raw_events
               if raw.type is lk_vad.VADEventType.INFERENCE_DONE and raw.timestamp in pause_times)


async def test_thresholds_follow_the_plugin_and_can_be_given(lk_silero: Any) -> None:
    assert bridge.vad(lk_silero).current_thresholds() == pytest.approx((0.5, 0.35))
    explicit = bridge.vad(lk_silero, activation_threshold=0.6)
    assert explicit.current_thresholds() == pytest.approx((0.6, 0.45))
    other: Any = silero.VAD.load(activation_threshold=0.7)
    adapted = bridge.vad(other)
    assert adapted.current_thresholds() == pytest.approx((0.7, 0.55))
    other.update_options(activation_threshold=0.8)  # followed, deactivation as the plugin keeps it
    assert adapted.current_thresholds() == pytest.approx((0.8, 0.55))
    with pytest.raises(tp.VoiceOptionsError):
        bridge.vad(lk_silero, activation_threshold=1.5)
    with pytest.raises(tp.VoiceOptionsError):
        bridge.vad(lk_silero, activation_threshold=0.3, deactivation_threshold=0.4)
    with pytest.raises(tp.VoiceOptionsError):
        bridge.vad(lk_silero, deactivation_threshold=0.3)


def _lk(kind: lk_vad.VADEventType, ts: float, p: float = 0.0, speech: float = 0.0) -> lk_vad.VADEvent:
    return lk_vad.VADEvent(type=kind, samples_index=round(ts * RATE), timestamp=ts,
                           speech_duration=speech, silence_duration=0.0, probability=p)


def test_the_mapping_window_by_window() -> None:
    """livekit's order (a window's INFERENCE_DONE, then the start or end it causes):
    hysteresis while speaking, a blip outside speech does not reset the silence run,
    and without thresholds the plugin's durations pass unchanged."""
    INF, SOS, EOS = (lk_vad.VADEventType.INFERENCE_DONE, lk_vad.VADEventType.START_OF_SPEECH,
                     lk_vad.VADEventType.END_OF_SPEECH)
    w = 0.032
    script = [(INF, 0.9), (INF, 0.1), (INF, 0.6), (INF, 0.7), (SOS, 0.0),  # a blip; a start on 2 windows
              (INF, 0.4), (INF, 0.3), (INF, 0.4), (INF, 0.2), (EOS, 0.0),  # 0.4 > 0.35 while speaking
              (INF, 0.9)]
    measure = bridge_adapters.VoicedTime(lambda: (0.5, 0.35))
    out, k = [], 0
    for kind, p in script:
        k += kind is INF
        (event,) = measure.convert(_lk(kind, k * w, p, speech=9.9))
        out.append((event.type, round(event.speech_duration / w), round(event.silence_duration / w)))
    assert out == [(T.INFERENCE, 0, 1), (T.INFERENCE, 0, 2), (T.INFERENCE, 0, 3), (T.INFERENCE, 0, 4),
                   (T.START_OF_SPEECH, 2, 0), (T.INFERENCE, 3, 0), (T.INFERENCE, 3, 1), (T.INFERENCE, 4, 0),
                   (T.INFERENCE, 4, 1), (T.END_OF_SPEECH, 4, 1), (T.INFERENCE, 0, 2)]
    unknown = bridge_adapters.VoicedTime(lambda: None)
    (raw,) = unknown.convert(_lk(INF, 0.5, 0.9, speech=0.7))
    assert (raw.speech_duration, raw.probability) == (0.7, 0.9)


TWELVE = "one two three four five six seven eight nine ten eleven twelve."  # 4 s of FakeTTS
AT = 1.0  # the user's audio starts here (seconds after the session opened)


async def _converse(lk: Any, audio: tp.AudioFrame, turn: tp.TurnOptions,
                    ) -> tuple[tp.RealtimeAudioSink, tp.SpeechHandle, list[tuple[float, tp.SessionEvent]]]:
    """The agent says TWELVE into a pausable sink; the user's audio comes at AT. No STT."""
    from trio_playout.testing import FakeTTS, PacedAudio, ScriptedLLM

    sink = tp.RealtimeAudioSink()
    seen: list[tuple[float, tp.SessionEvent]] = []
    async with bridge.open_loop() as loop:
        loop._default_executor = _InlineExecutor()  # type: ignore[attr-defined]
        async with (
            trio.open_nursery() as nursery,
            tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink,
                            audio_input=PacedAudio([(AT, audio)], duration=8.0),
                            vad=bridge.vad(lk), turn=turn) as session,
        ):
            async def watch(task_status: trio.TaskStatus[None]) -> None:
                async with session.subscribe(buffer=10_000) as events:
                    task_status.started()
                    async for event in events:
                        seen.append((trio.current_time(), event))

            await nursery.start(watch)
            speech = session.say(TWELVE)
            await speech
        assert _pending(loop) == []
    return sink, speech, seen


def _users(seen: list[tuple[float, tp.SessionEvent]]) -> list[tuple[float, str]]:
    return [(t, e.new) for t, e in seen if isinstance(e, tp.UserStateChanged)]


@pytest.mark.parametrize("measure", ["voiced", "livekit's"])
async def test_a_short_hmm_changes_nothing_under_the_default_options(
        autojump_clock: trio.testing.MockClock, hmm: tp.AudioFrame, lk_silero: Any,
        monkeypatch: pytest.MonkeyPatch, measure: str) -> None:
    """Through ``bridge.vad`` the "hmm" is heard (the user speaks, then listens) and
    the agent goes on: no pause, nothing skipped. With livekit's own durations passed
    through (what the adapter did before), the same "hmm" pauses the agent."""
    if measure != "voiced":
        monkeypatch.setattr(bridge_adapters, "plugin_thresholds", lambda lk: None)
    sink, speech, seen = await _converse(lk_silero, hmm, tp.TurnOptions())
    assert [state for _, state in _users(seen)] == ["speaking", "listening"]
    record = sink.records[0]
    assert not speech.interrupted and record.position == pytest.approx(4.0)
    if measure == "voiced":
        assert sink.pauses == [] and not any(isinstance(e, tp.FalseInterruption) for _, e in seen)
        assert record.stopped_at == pytest.approx(record.started_at + 4.0)
    else:
        assert len(sink.pauses) == 1  # the bug this adapter fixes, reproduced


async def test_a_real_barge_in_still_pauses_under_the_default_options(
        autojump_clock: trio.testing.MockClock, lk_silero: Any) -> None:
    from trio_playout.espeak import EspeakTTS

    user = EspeakTTS().render_sync("Hold on, stop, I have a question about that.", sample_rate=RATE)
    onset = AT + _audible(user)[0]
    sink, speech, seen = await _converse(lk_silero, user, tp.TurnOptions())
    (paused_at, resumed_at), = sink.pauses
    assert resumed_at is not None
    # 0.5 s of voice (min_interruption_duration) after the onset, not before; later by
    # livekit's start (a window or two of its smoothing) and the pauses at commas
    assert onset + 0.5 - 0.032 <= paused_at <= onset + 0.9
    (_, speaking), (end_of_speech, listening) = _users(seen)
    assert (speaking, listening) == ("speaking", "listening")
    # no STT: no words confirm it, so it resumes false_interruption_timeout after the end
    assert resumed_at == pytest.approx(end_of_speech + 2.0)
    (false,) = [e for _, e in seen if isinstance(e, tp.FalseInterruption)]
    assert false.resumed and not false.provisional
    assert not speech.interrupted and sink.records[0].position == pytest.approx(4.0)


async def test_a_provisional_pause_resumes_when_the_voice_stops_not_at_the_end_of_speech(
        autojump_clock: trio.testing.MockClock, hmm: tp.AudioFrame, lk_silero: Any) -> None:
    """With ``pause_on_speech_start`` the "hmm" pauses at livekit's start and resumes
    after provisional_resume_silence of silence run, well before livekit's end of
    speech (0.55 s of silence later)."""
    offset = AT + _audible(hmm)[1]
    sink, speech, seen = await _converse(lk_silero, hmm, tp.TurnOptions(pause_on_speech_start=True))
    (paused_at, resumed_at), = sink.pauses
    assert resumed_at is not None
    (_, _), (end_of_speech, _) = _users(seen)
    assert paused_at < offset < resumed_at <= offset + 0.2 < end_of_speech - 0.3
    assert resumed_at - paused_at <= 0.4
    (false,) = [e for _, e in seen if isinstance(e, tp.FalseInterruption)]
    assert false.resumed and false.provisional
    assert not speech.interrupted and sink.records[0].position == pytest.approx(4.0)
