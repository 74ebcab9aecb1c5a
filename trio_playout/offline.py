"""A voice agent that runs offline: no network, no download, no API key.

:func:`offline_agent` gives the parts of the default offline agent: the Silero VAD
(extra ``vad``), PocketSphinx speech to text (extra ``sphinx``), :class:`RuleLLM` and
espeak-ng speech (extra ``espeak``, GPL-3.0)::

    from trio_playout.offline import offline_agent

    agent = offline_agent()                       # MissingExtraError names a missing extra
    async with agent.open_session(output=tp.RealtimeAudioSink(), audio_input=mic) as session:
        ...                                       # the user speaks; RuleLLM answers

:class:`RuleLLM` is a deterministic :class:`~trio_playout.LLM` made of simple rules
(greeting, the time through a tool, "what did you say", goodbye, and "I heard: ..."
for anything else), streamed like a real LLM. It is the stand-in for a model in
demos, examples and tests; for a real one see :mod:`trio_playout.openai`.

Importing this module is light: the models are imported only when
:func:`offline_agent` builds them.
"""

from ._offline_agent import MissingExtraError, OfflineAgent, offline_agent
from ._offline_rules import Reply, RuleLLM, get_time, split_deltas

__all__ = ["MissingExtraError", "OfflineAgent", "Reply", "RuleLLM", "get_time", "offline_agent",
           "split_deltas"]
