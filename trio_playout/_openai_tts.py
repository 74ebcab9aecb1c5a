"""``OpenAITTS``: streaming speech from ``/audio/speech`` as 24 kHz PCM, on trio.

Word timings are an estimate. The endpoint returns audio only, so each word is
placed at a time proportional to its character offset in the text: while the audio
streams in, the text's length in time is taken as ``len(text) / chars_per_second``
(or the audio received so far, if longer), and the words still unplaced when the
stream ends are placed on the real length. The session cuts the heard text at the
last word that started before the playback position, so after an interrupt the
history may be off by a word or two in a long sentence (the session synthesizes
sentence by sentence, which bounds the error to one sentence). Use a TTS with real
word timings (:mod:`trio_playout.espeak`) where the exact cut matters.

Frames are ``frame_duration`` long; the last whole frame of a text is held back
until the stream ends and goes out with the odd remainder (so the last frame may be
up to twice as long), carrying the words placed at the end. That is one frame of
delay, which costs nothing when audio arrives faster than it plays (the usual case).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import openai

from ._audio import AudioFrame
from ._models import SynthesizedAudio, WordTiming
from ._openai_common import (
    RetryPolicy,
    check_common,
    check_number,
    check_text,
    close_quietly,
    make_client,
    next_item,
    retrying,
)
from ._openai_common import call as provider_call

__all__ = ["OpenAITTS"]

SAMPLE_RATE = 24000  # what response_format="pcm" returns: 24 kHz, 16-bit little-endian, mono


class _WordClock:
    """Places words at times proportional to their character offsets (see the module)."""

    def __init__(self, text: str, chars_per_second: float) -> None:
        self._words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        self._length = max(1, len(text))
        self._guess = len(text) / chars_per_second
        self._next = 0
        self._last_start = 0.0

    def _start_of(self, index: int, total: float) -> float:
        return max(self._last_start, self._words[index][0] / self._length * total)

    def _timing(self, index: int, start: float, total: float) -> WordTiming:
        self._last_start = start
        end = self._words[index + 1][0] / self._length * total if index + 1 < len(self._words) else total
        s, e = self._words[index]
        return WordTiming(start, max(start, end), s, e)

    def due(self, frame_end: float) -> tuple[WordTiming, ...]:
        """Words that start before ``frame_end``, on the running estimate of the length."""
        total = max(self._guess, frame_end)
        out: list[WordTiming] = []
        while self._next < len(self._words):
            start = self._start_of(self._next, total)
            if start >= frame_end:
                break
            out.append(self._timing(self._next, start, total))
            self._next += 1
        return tuple(out)

    def rest(self, total: float) -> tuple[WordTiming, ...]:
        """Every word not yet placed, on the real length ``total``."""
        out: list[WordTiming] = []
        while self._next < len(self._words):
            start = min(self._start_of(self._next, total), total)
            out.append(self._timing(self._next, start, total))
            self._next += 1
        return tuple(out)


class OpenAITTS:
    """Speech from any OpenAI-compatible ``/audio/speech`` endpoint (a :class:`~trio_playout.TTS`).

    Audio streams as it is synthesized (``response_format="pcm"``: 24 kHz s16le mono).
    ``base_url``, ``api_key``, ``client``, ``timeout`` and the retry options work as
    for :class:`~trio_playout.openai.OpenAILLM`; a failed request is retried only
    before its first frame is handed on. ``instructions`` and ``speed`` are passed
    when given (``gpt-4o-mini-tts`` takes instructions), ``extra`` goes to the call
    as is. Word timings are estimated (see :mod:`trio_playout.openai`). Bad options
    (``frame_duration`` in [0.005, 1] s, ``chars_per_second`` and ``speed`` finite > 0,
    the rest as for ``OpenAILLM``) raise :class:`~trio_playout.VoiceOptionsError` here.
    """

    sample_rate = SAMPLE_RATE

    def __init__(self, model: str = "gpt-4o-mini-tts", voice: str = "alloy", *,
                 base_url: str | None = None, api_key: str | None = None,
                 client: openai.AsyncOpenAI | None = None, instructions: str | None = None,
                 speed: float | None = None, timeout: float = 30.0, max_retries: int = 2,
                 backoff: float = 0.5, max_retry_after: float = 10.0, frame_duration: float = 0.02,
                 chars_per_second: float = 15.0, extra: Mapping[str, Any] | None = None) -> None:
        check_text("model", model)
        check_text("voice", voice)
        check_text("instructions", instructions, optional=True, empty=True)
        check_common(base_url=base_url, api_key=api_key, client=client, extra=extra)
        if speed is not None:
            check_number("speed", speed, lo_open=True, hi=100.0)
        self.model = model
        self.voice = voice
        self.timeout = check_number("timeout", timeout, lo_open=True)
        self.retry = RetryPolicy(max_retries, backoff, max_retry_after)
        self.frame_duration = check_number("frame_duration", frame_duration, lo=0.005, hi=1.0)
        self.chars_per_second = check_number("chars_per_second", chars_per_second, lo_open=True)
        self.options: dict[str, Any] = dict(extra or {})
        if instructions is not None:
            self.options["instructions"] = instructions
        if speed is not None:
            self.options["speed"] = speed
        self._client, self._owned = make_client(client, base_url, api_key, timeout)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.close()

    async def __aenter__(self) -> OpenAITTS:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def synthesize(self, text: str) -> AsyncIterator[SynthesizedAudio]:
        return retrying("speech", self.retry, lambda: self._attempt(text))

    async def _attempt(self, text: str) -> AsyncIterator[SynthesizedAudio]:
        if not text.strip():
            return
        what = f"speech ({self.model})"
        streaming: Any = self._client.audio.speech.with_streaming_response.create(
            model=self.model, voice=self.voice, input=text, response_format="pcm", **self.options)
        response: Any = await provider_call(what, self.timeout, streaming.__aenter__)
        try:
            clock = _WordClock(text, self.chars_per_second)
            frame_bytes = 2 * max(1, round(self.frame_duration * SAMPLE_RATE))
            chunks = response.iter_bytes()
            pending = b""
            held: bytes | None = None  # the newest whole frame, not yet handed on
            emitted = 0.0  # seconds of audio handed on
            while True:
                more, data = await next_item(what, self.timeout, chunks)
                if not more:
                    break
                pending += data or b""
                offset = 0  # cut frames by index: one copy of the chunk, not one per frame
                while len(pending) - offset >= frame_bytes:
                    if held is not None:
                        yield self._frame(held, clock.due(emitted + len(held) / (2 * SAMPLE_RATE)))
                        emitted += len(held) / (2 * SAMPLE_RATE)
                    held = pending[offset:offset + frame_bytes]
                    offset += frame_bytes
                pending = pending[offset:]
            tail = pending[: len(pending) - len(pending) % 2]
            last = (held or b"") + tail
            if last:
                total = emitted + len(last) / (2 * SAMPLE_RATE)
                yield self._frame(last, clock.rest(total))
        finally:
            await close_quietly(lambda: streaming.__aexit__(None, None, None), what)

    @staticmethod
    def _frame(data: bytes, words: tuple[WordTiming, ...]) -> SynthesizedAudio:
        return SynthesizedAudio(AudioFrame(data, SAMPLE_RATE), words)
