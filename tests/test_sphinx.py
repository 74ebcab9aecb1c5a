"""PocketSphinxSTT (trio_playout.sphinx) on real speech made by espeak-ng.

The user's speech is generated with espeak-ng (trio_playout.espeak, a test-only GPL
extra) at 150 words per minute, with a noise floor at about -50 dBFS added the way a
real microphone has one. Both matter to this recognizer, trained on natural
recordings: on the same sentences, digital silence between words roughly doubles the
word error rate (0.52 against 0.25 in one stream), and espeak's default 175 wpm
adds a few more errors.

Word error rate measured here (word-level edit distance over the 49 reference words of
six sentences in one stream, at 16 kHz, 24 kHz and 48 kHz stereo): over six renderings
(espeak's output varies with its random state, i.e. with what was synthesized before
in the process), the average of the three rates was 0.279-0.327 and single streams
0.163-0.429 (16 kHz 0.16-0.33, 24 kHz 0.31-0.43, 48 kHz 0.20-0.39). The model is
fragile on synthetic speech: small spectral differences flip a few words. So the
test asserts what holds with a margin, an average <= 0.40 and each stream <= 0.5
("most words right"); that still fails on a recognizer that gets most words wrong
(no model, wrong rate, audio cut or dropped).

The decoder runs in a worker process, so most tests use trio's real clock with
generous ``trio.fail_after`` guards and unpaced input; one runs the paced test
microphone in virtual time, where only the transcripts and their order are checked.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import pytest
import trio
import trio.testing

pytest.importorskip("pocketsphinx")
np = pytest.importorskip("numpy")

import trio_playout as tp  # noqa: E402
from trio_playout._resample import float_to_pcm16, pcm16_to_float_mono  # noqa: E402
from trio_playout.sphinx import (  # noqa: E402
    ModelNotFoundError,
    PocketSphinxSTT,
    SpeechEngineError,
    VoiceOptionsError,
    default_model,
)
from trio_playout.testing import PacedAudio  # noqa: E402

# Of a sentence's four key words, how many a transcript must have: a sanity check that
# recognition works, not a quality bar. espeak-ng's samples for a text vary from one
# synthesis to the next in a process, and "I want to buy a new car" once came out as
# "i want to by two car" (2 of 4) after other tests had run.
KEY_WORDS = 2

SENTENCES = [
    "Hello there, I would like to book a table for two people tonight please.",
    "What is the weather like in London today?",
    "Please call my mother tomorrow morning.",
    "I want to buy a new car.",
    "Turn off the lights in the kitchen.",
    "Thank you very much for your help.",
]
WER_BOUND = 0.40  # average over the rates; each stream <= 0.5
GUARD = 60  # seconds: only a guard against hangs (the first worker loads a 27 MB model)


def _espeak() -> object:
    try:
        from trio_playout.espeak import EspeakTTS
        return EspeakTTS("en-us", 150)
    except tp.PlayoutError as exc:  # library missing
        pytest.skip(f"espeak-ng unavailable: {exc}")


@pytest.fixture(scope="module")
def tts() -> object:
    return _espeak()


def _microphone(speech: tp.AudioFrame, *, lead: float = 0.5, tail: float = 1.0, channels: int = 1,
                seed: int = 0) -> tp.AudioFrame:
    """``speech`` between silences, with a noise floor, as ``channels`` channels.

    The noise is white, -50 dBFS (std 100 of 32768) at 16 kHz and scaled with the rate so
    that the same noise lands in the model's 0-8 kHz band at every rate (the resampler
    filters out the rest; unscaled, 48 kHz input would hear a third of it and do worse).
    """
    rate = speech.sample_rate
    x = pcm16_to_float_mono(speech.data, speech.num_channels).astype(np.float64)
    x = np.concatenate([np.zeros(round(lead * rate)), x, np.zeros(round(tail * rate))])
    x += np.random.default_rng(seed).normal(0.0, 100 / 32768 * (rate / 16000) ** 0.5, len(x))
    if channels > 1:
        x = np.repeat(x, channels)
    return tp.AudioFrame(float_to_pcm16(x), rate, channels)


def _say(tts: object, texts: Iterable[str], rate: int, channels: int = 1) -> tp.AudioFrame:
    parts = [_microphone(tts.render_sync(t, sample_rate=rate), channels=channels, seed=i)  # type: ignore[attr-defined]
             for i, t in enumerate(texts)]
    return tp.AudioFrame(b"".join(p.data for p in parts), rate, channels)


async def _frames(audio: tp.AudioFrame, frame_duration: float = 0.02) -> AsyncIterator[tp.AudioFrame]:
    """``audio`` in frames, as fast as the consumer reads them."""
    width = 2 * audio.num_channels
    step = round(frame_duration * audio.sample_rate) * width
    for i in range(0, len(audio.data), step):
        await trio.lowlevel.checkpoint()
        yield tp.AudioFrame(audio.data[i:i + step], audio.sample_rate, audio.num_channels)


async def _transcribe(stt: PocketSphinxSTT, frames: AsyncIterator[tp.AudioFrame]) -> list[tp.Transcript]:
    with trio.fail_after(GUARD):
        return [t async for t in stt.stream(frames)]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z']+", text.lower())


def word_error_rate(reference: Sequence[str], hypothesis: Sequence[str]) -> float:
    """Word-level edit distance (substitutions, insertions, deletions) / reference words."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, 1):
        row = [i]
        for j, hyp in enumerate(hypothesis, 1):
            row.append(min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (ref != hyp)))
        previous = row
    return previous[-1] / max(1, len(reference))


def _sphinx_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("sphinx-")]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_word_error_rate_helper() -> None:
    assert word_error_rate(["a", "b", "c"], ["a", "b", "c"]) == 0.0
    assert word_error_rate(["a", "b", "c"], ["a", "x", "c", "d"]) == pytest.approx(2 / 3)
    assert word_error_rate(["a", "b"], []) == 1.0


RATES = [(16000, 1), (24000, 1), (48000, 2)]


async def test_most_words_right(tts: object) -> None:
    """Six sentences in one stream, at 16 kHz, 24 kHz and 48 kHz stereo (resampled),
    three streams (three worker processes) at once."""
    results: dict[tuple[int, int], list[tp.Transcript]] = {}
    stt = PocketSphinxSTT()

    async def run(rate: int, channels: int) -> None:
        results[rate, channels] = await _transcribe(stt, _frames(_say(tts, SENTENCES, rate, channels)))

    async with trio.open_nursery() as nursery:
        for rate, channels in RATES:
            nursery.start_soon(run, rate, channels)
    reference = _words(" ".join(SENTENCES))
    wers = []
    for (rate, channels), transcripts in results.items():
        assert all(t.final and t.text for t in transcripts)  # no interim asked for
        # One final per sentence (the endpointer does not split at a comma's short pause).
        assert len(transcripts) == len(SENTENCES)
        wers.append(word_error_rate(reference, _words(" ".join(t.text for t in transcripts))))
        print(f"\nWER at {rate} Hz x{channels}: {wers[-1]:.3f}; heard {[t.text for t in transcripts]}")
    assert sum(wers) / len(wers) <= WER_BOUND  # measured 0.279-0.327
    assert max(wers) <= 0.5  # measured up to 0.429
    assert stt.running_workers == 0 and not _sphinx_threads()


async def test_two_utterances_give_two_finals_in_order(tts: object) -> None:
    first, second = "Please call my mother tomorrow morning.", "I want to buy a new car."
    stt = PocketSphinxSTT()
    transcripts = await _transcribe(stt, _frames(_say(tts, [first, second], 16000)))
    assert [t.final for t in transcripts] == [True, True]
    a, b = (set(_words(t.text)) for t in transcripts)
    assert len(a & {"call", "mother", "tomorrow", "morning"}) >= 3
    assert len(b & {"want", "buy", "new", "car"}) >= 3
    assert not a & {"buy", "car"} and not b & {"mother", "morning"}


async def test_interim_results_then_a_final_per_utterance(tts: object) -> None:
    stt = PocketSphinxSTT(interim_results=True, interim_every=0.2)
    transcripts = await _transcribe(stt, _frames(_say(tts, SENTENCES[:2], 16000)))
    finals = [i for i, t in enumerate(transcripts) if t.final]
    assert len(finals) == 2 and finals[-1] == len(transcripts) - 1
    assert finals[0] > 0 and finals[0] + 1 < finals[1]  # interim results before each final
    assert all(t.text for t in transcripts)


async def test_paced_microphone_in_virtual_time(autojump_clock: trio.testing.MockClock, tts: object) -> None:
    """A paced input on the MockClock: the clock jumps while the worker decodes, the
    transcripts stay the same, in order."""
    sentences = SENTENCES[2:4]
    audio = _say(tts, sentences, 16000)
    source = PacedAudio(audio, then_silence=False)

    async def frames() -> AsyncIterator[tp.AudioFrame]:
        async for frame in source:
            yield frame

    transcripts = [t async for t in PocketSphinxSTT().stream(frames())]
    assert len(transcripts) == 2
    for transcript, sentence in zip(transcripts, sentences, strict=True):
        assert word_error_rate(_words(sentence), _words(transcript.text)) <= 0.5


@pytest.mark.parametrize("noise", [False, True])
async def test_silence_gives_nothing(noise: bool) -> None:
    audio = tp.AudioFrame.silence(3.0)
    if noise:
        audio = _microphone(audio, lead=0, tail=0)
    stt = PocketSphinxSTT()
    assert await _transcribe(stt, _frames(audio)) == []
    assert stt.running_workers == 0 and not _sphinx_threads()


async def test_cancelling_mid_utterance_stops_the_worker(tts: object) -> None:
    """Cancelled while the worker decodes an utterance: the process is killed and
    reaped, both threads end, before the cancelled call returns."""
    audio = _say(tts, [SENTENCES[0] * 3], 16000)
    stt = PocketSphinxSTT(interim_results=True, interim_every=0.1)
    seen: list[tp.Transcript] = []
    pids: set[int] = set()
    with trio.fail_after(GUARD):
        with trio.CancelScope() as scope:
            async for transcript in stt.stream(_frames(audio, 0.01)):
                seen.append(transcript)
                pids |= {int(t.name.rsplit("-", 1)[1]) for t in _sphinx_threads()}
                if len(seen) == 3:
                    assert stt.running_workers == 1
                    scope.cancel()
    assert scope.cancelled_caught and not any(t.final for t in seen)  # mid-utterance
    assert stt.running_workers == 0 and not _sphinx_threads()
    assert len(pids) == 1 and _gone(pids.pop())


async def test_closing_the_iterator_early_stops_the_worker(tts: object) -> None:
    stt = PocketSphinxSTT()
    stream = stt.stream(_frames(_say(tts, SENTENCES[2:4], 16000)))
    with trio.fail_after(GUARD):
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for _first in stream:
                break
    assert stt.running_workers == 0 and not _sphinx_threads()


async def test_a_worker_that_dies_raises_speech_engine_error(tts: object) -> None:
    stt = PocketSphinxSTT(interim_results=True)
    with trio.fail_after(GUARD), pytest.raises(SpeechEngineError, match="exited"):
        async for _ in stt.stream(_frames(_say(tts, [SENTENCES[0]] * 3, 16000), 0.01)):
            for t in _sphinx_threads():
                os.kill(int(t.name.rsplit("-", 1)[1]), 9)
    assert stt.running_workers == 0 and not _sphinx_threads()


@pytest.mark.parametrize("options", [
    {"endpoint_window": 0.03}, {"endpoint_window": -1}, {"endpoint_window": float("nan")},
    {"endpoint_window": 0.3, "endpoint_ratio": 1.0}, {"endpoint_ratio": 0}, {"endpoint_ratio": True},
    {"endpoint_window": 0.09, "endpoint_ratio": 0.9},  # ps_endpointer: no frame to end on
    {"vad_mode": 4}, {"vad_mode": -1}, {"vad_mode": 1.0}, {"interim_results": "yes"},
    {"interim_every": -0.1}, {"max_utterance_duration": 0.5}, {"hmm": ""}, {"fwdflat": 1},
])
def test_bad_options_raise_voice_options_error(options: dict[str, object]) -> None:
    with pytest.raises(VoiceOptionsError):
        PocketSphinxSTT(**options)  # type: ignore[arg-type]


def test_missing_model_files_raise_model_not_found(tmp_path: object) -> None:
    hmm, lm, dictionary = default_model()
    for options in ({"hmm": f"{tmp_path}/none"}, {"lm": f"{tmp_path}/none.lm.bin"},
                    {"dictionary": f"{tmp_path}/none.dict"}):
        with pytest.raises(ModelNotFoundError):
            PocketSphinxSTT(**options)  # type: ignore[arg-type]
    assert isinstance(ModelNotFoundError("x"), FileNotFoundError)
    assert PocketSphinxSTT().hmm == hmm and (hmm / "mdef").is_file() and lm.is_file() and dictionary.is_file()


async def test_a_model_the_decoder_cannot_load_raises_model_not_found(tmp_path: Path) -> None:
    junk = tmp_path / "junk.lm.bin"
    junk.write_bytes(b"not a language model")
    stt = PocketSphinxSTT(lm=junk)
    with pytest.raises(ModelNotFoundError, match="could not load"):
        await _transcribe(stt, _frames(tp.AudioFrame.silence(1.0)))
    assert stt.running_workers == 0 and not _sphinx_threads()


def test_importing_trio_playout_does_not_import_pocketsphinx() -> None:
    code = ("import sys, trio_playout, trio_playout.sphinx; "
            "sys.exit('pocketsphinx' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


PIPE_SECONDS = 65536 / 32000  # Linux's default pipe buffer, in seconds of 16 kHz audio


async def test_a_worker_that_falls_behind_stops_the_input_at_max_backlog(tts: object) -> None:
    """The worker is stopped (SIGSTOP, as a starved core would stall it) while 60 s of
    audio wait unpaced: the stream reads no more than ``max_backlog`` (plus the pipe's
    buffer) past what the worker took, instead of queueing all of it in the parent.
    Resumed, it reads and transcribes everything, nothing dropped."""
    speech = _say(tts, [SENTENCES[3]], 16000)
    stt = PocketSphinxSTT(max_backlog=1.0)
    step = 320 * 2
    pulled = 0
    stopped_at: int | None = None
    pid: list[int] = []

    async def source() -> AsyncIterator[tp.AudioFrame]:
        nonlocal pulled, stopped_at
        for i in range(0, len(speech.data), step):
            pulled += 1
            yield tp.AudioFrame(speech.data[i:i + step], 16000)
        (thread,) = [t for t in _sphinx_threads() if t.name.startswith("sphinx-writer")]
        pid.append(int(thread.name.rsplit("-", 1)[1]))
        os.kill(pid[0], signal.SIGSTOP)
        stopped_at = pulled
        silence = tp.AudioFrame.silence(0.02)
        for _ in range(3000):  # 60 s
            pulled += 1
            yield silence

    got: list[tp.Transcript] = []
    try:
        async with trio.open_nursery() as nursery:

            async def consume() -> None:
                got.extend(await _transcribe(stt, source()))

            nursery.start_soon(consume)
            with trio.fail_after(GUARD):
                while stopped_at is None:  # noqa: ASYNC110 - the source sets it
                    await trio.sleep(0.01)
            await trio.testing.wait_all_tasks_blocked(0.5)
            assert stopped_at is not None
            ahead = (pulled - stopped_at) * 0.02
            assert ahead <= 1.0 + PIPE_SECONDS + 0.1, f"read {ahead:.2f} s past a stopped worker"
            os.kill(pid[0], signal.SIGCONT)
    finally:
        for p in pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGCONT)
    assert pulled == stopped_at + 3000  # everything read in the end
    assert [t.final for t in got] == [True]
    # Nothing dropped: the same words as the same audio gives without the stall (the
    # worker frames its input the same whatever the timing). Not a fixed sentence:
    # espeak-ng's samples for a text differ from one synthesis to the next in a process
    # (state carried in its wave generator), so after other tests this came out as "i
    # want to by two car" in two CI runs; this test is about the backlog, not recognition.
    reference = await _transcribe(PocketSphinxSTT(max_backlog=1.0), _frames(speech))
    assert [t.text for t in got] == [t.text for t in reference if t.final]
    assert len(set(_words(got[0].text)) & {"want", "buy", "new", "car"}) >= KEY_WORDS
    assert stt.running_workers == 0 and not _sphinx_threads()


async def test_a_final_is_handed_on_while_the_input_is_idle(tts: object) -> None:
    """An input that stops sending after the utterance's trailing silence (and stays
    open) still gets its final: the stream waits for a frame or a result, whichever
    comes first. Needs an input whose wait can be cancelled without losing a frame:
    a memory channel here, the session's audio queue in a session."""
    audio = _say(tts, [SENTENCES[2]], 16000)
    send, receive = trio.open_memory_channel[tp.AudioFrame](math.inf)
    step = 320 * 2
    for i in range(0, len(audio.data), step):
        send.send_nowait(tp.AudioFrame(audio.data[i:i + step], 16000))
    stt = PocketSphinxSTT()
    stream = stt.stream(receive)
    with trio.fail_after(GUARD):  # hangs without the fix: the final waits for a next frame
        first = await stream.__anext__()
    assert first.final
    assert len(set(_words(first.text)) & {"call", "mother", "tomorrow", "morning"}) >= KEY_WORDS
    assert stt.running_workers == 1  # the input is still open
    send.close()
    with trio.fail_after(GUARD):
        rest = [t async for t in stream]
    assert rest == [] and stt.running_workers == 0 and not _sphinx_threads()


async def test_an_input_that_goes_quiet_mid_utterance_counts_as_silence(tts: object) -> None:
    """Discontinuous transmission: the input sends the speech and then nothing, not
    even the trailing silence the endpointer needs, and stays open. After
    ``idle_silence`` with no frame the stream tells the worker that time was silence,
    and the final comes."""
    speech = _microphone(tts.render_sync(SENTENCES[3], sample_rate=16000), lead=0.5, tail=0)  # type: ignore[attr-defined]
    send, receive = trio.open_memory_channel[tp.AudioFrame](math.inf)
    step = 320 * 2
    for i in range(0, len(speech.data), step):
        send.send_nowait(tp.AudioFrame(speech.data[i:i + step], 16000))
    stt = PocketSphinxSTT(idle_silence=0.2)
    stream = stt.stream(receive)
    with trio.fail_after(GUARD):
        first = await stream.__anext__()
    assert first.final and len(set(_words(first.text)) & {"want", "buy", "new", "car"}) >= KEY_WORDS
    send.close()
    with trio.fail_after(GUARD):
        assert [t async for t in stream] == []
    assert stt.running_workers == 0


def test_max_backlog_is_checked() -> None:
    for bad in (0, -1.0, float("inf"), "2", True):
        with pytest.raises(VoiceOptionsError, match="max_backlog"):
            PocketSphinxSTT(max_backlog=bad)  # type: ignore[arg-type]
        with pytest.raises(VoiceOptionsError, match="idle_silence"):
            PocketSphinxSTT(idle_silence=bad)  # type: ignore[arg-type]
    assert PocketSphinxSTT(idle_silence=None).idle_silence is None


@pytest.mark.parametrize(("tail", "idle_silence"), [(1.0, None), (0.0, 0.5)],
                         ids=["silence-then-idle", "dtx"])
async def test_in_a_session_a_turn_completes_while_the_microphone_is_idle(
        tts: object, tail: float, idle_silence: float | None) -> None:
    """A microphone that sends the utterance (with its trailing silence, or without:
    discontinuous transmission, a muted client), then nothing while staying open: the
    session's audio queue lets the final through while no frame comes (and with
    ``idle_silence`` the missing silence is inferred), so the user's turn completes
    and is answered."""
    from trio_playout.offline import RuleLLM
    from trio_playout.testing import FakeTTS

    audio = _microphone(tts.render_sync(SENTENCES[2], sample_rate=16000), tail=tail)  # type: ignore[attr-defined]

    async def microphone() -> AsyncIterator[tp.AudioFrame]:
        step = 320 * 2
        for i in range(0, len(audio.data), step):
            yield tp.AudioFrame(audio.data[i:i + step], 16000)
        await trio.sleep_forever()

    async with tp.open_session(llm=RuleLLM(first_delay=0, delta_delay=0), tts=FakeTTS(),
                               output=tp.RealtimeAudioSink(), audio_input=microphone(),
                               stt=PocketSphinxSTT(idle_silence=idle_silence)) as session:
        with trio.fail_after(GUARD):
            while not any(isinstance(m, tp.ChatMessage) and m.role == "assistant"  # noqa: ASYNC110
                          for m in session.history):
                await trio.sleep(0.05)  # polls session state, which has no event for this
        user = session.history[0]
    assert isinstance(user, tp.ChatMessage) and user.role == "user"
    assert len(set(_words(user.text)) & {"call", "mother", "tomorrow", "morning"}) >= KEY_WORDS
