"""espeak-ng synthesis (trio_playout.espeak, a GPL test-only extra) with real word timings.

The engine runs in a worker thread, so these tests use trio's real clock; the only
time limits are generous ``trio.fail_after`` guards against hangs. espeak's output
varies slightly from run to run (its noise sources are random), so comparisons
between runs go by words and durations, not bytes.
"""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from collections.abc import Sequence

import pytest
import trio

import trio_playout as tp

try:
    from trio_playout.espeak import EspeakTTS, SpeechEngineError, VoiceOptionsError

    _TTS = EspeakTTS()
except tp.PlayoutError as exc:  # pragma: no cover - only without the library
    pytest.skip(f"espeak-ng unavailable: {exc}", allow_module_level=True)

TEXT = "  Hello there, how are you doing today?\nI'm fine: the café is naïve, 1234 cups.  "
LONG = "This sentence is long enough to keep the engine busy for a while. " * 300


async def _collect(tts: EspeakTTS, text: str) -> list[tp.SynthesizedAudio]:
    with trio.fail_after(30):
        return [chunk async for chunk in tts.synthesize(text)]


def _tokens(text: str) -> list[str]:
    return re.findall(r"\S+", text)


def _check_words(text: str, chunks: Sequence[tp.SynthesizedAudio], sample_rate: int) -> None:
    """Word timings: each in the frame where it starts, ordered, spans cover every token once."""
    position = 0
    words: list[tp.WordTiming] = []
    for chunk in chunks:
        frame_start = position / sample_rate
        position += chunk.frame.samples_per_channel
        for w in chunk.words:
            assert frame_start - 1e-9 <= w.start < position / sample_rate
            words.append(w)
    total = position / sample_rate
    for a, b in itertools.pairwise(words):
        assert a.start <= a.end <= b.start
        assert a.end_char < b.start_char and text[a.end_char:b.start_char].isspace()
    assert words[-1].end <= total
    spans = [text[w.start_char:w.end_char] for w in words]
    assert " ".join(spans).split() == _tokens(text)  # every token once, in order


async def test_synthesis_streams_frames_with_word_timings() -> None:
    chunks = await _collect(_TTS, TEXT)
    assert _TTS.sample_rate == 22050
    sizes = [c.frame.samples_per_channel for c in chunks]
    assert all(n == 441 for n in sizes[:-1]) and 0 < sizes[-1] <= 441  # 20 ms frames
    assert all(c.frame.sample_rate == 22050 and c.frame.num_channels == 1 for c in chunks)
    duration = sum(c.frame.duration for c in chunks)
    words = len(_tokens(TEXT)) + 3  # "1234" is said as four words
    assert 0.5 * words * 60 / 175 < duration < 2.0 * words * 60 / 175 + 1.0  # about 175 wpm
    _check_words(TEXT, chunks, 22050)
    spans = [TEXT[w.start_char:w.end_char] for c in chunks for w in c.words]
    assert spans[:3] == ["Hello", "there,", "how"]
    assert "café" in spans and "naïve," in spans  # character (not byte) positions
    assert "1234" in spans  # several engine events merge into one word
    heard = sum(c.frame.duration for c in chunks)
    loud = max(abs(int.from_bytes(c.frame.data[i:i + 2], "little", signed=True))
               for c in chunks for i in range(0, len(c.frame.data), 2))
    assert loud > 3000 and heard > 2.0  # real sound, not silence


async def test_words_follow_the_sound() -> None:
    """A word's timing covers its sound: the clause pause after "there," is outside it."""
    chunks = await _collect(_TTS, "Hello there, how are you")
    words = [w for c in chunks for w in c.words]
    there, how = words[1], words[2]
    assert how.start - there.end > 0.05  # the comma's pause belongs to no word
    assert words[0].start == pytest.approx(0.0, abs=0.05)


async def test_rate_changes_the_duration() -> None:
    slow = sum(c.frame.duration for c in await _collect(EspeakTTS(rate=120), LONG[:200]))
    fast = sum(c.frame.duration for c in await _collect(EspeakTTS(rate=350), LONG[:200]))
    assert fast < 0.6 * slow


async def test_concurrent_syntheses_are_serialized_and_complete() -> None:
    """Two instances with different settings share the engine without mixing them up."""
    fast, slow = EspeakTTS(rate=350), EspeakTTS("en", rate=100)
    text = "one two three four five six seven eight"
    results: dict[str, list[tp.SynthesizedAudio]] = {}

    async def run(name: str, tts: EspeakTTS) -> None:
        results[name] = await _collect(tts, text)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(run, "fast", fast)
            nursery.start_soon(run, "slow", slow)
    alone = {"fast": await _collect(fast, text), "slow": await _collect(slow, text)}
    for name in ("fast", "slow"):
        _check_words(text, results[name], 22050)
        got = sum(c.frame.duration for c in results[name])
        assert got == pytest.approx(sum(c.frame.duration for c in alone[name]), rel=0.1)
    assert sum(c.frame.duration for c in results["slow"]) > 2 * sum(c.frame.duration for c in results["fast"])


async def test_cancellation_mid_synthesis_returns_promptly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cancelling returns at once and aborts the engine (not just abandons the thread)."""
    from trio_playout import espeak

    callbacks: dict[str, int] = {}
    feed = espeak._Job.feed

    def counting_feed(job: espeak._Job, *args: object) -> None:
        callbacks[job.text] = callbacks.get(job.text, 0) + 1
        feed(job, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(espeak._Job, "feed", counting_feed)
    first: list[tp.SynthesizedAudio] = []
    with trio.fail_after(10):
        with trio.CancelScope() as scope:
            async for chunk in _TTS.synthesize(LONG):  # about 5 minutes of audio
                first.append(chunk)
                if len(first) == 3:
                    scope.cancel()
        assert scope.cancelled_caught and len(first) == 3
        # The aborted thread released the engine: the next synthesis runs normally.
        chunks = [c async for c in _TTS.synthesize("still working")]
    _check_words("still working", chunks, 22050)
    # The whole text would take about 6000 callbacks of 50 ms; the abort came far earlier.
    assert 0 < callbacks[LONG] < 3000


async def test_closing_the_iterator_stops_the_synthesis() -> None:
    with trio.fail_after(10):
        stream = _TTS.synthesize(LONG)
        chunk = await stream.__anext__()
        assert chunk.frame.samples_per_channel == 441
        await stream.aclose()  # type: ignore[attr-defined]
        chunks = [c async for c in _TTS.synthesize("and again")]
    _check_words("and again", chunks, 22050)


async def test_blank_text_gives_no_audio() -> None:
    assert await _collect(_TTS, "") == []
    assert await _collect(_TTS, "  \n ") == []


def test_render_gives_the_whole_text() -> None:
    frame, words = _TTS.render_words_sync(TEXT)
    assert frame.sample_rate == 22050 and frame.duration > 2.0
    assert " ".join(TEXT[w.start_char:w.end_char] for w in words).split() == _tokens(TEXT)
    resampled = _TTS.render_sync("Hello there", sample_rate=16000)
    plain = _TTS.render_sync("Hello there")
    assert resampled.sample_rate == 16000
    assert resampled.duration == pytest.approx(plain.duration, abs=0.05)


async def test_async_render() -> None:
    with trio.fail_after(10):
        frame = await _TTS.render("Hello there", sample_rate=16000)
    assert frame.sample_rate == 16000 and 0.3 < frame.duration < 3.0


def test_implements_the_tts_protocol() -> None:
    assert isinstance(_TTS, tp.TTS)


@pytest.mark.parametrize("kwargs", [
    {"rate": 10}, {"rate": 1000}, {"pitch": 101}, {"volume": -1}, {"word_gap": -1},
    {"frame_duration": 0}, {"voice": ""}, {"voice": "no-such-voice-xx"}, {"rate": 17.5},
])
def test_bad_options_raise_typed_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(VoiceOptionsError) as info:
        EspeakTTS(**kwargs)  # type: ignore[arg-type]
    assert isinstance(info.value, ValueError) and isinstance(info.value, tp.PlayoutError)


def test_engine_error_type() -> None:
    assert issubclass(SpeechEngineError, RuntimeError) and issubclass(SpeechEngineError, tp.PlayoutError)


def test_espeak_stays_light_and_off_by_default() -> None:
    """Importing and using it pulls in no numpy; importing trio_playout never loads the GPL engine."""
    code = ("import sys, trio_playout, trio\n"
            "assert 'trio_playout.espeak' not in sys.modules\n"
            "from trio_playout.espeak import EspeakTTS\n"
            "async def main():\n"
            "    return [c async for c in EspeakTTS().synthesize('hi there')]\n"
            "assert trio.run(main)\n"
            "assert 'numpy' not in sys.modules, 'numpy imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
