"""The real Silero VAD (trio_playout.silero) on real speech, in virtual time.

The user's speech is generated with espeak-ng (trio_playout.espeak, a test-only
GPL extra), placed in silence at a known time and paced like a microphone on trio's
clock. The model runs inline on the trio thread, so it works under MockClock.

Measured on this machine class (espeak en-us, four phrases, inputs at 8, 16, 22.05
and 48 kHz): START_OF_SPEECH 0.05-0.17 s after the first audible sample (two 32 ms
windows over the threshold for min_speech_duration 0.05, later on a soft /s/), and
END_OF_SPEECH 0.58-0.67 s after the last one (min_silence_duration 0.55). The bounds
below leave room for that spread and still fail on a VAD that is a few windows off.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Sequence

import pytest
import trio
import trio.testing

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")

import trio_playout as tp  # noqa: E402
from trio_playout._resample import StreamResampler, float_to_pcm16, pcm16_to_float_mono  # noqa: E402
from trio_playout.silero import (  # noqa: E402
    ModelNotFoundError,
    SileroModel,
    SileroVAD,
    SpeechDetector,
    VoiceOptionsError,
    find_model,
    new_session,
)
from trio_playout.testing import PacedAudio, SilentInput  # noqa: E402

T = tp.VADEventType
LEAD = 1.0  # seconds of silence before the speech
RATE_16K = 16000
PHRASES = ["Hello there, I would like to book a table for two people tonight please.",
           "Stop, wait a second."]


def _espeak() -> object:
    try:
        from trio_playout.espeak import EspeakTTS
        return EspeakTTS()
    except tp.PlayoutError as exc:  # library missing
        pytest.skip(f"espeak-ng unavailable: {exc}")


@pytest.fixture(scope="module")
def speech_22k() -> dict[str, tp.AudioFrame]:
    tts = _espeak()
    return {text: tts.render_sync(text) for text in PHRASES}  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def vad() -> SileroVAD:
    return SileroVAD()


def _resample(frame: tp.AudioFrame, rate: int, channels: int = 1) -> tp.AudioFrame:
    mono = StreamResampler(frame.sample_rate, rate).push(pcm16_to_float_mono(frame.data, frame.num_channels))
    if channels > 1:
        mono = np.repeat(mono, channels)
    return tp.AudioFrame(float_to_pcm16(mono), rate, channels)


def _audible(frame: tp.AudioFrame) -> tuple[float, float]:
    """Seconds of the first and just after the last sample above 1% of full scale."""
    x = np.abs(pcm16_to_float_mono(frame.data, frame.num_channels))
    idx = np.nonzero(x > 0.01)[0]
    return idx[0] / frame.sample_rate, (idx[-1] + 1) / frame.sample_rate


async def _frames(source: PacedAudio | SilentInput) -> AsyncIterator[tp.AudioFrame]:
    async for frame in source:
        yield frame


async def _run(vad: SileroVAD, source: PacedAudio | SilentInput) -> list[tuple[float, tp.VADEvent]]:
    """(clock seconds since start, event) for every event."""
    t0 = trio.current_time()
    return [(trio.current_time() - t0, e) async for e in vad.stream(_frames(source))]


def _marks(events: Sequence[tuple[float, tp.VADEvent]]) -> list[tp.VADEvent]:
    return [e for _, e in events if e.type is not T.INFERENCE]


@pytest.mark.parametrize("rate,channels", [(16000, 1), (22050, 1), (48000, 2), (8000, 1)])
@pytest.mark.parametrize("text", PHRASES)
async def test_speech_starts_and_ends_near_the_audio(
        autojump_clock: trio.testing.MockClock, vad: SileroVAD, speech_22k: dict[str, tp.AudioFrame],
        rate: int, channels: int, text: str) -> None:
    speech = speech_22k[text]
    if (rate, channels) != (speech.sample_rate, 1):
        speech = _resample(speech, rate, channels)
    first, last = _audible(speech)
    onset, offset = LEAD + first, LEAD + last
    source = PacedAudio([(LEAD, speech)], duration=LEAD + speech.duration + 1.5)
    events = await _run(vad, source)

    marks = _marks(events)
    assert [e.type for e in marks] == [T.START_OF_SPEECH, T.END_OF_SPEECH]
    start, end = marks
    assert onset <= start.timestamp <= onset + 0.2
    assert offset + vad.min_silence_duration <= end.timestamp <= offset + vad.min_silence_duration + 0.2
    assert start.speech_duration >= vad.min_speech_duration
    assert start.probability >= vad.activation_threshold
    assert end.silence_duration >= vad.min_silence_duration

    # Delivered in virtual time as the audio arrives: at most one 20 ms frame late.
    for at, e in events:
        assert e.timestamp - 1e-6 <= at <= e.timestamp + 0.02 + 1e-6
    # One INFERENCE per 32 ms window, consistent with the start/end events.
    inferences = [e for _, e in events if e.type is T.INFERENCE]
    assert [round(e.timestamp, 6) for e in inferences] == [
        round((k + 1) * 0.032, 6) for k in range(len(inferences))]
    # In speech, speech_duration is the voiced time (windows over the deactivation
    # threshold since the start) and silence_duration the run of windows under it.
    voiced = silence = 0.0
    for e in inferences:
        in_speech = start.timestamp <= e.timestamp < end.timestamp
        assert 0.0 <= e.probability <= 1.0
        if not in_speech:
            assert e.speech_duration == 0.0 and e.silence_duration > 0
            continue
        if e.timestamp == start.timestamp:
            voiced, silence = start.speech_duration, 0.0
        elif e.probability > vad.deactivation_threshold:
            voiced, silence = voiced + 0.032, 0.0
        else:
            silence += 0.032
        assert e.speech_duration == pytest.approx(voiced)
        assert e.silence_duration == pytest.approx(silence)
        assert silence < vad.min_silence_duration
    # END carries the voiced time: less than start to end, by at least the trailing silence.
    assert end.speech_duration == pytest.approx(voiced)
    assert start.speech_duration < end.speech_duration <= (
        end.timestamp - start.timestamp + start.speech_duration - end.silence_duration + 1e-6)
    assert end.speech_duration >= 0.6 * (offset - onset)  # measured 0.74-0.95 of the span (pauses at commas)


async def test_frame_size_does_not_change_the_result(
        vad: SileroVAD, speech_22k: dict[str, tp.AudioFrame]) -> None:
    """Streaming in 10 ms frames or in one piece gives the same windows and probabilities."""
    speech = speech_22k[PHRASES[1]]

    async def frames(step: int) -> AsyncIterator[tp.AudioFrame]:
        for i in range(0, len(speech.data), 2 * step):
            yield tp.AudioFrame(speech.data[i:i + 2 * step], speech.sample_rate)
        await trio.lowlevel.checkpoint()

    small = [e async for e in vad.stream(frames(220))]
    whole = [e async for e in vad.stream(frames(len(speech.data)))]
    assert len(small) == len(whole) > 40
    assert [e.type for e in small] == [e.type for e in whole]
    assert [e.probability for e in small] == pytest.approx([e.probability for e in whole], abs=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_noise_burst_and_click_do_not_start_speech(
        autojump_clock: trio.testing.MockClock, vad: SileroVAD, seed: int) -> None:
    rng = np.random.default_rng(seed)
    noise = tp.AudioFrame(float_to_pcm16(np.clip(rng.normal(0.0, 0.3, 3200), -1, 1)), 16000)  # 0.2 s
    click = np.zeros(160)
    click[:10], click[10:20] = 0.9, -0.9
    source = PacedAudio([(0.5, noise), (1.5, tp.AudioFrame(float_to_pcm16(click), 16000))],
                        duration=2.5)
    events = await _run(vad, source)
    assert _marks(events) == []
    assert len(events) == int(2.5 / 0.032)
    assert max(e.probability for _, e in events) < 0.2


async def test_noise_then_speech_starts_only_at_the_speech(
        autojump_clock: trio.testing.MockClock, vad: SileroVAD,
        speech_22k: dict[str, tp.AudioFrame]) -> None:
    speech = _resample(speech_22k[PHRASES[0]], 16000)
    noise = tp.AudioFrame(float_to_pcm16(np.random.default_rng(7).normal(0.0, 0.3, 3200)), 16000)
    events = await _run(vad, PacedAudio([(0.3, noise), (1.0, speech)], then_silence=False))
    marks = _marks(events)
    assert marks and marks[0].type is T.START_OF_SPEECH
    assert marks[0].timestamp >= 1.0 + _audible(speech)[0]


async def test_silence_never_starts_speech(autojump_clock: trio.testing.MockClock, vad: SileroVAD) -> None:
    events = await _run(vad, SilentInput(duration=3.0))
    assert _marks(events) == []
    assert len(events) == int(3.0 / 0.032)
    last = events[-1][1]
    assert last.silence_duration == pytest.approx(len(events) * 0.032)
    assert last.speech_duration == 0.0


async def test_one_vad_serves_independent_streams(
        autojump_clock: trio.testing.MockClock, vad: SileroVAD,
        speech_22k: dict[str, tp.AudioFrame]) -> None:
    """Each stream has its own model state: speech in one does not leak into the other."""
    speech = speech_22k[PHRASES[0]]
    results: dict[str, list[tp.VADEvent]] = {}

    async def run(name: str, source: PacedAudio | SilentInput) -> None:
        results[name] = _marks(await _run(vad, source))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, "speech", PacedAudio([(LEAD, speech)], duration=6.0))
        nursery.start_soon(run, "silence", SilentInput(duration=6.0))
    assert [e.type for e in results["speech"]] == [T.START_OF_SPEECH, T.END_OF_SPEECH]
    assert results["silence"] == []


def test_detector_rules() -> None:
    """The pure rules: debounce, hysteresis, end after min_silence_duration."""
    d = SpeechDetector(0.032, min_speech_duration=0.05, min_silence_duration=0.1,
                       activation_threshold=0.5, deactivation_threshold=0.35)

    def feed(*ps: float) -> list[tuple[T, float]]:
        return [(e.type, round(e.timestamp, 3)) for p in ps for e in d.update(p) if e.type is not T.INFERENCE]

    assert feed(0.9, 0.1) == []  # one window is a click
    assert d.silence_duration == pytest.approx(0.064)  # a click does not reset the silence
    assert feed(0.6, 0.7) == [(T.START_OF_SPEECH, 0.128)]
    assert (d.speech_duration, d.silence_duration) == (pytest.approx(0.064), 0.0)
    assert feed(0.4, 0.36, 0.4) == []  # between the thresholds: still speech
    assert d.speaking and d.speech_duration == pytest.approx(0.064 + 3 * 0.032)
    assert feed(0.2, 0.2) == []  # a dip: silence counts, the voiced time does not grow
    assert (d.speech_duration, d.silence_duration) == (pytest.approx(0.16), pytest.approx(0.064))
    assert feed(0.6) == [] and (d.speech_duration, d.silence_duration) == (pytest.approx(0.192), 0.0)
    assert feed(0.2, 0.2) == []  # a short dip does not end it
    assert feed(0.2) == []  # 3 windows: 0.096 s < min_silence_duration
    events = d.update(0.2)  # 4 windows: 0.128 s below 0.35
    assert [(e.type, round(e.timestamp, 3)) for e in events] == [
        (T.END_OF_SPEECH, 0.448), (T.INFERENCE, 0.448)]
    end, after = events
    # END carries the voiced time (2 + 3 + 1 windows), never the 6 silent windows of the speech
    assert (end.speech_duration, end.silence_duration) == (pytest.approx(0.192), pytest.approx(0.128))
    assert (after.speech_duration, after.silence_duration) == (0.0, pytest.approx(0.128))
    assert not d.speaking and d.silence_duration == pytest.approx(0.128)
    assert feed(0.49, 0.49, 0.49) == []  # never reaches the activation threshold
    assert d.silence_duration == pytest.approx(0.224) and d.speech_duration == 0.0


def test_a_short_sound_reports_its_voiced_length_only() -> None:
    """A 0.35 s sound then silence: speech_duration stays at 0.35 through the 0.55 s of
    silence before the end (livekit's plugin would report 0.9 s by then)."""
    d = SpeechDetector(0.032)
    events = [e for p in [0.0] * 5 + [0.95] * 11 + [0.05] * 30 for e in d.update(p)]
    inferences = [e for e in events if e.type is T.INFERENCE]
    assert max(e.speech_duration for e in inferences) == pytest.approx(11 * 0.032)
    end = next(e for e in events if e.type is T.END_OF_SPEECH)
    assert end.speech_duration == pytest.approx(11 * 0.032)
    assert end.silence_duration == pytest.approx(18 * 0.032)  # min_silence_duration 0.55 -> 18 windows
    in_silence = [e for e in inferences if 16 * 0.032 + 1e-9 < e.timestamp < end.timestamp - 1e-9]
    assert [round(e.silence_duration / 0.032) for e in in_silence] == list(range(1, 18))


@pytest.mark.parametrize("kwargs", [
    {"min_speech_duration": -0.1},
    {"min_silence_duration": float("nan")},
    {"activation_threshold": 0.0},
    {"activation_threshold": 1.5},
    {"deactivation_threshold": 0.0},
    {"activation_threshold": 0.4, "deactivation_threshold": 0.6},
    {"sample_rate": 22050},
    {"sample_rate": 48000},
])
def test_bad_options_raise_typed_errors(kwargs: dict[str, float]) -> None:
    with pytest.raises(VoiceOptionsError) as info:
        SileroVAD(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, tp.PlayoutError)
    assert next(iter(kwargs)) in str(info.value)


def test_defaults_follow_livekit() -> None:
    vad = SileroVAD()
    assert (vad.min_speech_duration, vad.min_silence_duration, vad.activation_threshold,
            vad.deactivation_threshold, vad.sample_rate) == (0.05, 0.55, 0.5, pytest.approx(0.35), 16000)
    assert vad.window_duration == 0.032
    assert SileroVAD(activation_threshold=0.1).deactivation_threshold == 0.01
    assert isinstance(vad, tp.VAD)


def test_missing_model_raises(tmp_path: object) -> None:
    with pytest.raises(ModelNotFoundError) as info:
        SileroVAD(model_path="/nonexistent/silero_vad.onnx")
    assert isinstance(info.value, FileNotFoundError)


def test_model_geometry_read_from_the_model() -> None:
    session = new_session()
    names = {i.name for i in session.get_inputs()}
    assert names == {"input", "state", "sr"}
    m16, m8 = SileroModel(session, 16000), SileroModel(session, 8000)
    assert (m16.window, m16.context) == (512, 64)
    assert (m8.window, m8.context) == (256, 32)
    assert 0.0 <= m16(np.zeros(512, dtype=np.float32)) < 0.1


def test_model_is_found_without_importing_livekit() -> None:
    code = ("import sys, trio_playout.silero as s; p = s.find_model(); "
            "assert p.name == 'silero_vad.onnx' and p.is_file(), p; "
            "bad = [m for m in sys.modules if m.startswith('livekit')]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert find_model().stat().st_size > 1_000_000


def test_core_import_stays_light_and_missing_extra_is_named() -> None:
    light = ("import sys, trio_playout, trio_playout.testing; "
             "heavy = [m for m in ('numpy', 'onnxruntime') if m in sys.modules]; assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", light], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    missing = ("import sys; sys.modules['onnxruntime'] = None\n"
               "try:\n    import trio_playout.silero\nexcept ImportError as e:\n    print(e)\n")
    result = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True)
    assert "pip install 'trio-playout[vad]'" in result.stdout, result.stdout + result.stderr


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 16000), (22050, 16000), (44100, 16000), (8000, 16000),
                                              (16000, 8000)])
def test_resampler_is_chunk_invariant_and_accurate(rate_in: int, rate_out: int) -> None:
    """Any chunking gives the same samples; a 440 Hz tone comes out as a 440 Hz tone."""
    t = np.arange(rate_in) / rate_in
    x = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    whole = StreamResampler(rate_in, rate_out).push(x)
    rng = np.random.default_rng(rate_in)
    chunked_r = StreamResampler(rate_in, rate_out)
    parts, i = [], 0
    while i < len(x):
        step = int(rng.integers(1, 2000))
        parts.append(chunked_r.push(x[i:i + step]))
        i += step
    chunked = np.concatenate(parts)
    assert len(whole) == len(chunked) == pytest.approx(rate_out, abs=1)
    assert np.max(np.abs(whole - chunked)) < 1e-5
    tt = np.arange(len(whole)) / rate_out - chunked_r.delay
    assert chunked_r.delay < 0.001
    ref = np.sin(2 * np.pi * 440 * tt)
    core = slice(200, len(whole) - 200)
    assert np.max(np.abs(whole[core] - ref[core])) < 0.02


def test_resampler_removes_what_the_model_cannot_represent() -> None:
    """A 10 kHz tone at 48 kHz lies above 8 kHz: it must not alias into the 16 kHz band."""
    t = np.arange(48000) / 48000
    out = StreamResampler(48000, 16000).push(np.sin(2 * np.pi * 10000 * t).astype(np.float32))
    assert np.sqrt(np.mean(out[100:] ** 2)) < 0.1  # the tone itself has rms 0.707


def test_downmix_averages_channels() -> None:
    pcm = np.array([16384, -16384, 8192, 8192, 0, 32767], dtype="<i2").tobytes()
    assert pcm16_to_float_mono(pcm, 2).tolist() == pytest.approx([0.0, 0.25, 0.5], abs=1e-4)
    assert pcm16_to_float_mono(pcm, 3).tolist() == pytest.approx([(0.5 - 0.5 + 0.25) / 3,
                                                                  (0.25 + 0 + 1.0) / 3], abs=1e-4)
    assert float_to_pcm16(np.array([2.0, -2.0, 0.5])) == np.array([32767, -32768, 16384], "<i2").tobytes()


def test_voice_cost_benchmark_smoke() -> None:
    """The benchmark's pieces run and count what they should (no timing asserted)."""
    from benchmarks import voice_cost

    signal = np.zeros(RATE_16K * 2, dtype=np.float32)
    wall, cpu = voice_cost.per_window(signal, new_session(), windows=20, warmup=5)
    assert wall is not None and cpu is not None and wall["n"] == cpu["n"] == 20
    trial = voice_cost.run_trial(2, signal, seconds=0.5, max_lag=10.0)
    assert trial.k == 2 and trial.windows == 2 * int(0.5 / 0.032)
    assert trial.ok and trial.lag_max_ms >= trial.lag_p99_ms >= trial.lag_p50_ms


def test_vads_share_one_session_unless_asked() -> None:
    a, b = SileroVAD(), SileroVAD(activation_threshold=0.6)
    assert a._session is b._session
    assert SileroVAD(share_session=False)._session is not a._session
