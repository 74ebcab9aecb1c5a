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
