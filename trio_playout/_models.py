"""The LLM and TTS protocols a session talks to.

A session needs two services and no more: an :class:`LLM` that streams text and
tool calls for one step, and a :class:`TTS` that turns text into audio frames with
word timings. Anything with these shapes plugs in: a real provider client, or the
fakes in :mod:`trio_playout.testing`.

Both are async iterators consumed inside the speech's cancel scope: when the speech
is interrupted the session stops iterating and calls ``aclose()`` if the iterator
has one, so a provider can close its stream in a ``finally``.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

from ._audio import AudioFrame
from ._history import ChatItem

if TYPE_CHECKING:
    from ._tools import FunctionTool

__all__ = ["LLM", "TTS", "LLMChunk", "LLMRequest", "SynthesizedAudio", "TextDelta", "ToolCall",
           "WordTiming"]


@dataclass(frozen=True)
class TextDelta:
    """A piece of the reply's text, in order."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A tool call the LLM emits.

    ``arguments`` is the JSON text the LLM produced, or a mapping (encoded as JSON
    for the history). ``call_id`` identifies the call; a session assigns one when it
    is None. Ids are unique in a session: a call whose id repeats one used earlier
    in the session is not run, and is recorded under a fresh id with an error output
    naming the repeated id (the first call keeps its id).
    """

    name: str
    arguments: str | Mapping[str, Any] = field(default_factory=dict)
    call_id: str | None = None

    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(dict(self.arguments), sort_keys=True, default=str)


LLMChunk: TypeAlias = TextDelta | ToolCall


@dataclass(frozen=True)
class LLMRequest:
    """What the LLM sees for one step: the history so far and the available tools."""

    history: Sequence[ChatItem]
    tools: Sequence[FunctionTool]


@runtime_checkable
class LLM(Protocol):
    """Streams one step of a reply: :class:`TextDelta` and :class:`ToolCall` chunks."""

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]: ...


@dataclass(frozen=True)
class WordTiming:
    """When a word is spoken, relative to the start of its synthesis.

    ``start_char`` and ``end_char`` index the text given to ``synthesize``, so the
    heard text can be cut at the playback position.
    """

    start: float
    end: float
    start_char: int
    end_char: int


@dataclass(frozen=True)
class SynthesizedAudio:
    """One frame of synthesized audio and the words that start within it."""

    frame: AudioFrame
    words: tuple[WordTiming, ...] = ()


@runtime_checkable
class TTS(Protocol):
    """Synthesizes text into audio frames in order, with word timings."""

    def synthesize(self, text: str) -> AsyncIterator[SynthesizedAudio]: ...
