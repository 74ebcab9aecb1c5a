"""The vocabulary of the turn rules: options, facts about a speech, and the actions.

Pure data, no trio: :class:`TurnOptions` (the public options, livekit's names),
:class:`SpeechFacts` (what the driver knows about one speech), the actions the
rules return for the driver to execute in order, and two small helpers
(:func:`count_words`, :func:`agent_state`). The rules themselves are in
:mod:`trio_playout._turn` (user turns, endpointing, states) and
:mod:`trio_playout._turn_pause` (barge-in, provisional and false-interruption
pauses); everything here is re-exported from :mod:`trio_playout._turn`.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "Action",
    "AgentState",
    "AgentStateChange",
    "CompleteUserTurn",
    "InterruptSource",
    "InterruptSpeech",
    "PauseAudio",
    "ReleasePause",
    "ResumeAudio",
    "SpeechFacts",
    "TranscriptReceived",
    "TurnOptions",
    "UserState",
    "UserStateChange",
    "agent_state",
    "count_words",
]

UserState = Literal["listening", "speaking"]
AgentState = Literal["idle", "listening", "thinking", "speaking"]
InterruptSource = Literal["audio_activity", "user_turn"]


def _seconds(name: str, value: object, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        kind = "a number of seconds or None" if allow_none else "a number of seconds"
        raise TypeError(f"{name} must be {kind}, got {type(value).__name__}")
    if not (0 <= value < math.inf):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class TurnOptions:
    """How the user's voice interrupts the agent and ends a turn (livekit's names).

    ``min_interruption_duration``: seconds of user speech (by the VAD) that barge in.
    ``min_interruption_words``: words of the current utterance also needed (0: none);
    fewer words while the agent speaks are a backchannel, kept for the next turn.
    ``false_interruption_timeout``: seconds of silence after the user's speech with no
    words before a paused speech resumes. ``None`` disables pausing, as in livekit:
    a barge-in then interrupts the speech at once (source ``"audio_activity"``) and
    nothing is ever resumed.
    ``resume_false_interruption``: pause (and later resume) instead of interrupting,
    when the sink can pause. False: a barge-in interrupts.
    ``min_endpointing_delay``: seconds of silence after the user's voice that end
    the user's turn, counted from the end of the voice (the VAD's end of speech minus
    the silence it waited), as livekit counts it.
    ``late_final_delay``: seconds to wait, after a final transcript that arrives
    once the endpoint has passed (a slow STT), for more of the same utterance before
    completing the turn: one utterance delivered as two late finals gives one turn.
    0 completes the turn on the late final's arrival (livekit's behaviour).
    ``auto_reply``: schedule one reply per completed turn; False only records the
    user's message (call ``generate_reply`` yourself).
    ``min_interruption_duration`` counts the VAD's ``speech_duration``: *voiced* time
    (:class:`~trio_playout.VADEvent`), not the silence after a short sound.
    ``pause_on_speech_start``: pause at the VAD's start of speech already (and again
    whenever the user's voice comes back before it counts as a barge-in), and resume
    at once when the voice stops short of a barge-in.
    ``provisional_resume_silence``: with ``pause_on_speech_start``, seconds of silence
    in the user's voice (the VAD's ``silence_duration``) after which a provisional
    pause resumes, without waiting for the VAD's end of speech (Silero's
    ``min_silence_duration`` is 0.55 s). Default 0.05: two 32 ms Silero windows, so a
    0.3 s "hmm" pauses the agent for ~0.35 s in all. Longer bridges the gaps between
    words (fewer pause/resume flips before a barge-in is confirmed) but holds every
    cough's pause longer by as much.
    """

    min_interruption_duration: float = 0.5
    min_interruption_words: int = 0
    false_interruption_timeout: float | None = 2.0
    resume_false_interruption: bool = True
    min_endpointing_delay: float = 0.5
    auto_reply: bool = True
    pause_on_speech_start: bool = False
    provisional_resume_silence: float = 0.05
    late_final_delay: float = 0.2

    def __post_init__(self) -> None:
        _seconds("min_interruption_duration", self.min_interruption_duration)
        _seconds("provisional_resume_silence", self.provisional_resume_silence)
        _seconds("false_interruption_timeout", self.false_interruption_timeout, allow_none=True)
        _seconds("min_endpointing_delay", self.min_endpointing_delay)
        _seconds("late_final_delay", self.late_final_delay)
        words = self.min_interruption_words
        if not isinstance(words, int) or isinstance(words, bool):
            raise TypeError(f"min_interruption_words must be an int, got {type(words).__name__}")
        if words < 0:
            raise ValueError(f"min_interruption_words must be >= 0, got {words}")
        for name in ("resume_false_interruption", "auto_reply", "pause_on_speech_start"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")

    @property
    def pause_enabled(self) -> bool:
        """Whether a barge-in pauses a pausable sink instead of interrupting."""
        return self.resume_false_interruption and self.false_interruption_timeout is not None


@dataclass(frozen=True)
class SpeechFacts:
    """What the driver knows about one speech right now.

    ``interruptible``: a non-forced interrupt would be accepted (not protected).
    ``playing``: its current step's audio has started (first frame) and not finished
    (also while paused).
    ``pausable``: the sink playing it can pause.
    ``finished``: done or interrupted: its audio will never play again.
    """

    interruptible: bool = True
    playing: bool = False
    pausable: bool = False
    finished: bool = False


# -- actions, executed by the driver in order ------------------------------------------
@dataclass(frozen=True)
class PauseAudio:
    speech: Hashable
    provisional: bool = False


@dataclass(frozen=True)
class ResumeAudio:
    """Resume a paused speech; ``false_interruption``: emit ``FalseInterruption``
    (``provisional``: the pause was a provisional one that the speech never confirmed)."""

    speech: Hashable
    false_interruption: bool
    provisional: bool = False


@dataclass(frozen=True)
class ReleasePause:
    """The pause is over without a resume (the speech ended or was interrupted):
    make sure the sink is not left paused, without playing any of this speech."""

    speech: Hashable


@dataclass(frozen=True)
class InterruptSpeech:
    speech: Hashable
    source: InterruptSource


@dataclass(frozen=True)
class CompleteUserTurn:
    """One user turn: write ``text`` as the user message; ``reply``: schedule a reply."""

    text: str
    reply: bool


@dataclass(frozen=True)
class UserStateChange:
    old: UserState
    new: UserState


@dataclass(frozen=True)
class AgentStateChange:
    old: AgentState
    new: AgentState


@dataclass(frozen=True)
class TranscriptReceived:
    text: str
    final: bool


Action = (PauseAudio | ResumeAudio | ReleasePause | InterruptSpeech | CompleteUserTurn
          | UserStateChange | AgentStateChange | TranscriptReceived)


def count_words(text: str) -> int:
    """Words as the rules count them (whitespace-separated)."""
    return len(text.split())


def agent_state(*, has_audio_input: bool, audio_playing: bool, thinking: bool) -> AgentState:
    """livekit's agent states. ``audio_playing`` excludes paused audio."""
    if audio_playing:
        return "speaking"
    if thinking:
        return "thinking"
    return "listening" if has_audio_input else "idle"
