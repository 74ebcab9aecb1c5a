"""The voice demo's user: a microphone that plays recorded clips on cue, and a scripted STT.

The user reacts to what they hear, as a person does: each clip starts when its cue
holds (for example "1.6 s of the agent's reply have been heard"), so the story is the
same whatever the TTS's speed, and under a MockClock as in real time. The microphone
delivers 20 ms frames paced on trio's clock, silence between clips, for as long as the
session reads it.

The STT is scripted (real speech-to-text is not part of this demo): it knows the words
of each clip the microphone played and reports them when the clip's audio has reached
it, the final ``latency`` after the clip ends, as a streaming STT would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import trio

from ._audio import AudioFrame
from ._input import Transcript

__all__ = ["ClipSTT", "Cue", "Placed", "UserMic"]


@dataclass(frozen=True)
class Cue:
    """A clip to say once ``ready()`` holds (checked every frame) or at ``deadline`` (trio time)."""

    label: str
    audio: AudioFrame  # mono, at the microphone's rate
    words: str | None  # what an STT hears; None: no words (a "hmm", a noise)
    ready: Callable[[], bool]
    why: str  # for the timeline: what the user reacted to


@dataclass(frozen=True)
class Placed:
    """A clip the microphone played: from ``start`` to ``end`` on trio's clock."""

    cue: Cue
    start: float
    end: float
    forced: bool = False  # its cue never held; it was said at the fallback deadline


@dataclass
class UserMic:
    """The user's microphone: ``cues`` in order, each said when it is ready.

    A cue that never becomes ready is said ``fallback`` seconds after the previous clip
    ended, so the demo always finishes. ``on_clip`` is called as each clip starts.
    """

    cues: list[Cue]
    on_clip: Callable[[Placed], None] = lambda placed: None
    sample_rate: int = 16000
    frame_duration: float = 0.02
    fallback: float = 12.0
    placed: list[Placed] = field(default_factory=list)

    def __aiter__(self) -> AsyncIterator[AudioFrame]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[AudioFrame]:
        n = round(self.frame_duration * self.sample_rate)
        t0 = trio.current_time()
        k = 0
        clip: bytes = b""
        offset = 0  # bytes of the current clip already delivered
        previous_end = t0
        while True:
            now = t0 + k * self.frame_duration  # the start of the frame about to be filled
            if offset >= len(clip) and len(self.placed) < len(self.cues):
                cue = self.cues[len(self.placed)]
                forced = now >= previous_end + self.fallback
                if forced or cue.ready():
                    clip, offset = cue.audio.data, 0
                    placed = Placed(cue, now, now + cue.audio.duration, forced and not cue.ready())
                    previous_end = placed.end
                    self.placed.append(placed)
                    self.on_clip(placed)
            chunk = clip[offset:offset + 2 * n]
            offset += len(chunk)
            k += 1
            await trio.sleep_until(t0 + k * self.frame_duration)
            yield AudioFrame(chunk + bytes(2 * n - len(chunk)), self.sample_rate)


@dataclass
class ClipSTT:
    """The STT protocol, scripted: the words of each clip of ``mic``, when it has been heard.

    An interim transcript (the first half of the words) when half the clip has been
    heard, the final one ``latency`` seconds after the clip ends. Clips without words
    give nothing. Like a real STT it only answers as audio arrives.
    """

    mic: UserMic
    latency: float = 0.25

    async def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[Transcript]:
        interim_sent: set[int] = set()
        final_sent: set[int] = set()
        async for _frame in frames:
            now = trio.current_time()
            for i, placed in enumerate(list(self.mic.placed)):
                words = placed.cue.words
                if words is None or i in final_sent:
                    continue
                if i not in interim_sent and now >= (placed.start + placed.end) / 2:
                    interim_sent.add(i)
                    split = words.split()
                    yield Transcript(" ".join(split[:max(1, len(split) // 2)]), False)
                if now >= placed.end + self.latency:
                    final_sent.add(i)
                    yield Transcript(words, True)
