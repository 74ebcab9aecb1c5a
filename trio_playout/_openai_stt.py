"""``OpenAISTT``: one final transcript per user utterance, through ``/audio/transcriptions``.

Why the STT delimits utterances itself: the :class:`~trio_playout.STT` protocol
gives it the user's frames and nothing else (the session's VAD runs on its own copy
and does not talk to the STT), and a request-per-file endpoint needs whole
utterances. So the STT cuts the audio by energy, with the same shape of rules as a
VAD: an utterance starts after ``min_speech`` seconds of frames louder than
``threshold_db`` (dBFS RMS) and ends after ``end_silence`` seconds below it (or at
``max_utterance``); it keeps ``pre_roll`` seconds before the start so the first
syllable is not clipped. Each utterance is sent as a 16-bit WAV at the input's own
rate and channels, and the text comes back as one final :class:`Transcript`.
``end_silence`` should stay below the session's endpointing delay, or the final
arrives after the turn was due. Energy is a crude detector: in noise raise
``threshold_db``.

While a request runs, the STT does not read frames; the session queues them for it
(``stt_buffer``, 10 s by default), and the next utterance is cut from them after.
A request that still fails after its retries is logged and its utterance skipped
(counted in :attr:`OpenAISTT.failed`): raising would stop the session's STT for
good, and the user can repeat a sentence, not a dead microphone.
"""

from __future__ import annotations

import logging
import math
import sys
import wave
from array import array
from collections import deque
from collections.abc import AsyncIterator, Mapping
from io import BytesIO
from typing import Any

import openai
import trio

from ._audio import AudioFrame
from ._exceptions import ProviderError
from ._input import Transcript
from ._openai_common import RetryPolicy, check_common, check_number, check_text, make_client
from ._openai_common import call as provider_call

__all__ = ["OpenAISTT"]

logger = logging.getLogger("trio_playout.openai")


def frame_dbfs(frame: AudioFrame) -> float:
    """RMS level of a frame in dB relative to full scale (-inf for digital silence)."""
    samples = array("h")
    samples.frombytes(frame.data)
    if sys.byteorder == "big":
        samples.byteswap()
    if not samples:
        return -math.inf
    power = math.fsum(s * s for s in samples) / len(samples)
    return 10 * math.log10(power / (32768.0 * 32768.0)) if power > 0 else -math.inf


def wav_bytes(frames: list[AudioFrame]) -> bytes:
    """The frames as one 16-bit PCM WAV file."""
    out = BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(frames[0].num_channels)
        w.setsampwidth(2)
        w.setframerate(frames[0].sample_rate)
        w.writeframes(b"".join(f.data for f in frames))
    return out.getvalue()


class _Segmenter:
    """Cuts frames into utterances by energy (see the module docstring)."""

    def __init__(self, threshold_db: float, min_speech: float, end_silence: float, pre_roll: float,
                 max_utterance: float) -> None:
        self.threshold_db = threshold_db
        self.min_speech, self.end_silence = min_speech, end_silence
        self.pre_roll, self.max_utterance = pre_roll, max_utterance
        self._before: deque[AudioFrame] = deque()  # idle: the last pre_roll + min_speech seconds
        self._before_time = 0.0
        self._loud = 0.0
        self._speech: list[AudioFrame] | None = None
        self._speech_time = self._silence = 0.0

    def push(self, frame: AudioFrame) -> list[AudioFrame] | None:
        """Feed one frame; returns an utterance's frames when one ends."""
        done: list[AudioFrame] | None = None
        if self._speech is not None and (frame.sample_rate, frame.num_channels) != (
                self._speech[0].sample_rate, self._speech[0].num_channels):
            done = self.flush()  # the format changed: what we have is one utterance
        loud = frame_dbfs(frame) >= self.threshold_db
        if self._speech is None:
            self._before.append(frame)
            self._before_time += frame.duration
            self._loud = self._loud + frame.duration if loud else 0.0
            keep = self.pre_roll + max(self.min_speech, self._loud)  # the loud run and pre_roll before it
            while len(self._before) > 1 and self._before_time - self._before[0].duration >= keep - 1e-9:
                self._before_time -= self._before.popleft().duration
            if loud and self._loud >= self.min_speech - 1e-9:  # min_speech=0: the first loud frame
                fmt = (frame.sample_rate, frame.num_channels)
                self._speech = [f for f in self._before if (f.sample_rate, f.num_channels) == fmt]
                self._speech_time = sum(f.duration for f in self._speech)
                self._silence = 0.0
                self._before.clear()
                self._before_time = self._loud = 0.0
            return done
        self._speech.append(frame)
        self._speech_time += frame.duration
        self._silence = 0.0 if loud else self._silence + frame.duration
        ended = not loud and self._silence >= self.end_silence - 1e-9  # end_silence=0: the first quiet frame
        if ended or self._speech_time >= self.max_utterance:
            return self.flush()
        return done

    def flush(self) -> list[AudioFrame] | None:
        speech, self._speech = self._speech, None
        return speech or None


class OpenAISTT:
    """Transcribes each user utterance with any OpenAI-compatible ``/audio/transcriptions``.

    An :class:`~trio_playout.STT` that yields final transcripts only. ``base_url``,
    ``api_key``, ``client``, ``timeout`` and the retry options work as for
    :class:`~trio_playout.openai.OpenAILLM` (a transcription request is retried whole:
    nothing was handed on yet). ``language`` and ``prompt`` are passed when given.
    The utterance options are described in :mod:`trio_playout.openai`: ``threshold_db``
    in [-200, 0] dBFS, ``min_speech``, ``end_silence`` and ``pre_roll`` in [0, 60] s (0
    works: the first loud frame starts an utterance, the first quiet one ends it, no
    audio before the start is kept), ``max_utterance`` in (0, 3600] s; bad options raise
    :class:`~trio_playout.VoiceOptionsError` here.
    """

    def __init__(self, model: str = "whisper-1", *, base_url: str | None = None,
                 api_key: str | None = None, client: openai.AsyncOpenAI | None = None,
                 language: str | None = None, prompt: str | None = None, timeout: float = 30.0,
                 max_retries: int = 2, backoff: float = 0.5, max_retry_after: float = 10.0,
                 threshold_db: float = -40.0, min_speech: float = 0.1, end_silence: float = 0.4,
                 pre_roll: float = 0.3, max_utterance: float = 30.0,
                 extra: Mapping[str, Any] | None = None) -> None:
        check_text("model", model)
        check_text("language", language, optional=True)
        check_text("prompt", prompt, optional=True, empty=True)
        check_common(base_url=base_url, api_key=api_key, client=client, extra=extra)
        segmenter_args = (
            check_number("threshold_db", threshold_db, lo=-200.0, hi=0.0),  # dBFS: above 0 is never reached
            check_number("min_speech", min_speech, hi=60.0),
            check_number("end_silence", end_silence, hi=60.0),
            check_number("pre_roll", pre_roll, hi=60.0),
            check_number("max_utterance", max_utterance, lo_open=True, hi=3600.0))
        self.model = model
        self.timeout = check_number("timeout", timeout, lo_open=True)
        self.retry = RetryPolicy(max_retries, backoff, max_retry_after)
        self._segmenter_args = segmenter_args
        self.options: dict[str, Any] = dict(extra or {})
        if language is not None:
            self.options["language"] = language
        if prompt is not None:
            self.options["prompt"] = prompt
        self.failed = 0
        """Utterances skipped because their transcription failed."""
        self._client, self._owned = make_client(client, base_url, api_key, timeout)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.close()

    async def __aenter__(self) -> OpenAISTT:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[Transcript]:
        segmenter = _Segmenter(*self._segmenter_args)
        async for frame in frames:
            utterance = segmenter.push(frame)
            if utterance is not None:
                text = await self._transcribe_or_skip(utterance)
                if text:
                    yield Transcript(text, final=True)
        utterance = segmenter.flush()
        if utterance is not None:
            text = await self._transcribe_or_skip(utterance)
            if text:
                yield Transcript(text, final=True)

    async def _transcribe_or_skip(self, frames: list[AudioFrame]) -> str:
        try:
            return await self.transcribe(frames)
        except ProviderError as exc:
            self.failed += 1
            logger.error("transcribing an utterance of %.2fs failed; skipped: %s",
                         sum(f.duration for f in frames), exc)
            return ""

    async def transcribe(self, frames: list[AudioFrame]) -> str:
        """The text of one utterance (retried per the policy); raises :class:`ProviderError`."""
        what = f"transcription ({self.model})"
        wav = wav_bytes(frames)
        create: Any = self._client.audio.transcriptions.create
        attempt = 0
        while True:
            try:
                result: Any = await provider_call(what, self.timeout, lambda: create(
                    model=self.model, file=("utterance.wav", wav, "audio/wav"), **self.options))
                text = result if isinstance(result, str) else result.text
                return str(text).strip()
            except ProviderError as err:
                delay = self.retry.delay(attempt, err)
                if delay is None:
                    raise
                logger.warning("%s failed (%s); retry %d of %d in %.2fs", what, err, attempt + 1,
                               self.retry.max_retries, delay)
            attempt += 1
            await trio.sleep(delay)
