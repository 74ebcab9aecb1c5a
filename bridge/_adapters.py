"""livekit plugins as trio_playout providers: ``bridge.llm``, ``bridge.tts``, ``bridge.stt``, ``bridge.vad``.

livekit-agents has dozens of asyncio plugins; a trio-native session
(``tp.open_session``) talks to four small protocols. These adapters put one in front
of the other, so a trio program running under :func:`bridge.run` or inside
``async with bridge.open_loop():`` can use any livekit 1.8.x plugin object::

    from livekit.plugins import openai, silero

    async def main() -> None:
        async with tp.open_session(
            llm=bridge.llm(openai.LLM(model="gpt-4o-mini")),
            tts=bridge.tts(openai.TTS(response_format="pcm")),
            output=sink, tools=[...],
            audio_input=mic, vad=bridge.vad(silero.VAD.load()),
            stt=bridge.stt(openai.STT(), vad=silero.VAD.load()),
        ) as session:
            ...

    bridge.run(main)

What crosses, and how:

* **LLM.** Our history becomes a livekit ``ChatContext`` (messages with their
  ``interrupted`` flag, function calls and their outputs; an ``instructions`` string
  becomes a leading system message). Our tools go as livekit *raw* function tools
  carrying our JSON schemas: livekit only sends the schema to the model; the session
  runs the calls, so the raw tool's body is never called. livekit's ``ChatChunk``
  deltas come back as :class:`~trio_playout.TextDelta` and
  :class:`~trio_playout.ToolCall` (livekit's plugins assemble a call's argument
  deltas before emitting it, so each call arrives whole).
* **TTS.** ``synthesize(text)`` runs the plugin's ``synthesize`` (every livekit TTS has
  it; streaming TTSs implement it over their stream) and turns each ``rtc.AudioFrame``
  into an :class:`~trio_playout.AudioFrame`. Word timings are passed on when the
  plugin gives them (livekit's timed transcripts on the frame, for TTSs with
  ``aligned_transcript``); each word is located in the text by searching forward from
  the previous one. Without them (OpenAI's TTS, most HTTP TTSs) frames carry no
  words, and the session then records an interrupted reply at sentence granularity:
  every sentence sent to the TTS counts as heard.
* **STT.** Our frames are pushed into the plugin's ``stream()``; ``FINAL_TRANSCRIPT``
  events become final :class:`~trio_playout.Transcript`, ``INTERIM`` and
  ``PREFLIGHT`` ones interim transcripts. A non-streaming STT (OpenAI's Whisper
  endpoint) needs ``vad=``, a livekit VAD: it is wrapped in livekit's own
  ``stt.StreamAdapter``, which transcribes each utterance the VAD delimits.
* **VAD.** Our frames are pushed into the plugin's ``stream()``; its events become
  :class:`~trio_playout.VADEvent` (``INFERENCE_DONE`` -> ``INFERENCE``), with
  livekit's audio-time ``timestamp``. The durations are recomputed from each
  window's probability with the plugin's thresholds (:class:`VoicedTime`):
  livekit's Silero counts the trailing silence as speech until its end of speech,
  ours is the voiced time and the silence run, as ``trio_playout.silero`` reports.

Cancellation and errors (see :mod:`bridge._adapt_stream`): the session closes a
provider's iterator when a speech is interrupted or the session closes; that cancels
the livekit stream's owner task once, ``aclose()`` runs exactly once (closing the HTTP
response or websocket), and the trio side waits, shielded and bounded, until it is
done, so no asyncio task is left pending. livekit's retries (``conn_options``: by
default 3, only while nothing was handed on yet) run inside the plugin's stream; what
finally fails is raised as a typed error (see :mod:`bridge._adapt_errors`).

Known limits (livekit 1.8.9): livekit-plugins-openai assembles tool-call argument
deltas in arrival order, not by index, so a server that interleaves parallel calls'
deltas yields a first call with empty arguments and a second with both concatenated
(the session then records argument errors for them; OpenAI itself sends calls one
after the other). A livekit stream runs on trio-asyncio's loop, where an asyncio
callback costs several times what it does on stock asyncio (see the bridge's
benchmarks); an interrupt still reached the server about 1 ms after it was asked for
in the tests.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from typing import Any

from livekit.agents import llm as lk_llm
from livekit.agents import stt as lk_stt
from livekit.agents import tts as lk_tts
from livekit.agents import vad as lk_vad
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)

import trio_playout as tp

# The conversions live in _adapt_chat, _adapt_audio and _adapt_vad; this module keeps
# the adapters and their factories. They look the conversions up here, in this module's
# namespace, so that replacing one here (benchmarks.bridge_adapters wraps
# from_chat_chunk, tests replace plugin_thresholds) still reaches the adapters.
from ._adapt_audio import _is_end_marker, _push_frame, _WordLocator
from ._adapt_audio import from_rtc_frame as from_rtc_frame
from ._adapt_audio import from_speech_event as from_speech_event
from ._adapt_audio import to_rtc_frame as to_rtc_frame
from ._adapt_chat import from_chat_chunk as from_chat_chunk
from ._adapt_chat import to_chat_context as to_chat_context
from ._adapt_chat import to_livekit_tools as to_livekit_tools
from ._adapt_errors import provider_error
from ._adapt_stream import CLOSE_TIMEOUT, lk_events
from ._adapt_vad import Thresholds as Thresholds
from ._adapt_vad import VoicedTime as VoicedTime
from ._adapt_vad import from_vad_event as from_vad_event
from ._adapt_vad import plugin_thresholds as plugin_thresholds

__all__ = ["LivekitLLM", "LivekitSTT", "LivekitTTS", "LivekitVAD", "llm", "stt", "tts", "vad"]

logger = logging.getLogger("bridge")


# -- LLM --------------------------------------------------------------------------------


class LivekitLLM:
    """trio_playout's :class:`~trio_playout.LLM` over a livekit ``llm.LLM`` (see :func:`llm`)."""

    def __init__(self, lk: lk_llm.LLM[Any], *, instructions: str | None = None,
                 conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                 close_timeout: float = CLOSE_TIMEOUT, **chat_kwargs: Any) -> None:
        self.livekit = lk
        self.instructions = instructions
        self.conn_options = conn_options
        self.close_timeout = close_timeout
        self._chat_kwargs = chat_kwargs

    def __repr__(self) -> str:
        return f"<bridge.llm {self.livekit.label} model={self.livekit.model!r}>"

    def stream(self, request: tp.LLMRequest) -> AsyncGenerator[tp.LLMChunk, None]:
        chat_ctx = to_chat_context(request.history, self.instructions)
        tools = to_livekit_tools(request.tools)

        def open_stream() -> lk_llm.LLMStream:
            return self.livekit.chat(chat_ctx=chat_ctx, tools=tools, conn_options=self.conn_options,
                                     **self._chat_kwargs)

        return lk_events(open_stream, from_chat_chunk, what=f"{self.livekit.label} chat stream",
                         map_error=provider_error, close_timeout=self.close_timeout)


def llm(lk: lk_llm.LLM[Any], *, instructions: str | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS, **chat_kwargs: Any) -> LivekitLLM:
    """Adapt a livekit ``llm.LLM`` (any plugin) into a trio_playout ``LLM``.

    ``instructions`` becomes a system message before the history. ``conn_options``
    (livekit's retries and timeout) and ``chat_kwargs`` (``tool_choice=``,
    ``parallel_tool_calls=``, ``extra_kwargs=``) go to ``chat()``. Must be iterated
    under a bridge loop (``bridge.run`` / ``bridge.open_loop``).
    """
    if not isinstance(lk, lk_llm.LLM):
        raise TypeError(f"bridge.llm() takes a livekit llm.LLM, got {type(lk).__name__}")
    return LivekitLLM(lk, instructions=instructions, conn_options=conn_options, **chat_kwargs)


# -- TTS --------------------------------------------------------------------------------


class LivekitTTS:
    """trio_playout's :class:`~trio_playout.TTS` over a livekit ``tts.TTS`` (see :func:`tts`)."""

    def __init__(self, lk: lk_tts.TTS[Any], *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.livekit = lk
        self.conn_options = conn_options
        self.close_timeout = close_timeout

    def __repr__(self) -> str:
        return f"<bridge.tts {self.livekit.label} model={self.livekit.model!r}>"

    def synthesize(self, text: str) -> AsyncGenerator[tp.SynthesizedAudio, None]:
        locate = _WordLocator(text)

        def convert(audio: lk_tts.SynthesizedAudio) -> Iterable[tp.SynthesizedAudio]:
            frame = audio.frame
            if frame.samples_per_channel == 0 or (audio.is_final and _is_end_marker(frame)):
                return ()
            return (tp.SynthesizedAudio(from_rtc_frame(frame), locate.words(frame)),)

        def open_stream() -> lk_tts.ChunkedStream:
            return self.livekit.synthesize(text, conn_options=self.conn_options)

        return lk_events(open_stream, convert, what=f"{self.livekit.label} synthesis",
                         map_error=provider_error, close_timeout=self.close_timeout)


def tts(lk: lk_tts.TTS[Any], *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> LivekitTTS:
    """Adapt a livekit ``tts.TTS`` (any plugin) into a trio_playout ``TTS``.

    Each ``synthesize(text)`` is one plugin ``synthesize`` request. Audio comes in the
    plugin's sample rate (the session's sink resamples if it must). Word timings only
    if the plugin provides them; see the module docstring for what happens without.
    """
    if not isinstance(lk, lk_tts.TTS):
        raise TypeError(f"bridge.tts() takes a livekit tts.TTS, got {type(lk).__name__}")
    return LivekitTTS(lk, conn_options=conn_options)


# -- STT and VAD ------------------------------------------------------------------------



class LivekitSTT:
    """trio_playout's :class:`~trio_playout.STT` over a livekit ``stt.STT`` (see :func:`stt`)."""

    def __init__(self, lk: lk_stt.STT[Any], *, language: NotGivenOr[str] = NOT_GIVEN,
                 conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.livekit = lk
        self.language = language
        self.conn_options = conn_options
        self.close_timeout = close_timeout

    def __repr__(self) -> str:
        return f"<bridge.stt {self.livekit.label} model={self.livekit.model!r}>"

    def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncGenerator[tp.Transcript, None]:
        def open_stream() -> lk_stt.RecognizeStream:
            return self.livekit.stream(language=self.language, conn_options=self.conn_options)

        return lk_events(open_stream, from_speech_event, what=f"{self.livekit.label} recognition",
                         map_error=provider_error, frames=frames, push=_push_frame,
                         close_timeout=self.close_timeout)


def stt(lk: lk_stt.STT[Any], *, vad: lk_vad.VAD | None = None, language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> LivekitSTT:
    """Adapt a livekit ``stt.STT`` (any plugin) into a trio_playout ``STT``.

    A streaming STT is used as is. A non-streaming one (``capabilities.streaming`` is
    False, as OpenAI's Whisper endpoint) needs ``vad``, a *livekit* VAD: it is wrapped
    in livekit's ``stt.StreamAdapter``, which sends each utterance the VAD delimits
    to ``recognize`` and yields one final transcript per utterance.
    """
    if not isinstance(lk, lk_stt.STT):
        raise TypeError(f"bridge.stt() takes a livekit stt.STT, got {type(lk).__name__}")
    if not lk.capabilities.streaming:
        if vad is None:
            raise tp.VoiceOptionsError(
                f"{lk.label} does not stream: pass vad=<a livekit VAD> so each utterance is "
                "transcribed (livekit's stt.StreamAdapter)")
        if not isinstance(vad, lk_vad.VAD):
            raise TypeError(f"vad= takes a livekit vad.VAD, got {type(vad).__name__}")
        lk = lk_stt.StreamAdapter(stt=lk, vad=vad)
    return LivekitSTT(lk, language=language, conn_options=conn_options)


class LivekitVAD:
    """trio_playout's :class:`~trio_playout.VAD` over a livekit ``vad.VAD`` (see :func:`vad`);
    each stream's durations are re-measured by a :class:`VoicedTime`."""

    def __init__(self, lk: lk_vad.VAD, *, thresholds: Thresholds | None = None,
                 close_timeout: float = CLOSE_TIMEOUT) -> None:
        self.livekit = lk
        self.thresholds = thresholds  # explicit; None: the plugin's, read per window
        self.close_timeout = close_timeout

    def __repr__(self) -> str:
        return f"<bridge.vad {type(self.livekit).__module__}.{type(self.livekit).__name__}>"

    def current_thresholds(self) -> Thresholds | None:
        return self.thresholds if self.thresholds is not None else plugin_thresholds(self.livekit)

    def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncGenerator[tp.VADEvent, None]:
        return lk_events(self.livekit.stream, VoicedTime(self.current_thresholds).convert,
                         what=f"{self!r} stream", map_error=provider_error, frames=frames,
                         push=_push_frame, close_timeout=self.close_timeout)


def _threshold(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise tp.VoiceOptionsError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def vad(lk: lk_vad.VAD, *, activation_threshold: float | None = None,
        deactivation_threshold: float | None = None) -> LivekitVAD:
    """Adapt a livekit ``vad.VAD`` (``silero.VAD.load()``, say) into a trio_playout ``VAD``.

    Event times are the plugin's (seconds of audio since the stream started), and so
    are its starts and ends of speech. ``speech_duration`` and ``silence_duration``
    are recomputed from its per-window probabilities to mean voiced time and silence
    run (:class:`VoicedTime`), so ``min_interruption_duration`` and
    ``provisional_resume_silence`` work as with ``trio_playout.silero.SileroVAD``.

    The thresholds are the plugin's (livekit's Silero exposes them). For a plugin
    that does not, pass ``activation_threshold`` (``deactivation_threshold``
    defaults to ``max(activation_threshold - 0.15, 0.01)``, as livekit's); without
    them its durations pass in livekit's meaning, with a warning. Thresholds given
    here override the plugin's: keep them equal to what it starts and ends with.
    """
    if not isinstance(lk, lk_vad.VAD):
        raise TypeError(f"bridge.vad() takes a livekit vad.VAD, got {type(lk).__name__}")
    thresholds: Thresholds | None = None
    if activation_threshold is not None:
        act = _threshold("activation_threshold", activation_threshold)
        deact = _threshold("deactivation_threshold", max(act - 0.15, 0.01)
                           if deactivation_threshold is None else deactivation_threshold)
        if deact > act:
            raise tp.VoiceOptionsError(f"deactivation_threshold {deact} exceeds activation_threshold {act}")
        thresholds = (act, deact)
    elif deactivation_threshold is not None:
        raise tp.VoiceOptionsError("deactivation_threshold needs activation_threshold")
    adapted = LivekitVAD(lk, thresholds=thresholds)
    if adapted.current_thresholds() is None:
        logger.warning("%r exposes no thresholds: its speech_duration and silence_duration pass as it "
                       "counts them (trailing silence may count as speech); pass activation_threshold=",
                       adapted)
    return adapted
