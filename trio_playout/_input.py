"""The user's side: the VAD and STT protocols and what they emit.

A session with ``audio_input`` reads the user's microphone (any async iterable of
:class:`~trio_playout.AudioFrame`) and feeds two services: a :class:`VAD`, which says
when the user speaks, and an :class:`STT`, which says what was said. Each gets its own
copy of the frames, so a slow STT never delays the VAD.

Both are async iterators over an async iterator of frames, consumed inside the
session's nursery: closing the session stops iterating them and calls ``aclose()``
where the iterator has one. A VAD or STT that raises or ends is reported in the log
and the agent keeps speaking; it never takes the session down.

Times in :class:`VADEvent` are seconds of *audio* since the stream started (the VAD
counts the samples it was given), not clock readings: the session stamps events with
trio's clock when they arrive.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import trio

from ._audio import AudioFrame

__all__ = ["STT", "VAD", "Transcript", "VADEvent", "VADEventType"]

logger = logging.getLogger("trio_playout.voice")


class VADEventType(enum.Enum):
    """What a :class:`VADEvent` reports (livekit's names)."""

    START_OF_SPEECH = "start_of_speech"
    """Speech began (after the VAD's own ``min_speech_duration``)."""
    INFERENCE = "inference"
    """One analysis window: the voiced ``speech_duration`` and the ``silence_duration`` so far."""
    END_OF_SPEECH = "end_of_speech"
    """Speech ended (after the VAD's own ``min_silence_duration``); carries its voiced duration."""


@dataclass(frozen=True)
class VADEvent:
    """One event of a :class:`VAD` stream.

    ``timestamp`` is the audio time of the event in seconds since the stream started.
    ``speech_duration`` is the *voiced* time of the current speech so far: the audio
    the VAD judged to be speech since the start of speech, not the silence inside or
    after it (0 outside speech; ``END_OF_SPEECH`` carries the voiced time of the
    speech that ended). The turn rules compare it with ``min_interruption_duration``,
    so a VAD that also counts its trailing silence (as livekit's Silero plugin does)
    makes a short "hmm" barge in.
    ``silence_duration`` is how long the audio has been silent since the last voiced
    audio: 0 while the user's voice is heard, growing through a pause inside a speech
    (before the VAD's ``min_silence_duration`` ends it) and after the end of speech.
    ``probability`` is the model's speech probability for the last window (1.0 or 0.0
    for a VAD without one).
    """

    type: VADEventType
    timestamp: float
    speech_duration: float = 0.0
    silence_duration: float = 0.0
    probability: float = 0.0


@dataclass(frozen=True)
class Transcript:
    """Text the STT heard. ``final=False`` is an interim guess the STT may revise;
    a final transcript is never revised and covers the text since the previous final.
    """

    text: str
    final: bool = True


@runtime_checkable
class VAD(Protocol):
    """Voice activity detection over a stream of the user's audio frames."""

    def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[VADEvent]: ...


@runtime_checkable
class STT(Protocol):
    """Speech to text over a stream of the user's audio frames."""

    def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[Transcript]: ...


# -- the session's copy of the audio for one of them (used by trio_playout._voice) --------
_REPORT_EVERY = 5.0  # seconds of dropped audio between two "still behind" lines


class _FrameQueue:
    """Frames for one consumer: bounded by seconds of audio, oldest dropped first.

    ``__anext__`` is cancel-safe (a frame is taken only after its last wait):
    PocketSphinxSTT relies on it to hand results on while the input is idle.
    """

    cancel_safe = True

    def __init__(self, name: str, max_seconds: float) -> None:
        self.name = name
        self.max_seconds = max_seconds
        self._frames: deque[AudioFrame] = deque()
        self._seconds = 0.0
        self.consumed = 0.0  # seconds of audio the consumer has taken
        self._lot = trio.lowlevel.ParkingLot()
        self._closed = False
        self.dropped_seconds = 0.0
        self.dropped_frames = 0
        self._episode = 0.0  # seconds dropped since the consumer last caught up
        self._next_report = _REPORT_EVERY

    def put(self, frame: AudioFrame) -> bool:
        """Queue ``frame``; True if older audio had to be dropped for it."""
        self._frames.append(frame)
        self._seconds += frame.duration
        dropped = False
        while self._seconds > self.max_seconds and len(self._frames) > 1:
            old = self._frames.popleft()
            self._seconds -= old.duration
            self.dropped_seconds += old.duration
            self.dropped_frames += 1
            if self._episode == 0.0:
                logger.warning("the %s fell %.3g s behind the audio input; dropping its oldest audio",
                               self.name, self.max_seconds)
            self._episode += old.duration
            if self._episode >= self._next_report:
                logger.warning("the %s is still behind: %.3g s of audio dropped so far",
                               self.name, self._episode)
                self._next_report += _REPORT_EVERY
            dropped = True
        self._lot.unpark_all()
        return dropped

    def close(self) -> None:
        self._closed = True
        self._lot.unpark_all()

    def __aiter__(self) -> _FrameQueue:
        return self

    async def __anext__(self) -> AudioFrame:
        await trio.lowlevel.checkpoint()  # a consumer far behind must still let others run
        while not self._frames:
            if self._closed:
                raise StopAsyncIteration
            await self._lot.park()
        frame = self._frames.popleft()
        self._seconds -= frame.duration
        self.consumed += frame.duration
        if self._episode and not self._frames:
            logger.warning("the %s caught up after %.3g s of its audio were dropped (%.3g s in all)",
                           self.name, self._episode, self.dropped_seconds)
            self._episode = 0.0
            self._next_report = _REPORT_EVERY
        return frame
