"""The adapters with livekit plugins of our own, built on livekit's real base classes.

Each plugin here is what a plugin author writes: a subclass of livekit's ``tts.TTS`` /
``ChunkedStream``, ``llm.LLM`` / ``LLMStream`` or ``vad.VAD`` / ``VADStream``, so
livekit's own machinery (its ``AudioEmitter`` with timed transcripts, its retry loop,
its channels and ``aclose``) runs for real; only the provider behind it is scripted.
No threads and no sockets, so these run in virtual time (``autojump_clock``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
import trio.testing
from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, APIStatusError
from livekit.agents import llm as lk_llm
from livekit.agents import tts as lk_tts
from livekit.agents import vad as lk_vad
from livekit.agents.types import TimedString

import bridge
import trio_playout as tp
from trio_playout.testing import ScriptedLLM

RATE = 16000
WORD = 0.25  # seconds of audio per word


class WordTTS(lk_tts.TTS[Any]):
    """A livekit TTS plugin: ``WORD`` seconds of silence per word, each word timed
    (livekit's timed transcripts, as aligned-transcript TTSs send them)."""

    def __init__(self, *, timed: bool = True, fail_after_words: int | None = None) -> None:
        super().__init__(capabilities=lk_tts.TTSCapabilities(streaming=False, aligned_transcript=timed),
                         sample_rate=RATE, num_channels=1)
        self.timed = timed
        self.fail_after_words = fail_after_words

    def synthesize(self, text: str, *,
                   conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> lk_tts.ChunkedStream:
        return _WordStream(tts=self, input_text=text, conn_options=conn_options)


class _WordStream(lk_tts.ChunkedStream):
    async def _run(self, output_emitter: lk_tts.AudioEmitter) -> None:
        tts: WordTTS = self._tts  # type: ignore[assignment]
        output_emitter.initialize(request_id="req", sample_rate=RATE, num_channels=1, mime_type="audio/pcm")
        start = 0.0
        for n, match in enumerate(re.finditer(r"\S+\s*", self.input_text)):
            if tts.fail_after_words is not None and n >= tts.fail_after_words:
                raise APIStatusError("engine overloaded", status_code=503, retryable=False)
            if tts.timed:
                output_emitter.push_timed_transcript(
                    TimedString(match.group(), start_time=start, end_time=start + WORD))
            output_emitter.push(b"\1\0" * int(WORD * RATE))
            start += WORD
            await asyncio.sleep(0.01)  # synthesis takes a little time per word
        output_emitter.flush()


class ScriptLLM(lk_llm.LLM[Any]):
    """A livekit LLM plugin that streams ``text`` word by word, then raises ``error``."""

    def __init__(self, text: str, error: Exception | None = None) -> None:
        super().__init__()
        self.text, self.error = text, error
        self.contexts: list[lk_llm.ChatContext] = []

    def chat(self, *, chat_ctx: lk_llm.ChatContext, tools: list[Any] | None = None,
             conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS, **_: Any) -> lk_llm.LLMStream:
        self.contexts.append(chat_ctx)
        return _ScriptStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _ScriptStream(lk_llm.LLMStream):
    async def _run(self) -> None:
        plugin: ScriptLLM = self._llm  # type: ignore[assignment]
        for word in re.findall(r"\S+\s*", plugin.text):
            self._event_ch.send_nowait(lk_llm.ChatChunk(id="c", delta=lk_llm.ChoiceDelta(
                role="assistant", content=word)))
            await asyncio.sleep(0.05)
        if plugin.error is not None:
            raise plugin.error


class StubbornVAD(lk_vad.VAD):
    """A livekit VAD whose stream ignores the first cancel for ``linger`` seconds, or
    whose ``aclose`` fails."""

    def __init__(self, *, linger: float = 0.0, close_error: Exception | None = None) -> None:
        super().__init__(capabilities=lk_vad.VADCapabilities(update_interval=0.02))
        self.linger, self.close_error = linger, close_error

    def stream(self) -> lk_vad.VADStream:
        return _StubbornStream(self)


class _StubbornStream(lk_vad.VADStream):
    async def _main_task(self) -> None:
        vad: StubbornVAD = self._vad  # type: ignore[assignment]
        audio = 0.0
        try:
            async for frame in self._input_ch:
                if isinstance(frame, self._FlushSentinel):
                    continue
                audio += frame.duration
                self._event_ch.send_nowait(lk_vad.VADEvent(
                    type=lk_vad.VADEventType.INFERENCE_DONE, samples_index=0, timestamp=audio,
                    speech_duration=0.0, silence_duration=audio))
        except asyncio.CancelledError:
            if vad.linger:
                await asyncio.sleep(vad.linger)  # a plugin that takes its time to stop
            raise

    async def aclose(self) -> None:
        await super().aclose()
        vad: StubbornVAD = self._vad  # type: ignore[assignment]
        if vad.close_error is not None:
            raise vad.close_error


async def _silence() -> AsyncIterator[tp.AudioFrame]:
    while True:
        await trio.sleep(0.02)
        yield tp.AudioFrame.silence(0.02, sample_rate=RATE)


# -- TTS word timings through livekit's AudioEmitter ------------------------------------------


async def test_timed_words_cut_the_heard_text_at_the_playback_position(
        autojump_clock: trio.testing.MockClock) -> None:
    text = "one two three four five six seven eight."
    sink = tp.RealtimeAudioSink()
    async with bridge.open_loop() as loop, tp.open_session(
            llm=ScriptedLLM([]), tts=bridge.tts(WordTTS()), output=sink) as session:
        speech = session.say(text)
        await trio.sleep(0.9)
        session.interrupt()
        await speech
        assert [t for t in asyncio.all_tasks(loop) if not t.done()] == []
    (record,) = sink.records
    assert record.position is not None and 0.6 < record.position < 1.0
    spoken = [w for k, w in enumerate(text.split()) if k * WORD < record.position]
    assert list(session.history) == [tp.ChatMessage("assistant", " ".join(spoken), interrupted=True)]


async def test_without_timed_words_the_sentence_counts_as_heard(
        autojump_clock: trio.testing.MockClock) -> None:
    text = "one two three four five six seven eight."
    tts = bridge.tts(WordTTS(timed=False))
    async with bridge.open_loop(), tp.open_session(
            llm=ScriptedLLM([]), tts=tts, output=tp.RealtimeAudioSink()) as session:
        speech = session.say(text)
        await trio.sleep(1.0)
        session.interrupt()
        await speech
    assert list(session.history) == [tp.ChatMessage("assistant", text, interrupted=True)]


async def test_a_tts_plugin_error_mid_audio_is_typed(autojump_clock: trio.testing.MockClock) -> None:
    async with bridge.open_loop() as loop, tp.open_session(
            llm=ScriptedLLM([]), tts=bridge.tts(WordTTS(fail_after_words=3), conn_options=APIConnectOptions(
                max_retry=0)), output=tp.RealtimeAudioSink()) as session:
        failed = session.say("one two three four five.")
        await failed
        ok = session.say("fine.")
        await ok
        assert [t for t in asyncio.all_tasks(loop) if not t.done()] == []
    error = failed.exception()
    assert isinstance(error, tp.ProviderResponseError) and error.status_code == 503
    assert ok.exception() is None


# -- LLM: what reached the plugin, errors after text --------------------------------------


async def test_an_llm_plugin_error_after_text_keeps_what_was_heard(
        autojump_clock: trio.testing.MockClock) -> None:
    lk = ScriptLLM("Sure. Let me look", error=ValueError("plugin bug"))
    async with bridge.open_loop(), tp.open_session(
            llm=bridge.llm(lk, instructions="Be brief."), tts=bridge.tts(WordTTS()),
            output=tp.RealtimeAudioSink()) as session:
        reply = session.generate_reply(user_input="where is it?")
        await reply
    error = reply.exception()
    assert type(error) is tp.ProviderError and not error.retryable
    assert isinstance(error.__cause__, ValueError)
    history = list(session.history)
    assert history[0] == tp.ChatMessage("user", "where is it?")
    assert isinstance(history[1], tp.ChatMessage) and history[1].text.startswith("Sure.")
    (ctx,) = lk.contexts
    assert [(m.role, m.text_content) for m in ctx.messages()] == [
        ("system", "Be brief."), ("user", "where is it?")]


# -- closing: bounded, and a failing close is logged -------------------------------------------


async def test_a_plugin_that_lingers_on_cancel_is_waited_for_within_the_bound(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    async with bridge.open_loop() as loop:
        quick = bridge.vad(StubbornVAD(linger=1.0))
        slow = bridge.vad(StubbornVAD(linger=60.0))
        slow.close_timeout = 2.0
        for vad, waited in ((quick, 1.0), (slow, 2.0)):
            stream = vad.stream(_silence())
            await stream.__anext__()
            start = trio.current_time()
            await stream.aclose()
            assert trio.current_time() - start == pytest.approx(waited)
        assert "did not close within 2.0 s" in caplog.text
        await trio.sleep(60)  # the lingering one finishes on its own
        assert [t for t in asyncio.all_tasks(loop) if not t.done()] == []


async def test_a_close_that_fails_after_the_consumer_left_is_logged(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="bridge")
    async with bridge.open_loop() as loop:
        stream = bridge.vad(StubbornVAD(close_error=RuntimeError("close failed"))).stream(_silence())
        event = await stream.__anext__()
        assert event.type is tp.VADEventType.INFERENCE
        await stream.aclose()  # the consumer leaves; the plugin's close fails later
        assert [t for t in asyncio.all_tasks(loop) if not t.done()] == []
    assert "failed while closing: RuntimeError('close failed')" in caplog.text
    assert "never retrieved" not in caplog.text
