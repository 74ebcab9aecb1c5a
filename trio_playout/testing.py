"""Fakes for testing agents built on trio_playout: a scripted LLM and a fake TTS.

They implement the public :class:`~trio_playout.LLM` and :class:`~trio_playout.TTS`
protocols and pace themselves on trio's clock, so they run under
``trio.testing.MockClock`` as well as in real time. Use them with
:class:`~trio_playout.RealtimeAudioSink` (``clear_delay`` 0, 0.15 or ``math.inf`` for
an immediate, an avatar-like or a deaf sink).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import trio

from ._audio import AudioFrame
from ._models import LLMChunk, LLMRequest, SynthesizedAudio, TextDelta, ToolCall, WordTiming

__all__ = ["FakeTTS", "LLMReply", "ScriptExhausted", "ScriptedLLM", "ToolCall"]


class ScriptExhausted(LookupError):
    """The :class:`ScriptedLLM` was asked for more steps than its script has."""


@dataclass(frozen=True)
class LLMReply:
    """One scripted step: text, then tool calls.

    ``ttft`` is the delay before the first chunk, ``chunk_delay`` the delay between
    text chunks (the text is streamed word by word).
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    ttft: float = 0.0
    chunk_delay: float = 0.0


@dataclass
class ScriptedLLM:
    """An LLM that replays ``replies``, one per step, in order.

    A step whose tools all finished un-interrupted asks for the next reply as its tool
    reply. :attr:`requests` keeps what each step saw (history and tools), so tests can
    check that an error output reached the model.
    """

    replies: Sequence[LLMReply]
    requests: list[LLMRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self.replies) - self._next

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.requests.append(request)
        if self._next >= len(self.replies):
            raise ScriptExhausted(f"the script has {len(self.replies)} replies; step {self._next + 1} asked")
        reply = self.replies[self._next]
        self._next += 1
        await trio.sleep(reply.ttft)
        for i, word in enumerate(re.findall(r"\S+\s*", reply.text)):
            if i and reply.chunk_delay:
                await trio.sleep(reply.chunk_delay)
            yield TextDelta(word)
        for call in reply.tool_calls:
            yield call


@dataclass
class FakeTTS:
    """Silent audio whose length follows the words, with word timings.

    Each word lasts ``1 / words_per_second`` seconds; audio comes in frames of
    ``frame_duration``. ``synthesis_delay`` is a pause before the first frame (time
    to first byte).
    """

    words_per_second: float = 3.0
    frame_duration: float = 0.02
    sample_rate: int = 16000
    synthesis_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.words_per_second <= 0 or self.frame_duration <= 0:
            raise ValueError("words_per_second and frame_duration must be positive")

    async def synthesize(self, text: str) -> AsyncIterator[SynthesizedAudio]:
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        per_word = 1.0 / self.words_per_second
        timings = [WordTiming(i * per_word, (i + 1) * per_word, s, e) for i, (s, e) in enumerate(words)]
        total = len(words) * per_word
        frame_samples = max(1, round(self.frame_duration * self.sample_rate))
        total_samples = round(total * self.sample_rate)
        await trio.sleep(self.synthesis_delay)
        start = 0
        pending = list(timings)
        while start < total_samples:
            n = min(frame_samples, total_samples - start)
            frame = AudioFrame(bytes(2 * n), self.sample_rate)
            end_t = (start + n) / self.sample_rate
            in_frame = tuple(w for w in pending if w.start < end_t)
            pending = pending[len(in_frame):]
            start += n
            yield SynthesizedAudio(frame, in_frame)
