"""The agent factories of ``python -m trio_playout.web``: offline, or an OpenAI-compatible LLM.

Both build the expensive, shareable parts once (the Silero model session, the
PocketSphinx model check, the espeak engine) and give every conversation its own
session over them: :class:`~trio_playout.silero.SileroVAD` and
:class:`~trio_playout.sphinx.PocketSphinxSTT` keep per-stream state (one sphinx
worker process per conversation), :class:`~trio_playout.offline.RuleLLM` answers
from the request's history only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import trio_playout as tp

from ._web_conversation import Agent, AgentFactory, ConversationInfo

__all__ = ["AgentConfig", "default_factory", "turn_options"]


@dataclass(frozen=True)
class AgentConfig:
    """What ``python -m trio_playout.web`` was asked for."""

    llm_base_url: str | None = None
    llm_model: str | None = None
    silent_tts: bool = False  # FakeTTS instead of espeak (no GPL engine; the page plays silence)
    pause_on_speech_start: bool = False
    greeting: str = "Hello! I am a trio-playout agent. Hold the button and talk to me."
    sink_grace: float = 2.0


def turn_options(query: Mapping[str, str], default_pause_on_speech_start: bool) -> tp.TurnOptions:
    """The turn options of one conversation: ``?pause_on_speech_start=1`` (or ``0``) on the
    websocket URL (the page's toggle) overrides the server's default; anything else keeps it."""
    value = query.get("pause_on_speech_start", "").lower()
    pause = {"1": True, "true": True, "0": False, "false": False}.get(value, default_pause_on_speech_start)
    return tp.TurnOptions(pause_on_speech_start=pause)


def default_factory(config: AgentConfig) -> AgentFactory:
    """Build the shared parts now (errors surface at start-up) and return the factory."""
    from .offline import offline_agent
    from .testing import FakeTTS

    offline = offline_agent(tts=FakeTTS() if config.silent_tts else None)
    llm: tp.LLM = offline.llm
    tools = offline.tools
    if config.llm_base_url or config.llm_model:
        from .openai import OpenAILLM

        llm = OpenAILLM(model=config.llm_model or "gpt-4o-mini", base_url=config.llm_base_url)

    def factory(info: ConversationInfo) -> Agent:
        return Agent(llm=llm, tts=offline.tts, vad=offline.vad, stt=offline.stt, tools=tools,
                     turn=turn_options(info.query, config.pause_on_speech_start),
                     greeting=config.greeting, sink_grace=config.sink_grace)

    return factory
