"""Pipecat processors for :mod:`benchmarks.peer_pipecat`: mic, STT, LLM, TTS, speaker.

Each part is a subclass of pipecat's own base class, so pipecat's machinery runs
unchanged between them: the input transport's audio task, the user aggregator's
``VADController`` and turn strategies, the interruption broadcast, the TTS
service's audio contexts and the output transport's ``MediaSender`` (its queue,
re-chunking, and the queue reset on an interruption). Only the ends are fake: the
microphone is a WAV fed on the real clock, the STT and LLM are scripted, the TTS
makes tone frames at the spec's pace and the loudspeaker is
:class:`benchmarks._pipecat_record.Speaker`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field

import numpy as np
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams, VADState
from pipecat.frames.frames import (
    Frame,
    InterruptionFrame,
    LLMContextFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    OutputAudioRawFrame,
    StartFrame,
    TranscriptionFrame,
    TTSAudioRawFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.services.llm_service import LLMService
from pipecat.services.settings import LLMSettings, STTSettings, TTSSettings
from pipecat.services.stt_service import STTService
from pipecat.services.tts_service import TTSService
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import TransportParams
from pipecat.utils.time import time_now_iso8601

from ._pipecat_record import FRAME_S, Speaker, encode_frame


@dataclass
class Stamps:
    """What the parts observed, on perf_counter (the runner subtracts w0)."""

    w0: float | None = None
    vad_probs: list[tuple[float, float]] = field(default_factory=list)  # (window end in audio s, p)
    # every VAD result as the event loop receives it: (t, "inference"|"start"|"end", p, window end)
    vad_events: list[tuple[float, str, float | None, float | None]] = field(default_factory=list)
    interruptions: list[float] = field(default_factory=list)  # InterruptionFrame at the output
    llm_runs: list[float] = field(default_factory=list)
    reply_created: dict[int, float] = field(default_factory=dict)
    reply_frames: dict[int, int] = field(default_factory=dict)
    transcript_at: float | None = None


class StampedSilero(SileroVADAnalyzer):
    """Pipecat's Silero analyzer, unchanged, with its results stamped as the pipeline gets them.

    The model runs in the analyzer's own executor thread (pipecat's design);
    :meth:`voice_confidence` records each window's probability there, and
    :meth:`analyze_audio` stamps each new window ("inference") when the result is
    back on the event loop, i.e. when the pipeline receives it, followed by
    "start"/"end" when pipecat's VAD state turns SPEAKING / QUIET (its
    ``start_secs``/``stop_secs`` rules, the events the user aggregator acts on).
    """

    def __init__(self, *, params: VADParams, stamps: Stamps) -> None:
        super().__init__(sample_rate=16000, params=params)
        self._stamps = stamps
        self._lock = threading.Lock()
        self._windows = 0
        self._speaking = False

    def voice_confidence(self, buffer: bytes) -> float:
        confidence: float = super().voice_confidence(buffer)  # returned as pipecat made it
        p = float(np.asarray(confidence, dtype=np.float64).reshape(-1)[0])
        with self._lock:
            self._windows += 1
            self._stamps.vad_probs.append((self._windows * 512 / 16000, p))
        return confidence

    async def analyze_audio(self, buffer: bytes) -> VADState:
        seen = len(self._stamps.vad_probs)
        state: VADState = await super().analyze_audio(buffer)
        if self._stamps.w0 is None:
            return state
        now = time.perf_counter()
        events = self._stamps.vad_events
        for at, p in self._stamps.vad_probs[seen:]:
            events.append((now, "inference", p, at))
        # the VADController's view: STARTING/STOPPING change nothing, SPEAKING/QUIET do
        if state == VADState.SPEAKING and self._speaking is False:
            self._speaking = True
            events.append((now, "start", None, None))
        elif state == VADState.QUIET and self._speaking:
            self._speaking = False
            events.append((now, "end", None, None))
        return state


class WavMic(BaseInputTransport):
    """An input transport whose "device" is the runner pushing WAV frames."""

    def __init__(self, params: TransportParams, ready: asyncio.Event) -> None:
        super().__init__(params)
        self._ready = ready

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._ready.set()


class SpeakerOut(BaseOutputTransport):
    """An output transport writing to :class:`Speaker`.

    On an ``InterruptionFrame`` it clears the speaker before pipecat's own
    handling resets the ``MediaSender`` queue, as pipecat's websocket transports
    forward the interruption to their client as a "clear".
    """

    def __init__(self, params: TransportParams, speaker: Speaker, stamps: Stamps,
                 ready: asyncio.Event) -> None:
        super().__init__(params)
        self._speaker = speaker
        self._stamps = stamps
        self._ready = ready

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._ready.set()

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        if isinstance(frame, InterruptionFrame):
            self._stamps.interruptions.append(time.perf_counter())
            self._speaker.clear()
        await super().process_frame(frame, direction)

    async def write_audio_frame(self, frame: OutputAudioRawFrame) -> bool:
        return await self._speaker.write(frame.audio, frame.sample_rate)


class ScriptedSTT(STTService):
    """Gives one final transcript once the audio reaches ``at`` seconds (None: never)."""

    def __init__(self, *, text: str | None, at: float | None, stamps: Stamps) -> None:
        super().__init__(sample_rate=16000, ttfs_p99_latency=0.2,
                         settings=STTSettings(model=None, language=None))
        self._text = text
        self._at = at
        self._stamps = stamps
        self._heard = 0.0

    async def run_stt(self, audio: bytes) -> AsyncGenerator[Frame | None, None]:
        self._heard += len(audio) / 2 / 16000
        if self._text and self._at is not None and self._heard >= self._at:
            text, self._text = self._text, None
            self._stamps.transcript_at = time.perf_counter()
            yield TranscriptionFrame(text=text, user_id="", timestamp=time_now_iso8601(),
                                     finalized=True)


class ScriptedLLM(LLMService):
    """Answers every context at once: the agent's text first, then short replies."""

    def __init__(self, *, first: str | None, stamps: Stamps) -> None:
        super().__init__(settings=LLMSettings(
            model=None, system_instruction=None, temperature=None, max_tokens=None, top_p=None,
            top_k=None, frequency_penalty=None, presence_penalty=None, seed=None,
            filter_incomplete_user_turns=False, user_turn_completion_config=None))
        self._first = first
        self._stamps = stamps
        self._n = 0

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if not isinstance(frame, LLMContextFrame):
            await self.push_frame(frame, direction)
            return
        self._stamps.llm_runs.append(time.perf_counter())
        self._n += 1
        text = self._first if (self._n == 1 and self._first) else f"Answer number {self._n}. Okay."
        await self.push_frame(LLMFullResponseStartFrame())
        await self._push_llm_text(text)
        await self.push_frame(LLMFullResponseEndFrame())


class ToneTTS(TTSService):
    """A TTS that renders ``len(text) * seconds_per_char`` of tagged tone, instantly.

    Built like pipecat's HTTP TTS services (OpenAI's): start/stop frames and the
    audio context come from the base class, the sentence's text goes to the
    context after its audio (no word timestamps). Frames are whole 20 ms at the
    output rate so the speaker gets them byte for byte; each is tagged with its
    reply (one per LLM response: pipecat reuses the context id within a turn)
    and its index in that reply.
    """

    def __init__(self, *, seconds_per_char: float, stamps: Stamps, rate: int = 24000) -> None:
        super().__init__(sample_rate=rate, push_start_frame=True, push_stop_frames=True,
                         settings=TTSSettings(model=None, voice=None, language=None))
        self._spc = seconds_per_char
        self._stamps = stamps
        self._rate = rate
        self._replies: dict[str, int] = {}

    def can_generate_metrics(self) -> bool:
        return False

    async def run_tts(self, text: str, context_id: str) -> AsyncGenerator[Frame | None, None]:
        reply = self._replies.get(context_id)
        if reply is None:
            reply = self._replies[context_id] = len(self._replies) + 1
            self._stamps.reply_created[reply] = time.perf_counter()
        first = self._stamps.reply_frames.get(reply, 0)
        n = max(1, round(len(text.strip()) * self._spc / FRAME_S))
        self._stamps.reply_frames[reply] = first + n
        for i in range(first, first + n):
            yield TTSAudioRawFrame(encode_frame(reply, i, self._rate), self._rate, 1,
                                   context_id=context_id)
