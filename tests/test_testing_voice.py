"""The user-side fakes in trio_playout.testing, in virtual time.

ScriptedVAD/ScriptedSTT deliver scripted events on trio's clock as frames arrive;
SilentInput/PacedAudio are microphones paced on trio's clock.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator

import pytest
import trio
import trio.testing

import trio_playout as tp
from trio_playout.testing import PacedAudio, ScriptedSTT, ScriptedVAD, SilentInput

T = tp.VADEventType


async def _timed(source: AsyncIterable[object]) -> list[tuple[float, object]]:
    t0 = trio.current_time()
    return [(trio.current_time() - t0, item) async for item in source]


async def _aiter(source: AsyncIterable[tp.AudioFrame]) -> AsyncIterator[tp.AudioFrame]:
    async for frame in source:
        yield frame


def test_fakes_implement_the_protocols() -> None:
    assert isinstance(ScriptedVAD(), tp.VAD)
    assert isinstance(ScriptedSTT(), tp.STT)


async def test_silent_input_paces_frames_on_the_clock(autojump_clock: trio.testing.MockClock) -> None:
    got = await _timed(SilentInput(frame_duration=0.02, sample_rate=16000, duration=1.0))
    assert len(got) == 50
    for k, (t, frame) in enumerate(got):
        assert isinstance(frame, tp.AudioFrame)
        assert t == pytest.approx((k + 1) * 0.02)  # delivered when its audio has elapsed
        assert frame.sample_rate == 16000 and frame.samples_per_channel == 320
        assert frame.data == bytes(640)


async def test_silent_input_without_duration_goes_on(autojump_clock: trio.testing.MockClock) -> None:
    n = 0
    async for _ in SilentInput(frame_duration=0.01, sample_rate=8000, num_channels=2):
        n += 1
        if n == 1000:
            break
    assert trio.current_time() == pytest.approx(10.0)


async def test_silent_input_last_frame_is_short(autojump_clock: trio.testing.MockClock) -> None:
    got = await _timed(SilentInput(frame_duration=0.02, duration=0.05))
    assert [f.samples_per_channel for _, f in got] == [320, 320, 160]  # type: ignore[attr-defined]
    assert got[-1][0] == pytest.approx(0.05)


async def test_paced_audio_places_audio_on_a_silent_timeline(autojump_clock: trio.testing.MockClock) -> None:
    a = tp.AudioFrame(b"\x01\x00" * 160, 16000)  # 10 ms
    b = tp.AudioFrame(b"\x02\x00" * 480, 16000)  # 30 ms
    source = PacedAudio([(0.05, b), (0.01, a)], then_silence=False)
    assert source.audio_end == pytest.approx(0.08)
    got = await _timed(source)
    assert [round(t, 6) for t, _ in got] == [0.02, 0.04, 0.06, 0.08]
    pcm = b"".join(f.data for _, f in got)  # type: ignore[attr-defined]
    expected = bytes(320) + a.data + bytes(2 * 480) + b.data
    assert pcm == expected


async def test_paced_audio_then_silence_and_duration(autojump_clock: trio.testing.MockClock) -> None:
    speech = tp.AudioFrame(b"\x10\x00" * 800, 16000)  # 50 ms
    got = await _timed(PacedAudio(speech, frame_duration=0.02, duration=0.2))
    assert len(got) == 10 and got[-1][0] == pytest.approx(0.2)
    pcm = b"".join(f.data for _, f in got)  # type: ignore[attr-defined]
    assert pcm == speech.data + bytes(2 * (3200 - 800))


def test_paced_audio_rejects_bad_input() -> None:
    f = tp.AudioFrame(bytes(320), 16000)
    with pytest.raises(ValueError, match="overlap"):
        PacedAudio([(0.0, f), (0.005, f)])
    with pytest.raises(ValueError, match="sample rate"):
        PacedAudio([(0.0, f), (1.0, tp.AudioFrame(bytes(320), 8000))])
    with pytest.raises(ValueError):
        PacedAudio(f, frame_duration=0)
    with pytest.raises(ValueError):
        PacedAudio([])


async def test_scripted_vad_events_on_the_clock(autojump_clock: trio.testing.MockClock) -> None:
    vad = ScriptedVAD(speech=[(0.5, 1.0), (1.5, 1.6)], window=0.032)
    got = await _timed(vad.stream(_aiter(SilentInput(frame_duration=0.02, duration=2.0))))
    assert vad.frames == 100  # it read every frame
    marks = [(round(t, 6), e.type, e.timestamp) for t, e in got if e.type is not T.INFERENCE]  # type: ignore[attr-defined]
    # Boundaries on multiples of 20 ms: delivered exactly on time.
    assert marks == [(0.5, T.START_OF_SPEECH, 0.5), (1.0, T.END_OF_SPEECH, 1.0),
                     (1.5, T.START_OF_SPEECH, 1.5), (1.6, T.END_OF_SPEECH, 1.6)]
    # an END carries the voiced length of its interval (the whole interval is voice)
    ends = [e for _, e in got if e.type is T.END_OF_SPEECH]  # type: ignore[attr-defined]
    assert [e.speech_duration for e in ends] == [pytest.approx(0.5), pytest.approx(0.1)]
    inferences = [e for _, e in got if e.type is T.INFERENCE]  # type: ignore[attr-defined]
    assert len(inferences) == math.floor(2.0 / 0.032)
    for k, (t, e) in enumerate((t, e) for t, e in got if e.type is T.INFERENCE):  # type: ignore[attr-defined]
        ts = (k + 1) * 0.032
        assert e.timestamp == pytest.approx(ts)
        assert ts - 1e-9 <= t < ts + 0.02  # at most one frame late
        if 0.5 <= ts < 1.0:
            assert (e.speech_duration, e.silence_duration, e.probability) == (
                pytest.approx(ts - 0.5), 0.0, 1.0)
        elif ts >= 1.6:
            assert (e.speech_duration, e.silence_duration, e.probability) == (
                0.0, pytest.approx(ts - 1.6), 0.0)
        elif ts < 0.5:
            assert e.speech_duration == 0.0 and e.silence_duration == pytest.approx(ts)


async def test_scripted_vad_start_before_inference_at_same_time(
        autojump_clock: trio.testing.MockClock) -> None:
    vad = ScriptedVAD(speech=[(0.064, 0.2)], window=0.032)
    got = [e async for e in vad.stream(_aiter(SilentInput(frame_duration=0.032, duration=0.128)))]
    kinds = [(e.type, round(e.timestamp, 6)) for e in got]
    assert kinds == [(T.INFERENCE, 0.032), (T.START_OF_SPEECH, 0.064), (T.INFERENCE, 0.064),
                     (T.INFERENCE, 0.096), (T.INFERENCE, 0.128)]
    assert got[2].speech_duration == 0.0 and got[3].speech_duration == pytest.approx(0.032)


async def test_scripted_vad_waits_for_frames(autojump_clock: trio.testing.MockClock) -> None:
    """Nothing is delivered without audio; a late frame delivers everything due, in order."""
    send, receive = trio.open_memory_channel[tp.AudioFrame](10)
    vad = ScriptedVAD(speech=[(0.1, 0.2)], window=0.05)
    got: list[tp.VADEvent] = []

    async def consume() -> None:
        async for e in vad.stream(receive):  # type: ignore[arg-type]
            got.append(e)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(consume)
        await trio.sleep(0.3)
        assert got == []
        await send.send(tp.AudioFrame.silence(0.02))
        await trio.testing.wait_all_tasks_blocked()
        assert [(e.type, round(e.timestamp, 6)) for e in got] == [
            (T.INFERENCE, 0.05), (T.START_OF_SPEECH, 0.1), (T.INFERENCE, 0.1), (T.INFERENCE, 0.15),
            (T.END_OF_SPEECH, 0.2), (T.INFERENCE, 0.2), (T.INFERENCE, 0.25), (T.INFERENCE, 0.3)]
        await send.aclose()
    assert vad.frames == 1


def test_scripted_vad_rejects_bad_scripts() -> None:
    with pytest.raises(ValueError, match="start < end"):
        ScriptedVAD(speech=[(1.0, 1.0)])
    with pytest.raises(ValueError, match="overlap"):
        ScriptedVAD(speech=[(0.0, 1.0), (0.5, 2.0)])
    with pytest.raises(ValueError):
        ScriptedVAD(speech=[(-1.0, 1.0)])
    with pytest.raises(ValueError):
        ScriptedVAD(window=0)


async def test_scripted_stt_delivers_transcripts_on_the_clock(
        autojump_clock: trio.testing.MockClock) -> None:
    stt = ScriptedSTT(transcripts=[(0.7, "book a", False), (0.3, "hello"), (0.7, "book a table", True)])
    got = await _timed(stt.stream(_aiter(SilentInput(duration=1.0))))
    assert [(round(t, 6), tr) for t, tr in got] == [
        (0.3, tp.Transcript("hello", True)),
        (0.7, tp.Transcript("book a", False)),
        (0.7, tp.Transcript("book a table", True)),
    ]
    assert stt.frames == 50


async def test_scripted_stt_ends_with_its_input(autojump_clock: trio.testing.MockClock) -> None:
    stt = ScriptedSTT(transcripts=[(5.0, "too late")])
    assert [t async for t in stt.stream(_aiter(SilentInput(duration=1.0)))] == []
    assert trio.current_time() == pytest.approx(1.0)
