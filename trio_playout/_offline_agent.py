"""The default offline voice agent: Silero VAD, PocketSphinx STT, RuleLLM, espeak-ng TTS.

Every part comes from an optional extra and is imported only when
:func:`offline_agent` builds it, so importing :mod:`trio_playout.offline` stays light.
A missing extra raises :class:`MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from ._audio import AudioFrame, AudioOutput
from ._exceptions import ModelNotFoundError, PlayoutError, SpeechEngineError
from ._input import STT, VAD
from ._models import LLM, TTS
from ._open import open_session
from ._session import Session
from ._tools import FunctionTool
from ._turn import TurnOptions

__all__ = ["MissingExtraError", "OfflineAgent", "offline_agent"]


class MissingExtraError(PlayoutError, ImportError):
    """A part of the offline agent needs an optional extra that is not installed.

    :attr:`extra` names it: ``pip install 'trio-playout[<extra>]'``. It is an
    ``ImportError``, so ``except ImportError`` catches it too.
    """

    def __init__(self, extra: str, what: str, detail: str) -> None:
        super().__init__(f"{what} needs the '{extra}' extra: pip install 'trio-playout[{extra}]' ({detail})")
        self.extra = extra


@dataclass(frozen=True)
class OfflineAgent:
    """The parts of a voice agent that runs without a network; see :func:`offline_agent`.

    Pass them to :func:`~trio_playout.open_session` yourself, or call
    :meth:`open_session` with the sink and the microphone.
    """

    llm: LLM
    tts: TTS
    vad: VAD
    stt: STT
    tools: tuple[FunctionTool, ...] = ()

    def open_session(self, *, output: AudioOutput, audio_input: AsyncIterable[AudioFrame],
                     turn: TurnOptions | None = None, **options: Any
                     ) -> AbstractAsyncContextManager[Session]:
        """``tp.open_session`` with these parts; ``options`` are passed on (``sink_grace``...)."""
        return open_session(llm=self.llm, tts=self.tts, output=output, tools=self.tools,
                            audio_input=audio_input, vad=self.vad, stt=self.stt, turn=turn, **options)


def _silero() -> VAD:
    try:
        from .silero import SileroVAD
    except ImportError as exc:
        raise MissingExtraError("vad", "the offline agent's VAD (Silero)", str(exc)) from exc
    try:
        return SileroVAD()
    except ModelNotFoundError as exc:
        raise MissingExtraError("vad", "the offline agent's VAD (Silero)", str(exc)) from exc


def _sphinx() -> STT:
    try:
        from .sphinx import PocketSphinxSTT
    except ImportError as exc:
        raise MissingExtraError("sphinx", "the offline agent's STT (PocketSphinx)", str(exc)) from exc
    return PocketSphinxSTT()


def _espeak(voice: str, rate: int) -> TTS:
    from .espeak import EspeakTTS, library_path

    try:
        library_path()
    except SpeechEngineError as exc:
        raise MissingExtraError("espeak", "the offline agent's TTS (espeak-ng, GPL-3.0)",
                                "libespeak-ng was not found; or pass tts= another TTS, e.g. "
                                "trio_playout.testing.FakeTTS() for a silent voice") from exc
    return EspeakTTS(voice, rate)


def offline_agent(*, tools: Sequence[FunctionTool] | None = None, llm: LLM | None = None,
                  tts: TTS | None = None, vad: VAD | None = None, stt: STT | None = None,
                  voice: str = "en-us", rate: int = 175) -> OfflineAgent:
    """The default offline voice agent: nothing is downloaded, no network is used.

    * VAD: :class:`trio_playout.silero.SileroVAD` (extra ``vad``), for barge-in;
    * STT: :class:`trio_playout.sphinx.PocketSphinxSTT` (extra ``sphinx``), which
      makes the user's turns;
    * LLM: :class:`RuleLLM` (no extra), which answers by fixed rules;
    * TTS: :class:`trio_playout.espeak.EspeakTTS` with ``voice`` and ``rate`` (extra
      ``espeak``, GPL-3.0).

    ``tools`` defaults to ``(get_time,)`` (so "what time is it?" is answered through a
    tool call); pass ``()`` for none. Any part passed in is used as it is and its
    extra is not needed: e.g. ``tts=trio_playout.testing.FakeTTS()`` gives a silent
    agent (whose words still time the heard text) where espeak-ng, a GPL engine,
    is not wanted. There is no silent fallback: a missing extra raises
    :class:`MissingExtraError` naming it. Building the parts loads the Silero model
    and checks the PocketSphinx model (tens of ms); call it before the session, once.
    """
    from ._offline_rules import RuleLLM, get_time

    return OfflineAgent(
        llm=llm if llm is not None else RuleLLM(),
        tts=tts if tts is not None else _espeak(voice, rate),
        vad=vad if vad is not None else _silero(),
        stt=stt if stt is not None else _sphinx(),
        tools=tuple(tools) if tools is not None else (get_time,),
    )
