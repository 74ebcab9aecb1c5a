"""Issue 8 item 9: a session hearing real speech through the real Silero VAD, in virtual time.

The user's voice is generated here with espeak-ng (trio_playout.espeak, a test-only
extra), placed in silence at a known time and fed to the session as its microphone
(trio_playout.testing.PacedAudio, paced on trio's clock). SileroVAD runs inline on
the trio thread, so the whole conversation runs under MockClock. The agent speaks
12 words (4 s) from FakeTTS into a pausable RealtimeAudioSink; there is no STT, so a
barge-in pauses and, with no words to confirm it, resumes after the timeout.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")

import trio_playout as tp  # noqa: E402
from trio_playout.silero import SileroVAD  # noqa: E402
from trio_playout.testing import FakeTTS, PacedAudio, ScriptedLLM  # noqa: E402

TWELVE = "one two three four five six seven eight nine ten eleven twelve."
LEAD = 1.0  # the user's audio starts here (seconds after the session opened)
RATE = 16000


def _espeak_16k(text: str) -> tp.AudioFrame:
    try:
        from trio_playout.espeak import EspeakTTS
        tts = EspeakTTS()
    except (ImportError, tp.PlayoutError) as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    return tts.render_sync(text, sample_rate=RATE)


def _first_audible(frame: tp.AudioFrame) -> float:
    """Seconds to the first sample above 1% of full scale: the speech onset."""
    samples = np.abs(np.frombuffer(frame.data, dtype="<i2").astype(np.float64)) / 32768.0
    return float(np.nonzero(samples > 0.01)[0][0]) / frame.sample_rate


def _noise(seconds: float, amplitude: float = 0.3) -> tp.AudioFrame:
    rng = np.random.default_rng(8)
    x = rng.uniform(-amplitude, amplitude, round(seconds * RATE))
    return tp.AudioFrame((x * 32767).astype("<i2").tobytes(), RATE)


async def _converse(audio: tp.AudioFrame, turn: tp.TurnOptions
                    ) -> tuple[tp.RealtimeAudioSink, tp.SpeechHandle, list[tuple[float, str]], tp.Session]:
    sink = tp.RealtimeAudioSink()
    users: list[tuple[float, str]] = []
    async with (
        trio.open_nursery() as nursery,
        tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink,
                        audio_input=PacedAudio([(LEAD, audio)]), vad=SileroVAD(), turn=turn) as session,
    ):
        async def watch(task_status: trio.TaskStatus[None]) -> None:
            async with session.subscribe() as events:
                task_status.started()
                async for event in events:
                    if isinstance(event, tp.UserStateChanged):
                        users.append((trio.current_time(), event.new))

        await nursery.start(watch)
        speech = session.say(TWELVE)
        await speech
    return sink, speech, users, session


@pytest.mark.parametrize("min_duration", [0.3, 0.5])
async def test_real_speech_pauses_the_agent_soon_after_its_onset(
        autojump_clock: trio.testing.MockClock, min_duration: float) -> None:
    speech_audio = _espeak_16k("Hold on, stop, I have a question about that.")
    onset = LEAD + _first_audible(speech_audio)
    sink, speech, users, session = await _converse(
        speech_audio, tp.TurnOptions(min_interruption_duration=min_duration))
    assert len(sink.pauses) == 1
    paused_at, resumed_at = sink.pauses[0]
    # Silero needs some speech before its START (min_speech_duration 0.05) and the
    # rules then need min_duration of it: never before onset + min_duration - one window,
    # and within 0.1 s after onset + min_duration.
    assert onset + min_duration - 0.032 <= paused_at <= onset + min_duration + 0.1
    # no STT: no words confirm it, so it resumes 2 s after the VAD's end of speech
    assert users[0][1] == "speaking" and onset <= users[0][0] <= onset + 0.2
    end_of_speech = users[1][0]
    assert resumed_at == pytest.approx(end_of_speech + 2.0)
    record = sink.records[0]
    assert not speech.interrupted and record.position == pytest.approx(4.0) and not record.interrupted
    assert [m.text for m in session.history] == [TWELVE]


async def test_a_burst_of_noise_does_not_pause_the_agent(autojump_clock: trio.testing.MockClock) -> None:
    sink, speech, users, session = await _converse(_noise(0.2), tp.TurnOptions())
    assert sink.pauses == [] and not speech.interrupted
    assert all(state != "speaking" for _, state in users)
    assert [m.text for m in session.history] == [TWELVE]


async def test_a_short_hmm_does_not_pause_the_agent(autojump_clock: trio.testing.MockClock) -> None:
    hmm = _espeak_16k("Hmm.")
    samples = np.abs(np.frombuffer(hmm.data, dtype="<i2").astype(np.float64)) / 32768.0
    voiced = np.nonzero(samples > 0.01)[0]
    assert (voiced[-1] - voiced[0]) / RATE < 0.4  # shorter than min_interruption_duration
    sink, _, _, _ = await _converse(hmm, tp.TurnOptions())
    assert sink.pauses == []
