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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ._audio import AudioFrame

__all__ = ["STT", "VAD", "Transcript", "VADEvent", "VADEventType"]


class VADEventType(enum.Enum):
    """What a :class:`VADEvent` reports (livekit's names)."""

    START_OF_SPEECH = "start_of_speech"
    """Speech began (after the VAD's own ``min_speech_duration``)."""
    INFERENCE = "inference"
    """One analysis window: ``speech_duration`` and ``silence_duration`` so far."""
    END_OF_SPEECH = "end_of_speech"
    """Speech ended (after the VAD's own ``min_silence_duration``)."""


@dataclass(frozen=True)
class VADEvent:
    """One event of a :class:`VAD` stream.

    ``timestamp`` is the audio time of the event in seconds since the stream started.
    ``speech_duration`` is how long the current speech has lasted (0 outside speech);
    ``silence_duration`` how long the current silence has lasted (0 inside speech).
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
