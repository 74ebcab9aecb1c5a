"""The pause rules: barge-in, provisional pauses and false-interruption resumes.

Pure, like the rest of the turn rules (no trio, no awaiting): :class:`PauseRules`
holds what the session knows about the agent's speeches and the one paused speech,
and decides when the user's voice pauses, resumes or interrupts it (rules 2-5 and
10 of :mod:`trio_playout._turn`, whose :class:`~trio_playout._turn.TurnRules` builds
the user-turn and endpointing rules on top of it). The user's side of the state
(speaking, voiced duration, silence run, the utterance's words) is kept here too,
because every pause decision reads it; :class:`~trio_playout._turn.TurnRules` owns
its changes.

The voice measures are the VAD's: ``_duration`` is the voiced ``speech_duration``
of the current speech and ``_silence`` its ``silence_duration`` (the run of silence
since the last voiced window), see :class:`~trio_playout.VADEvent`.
"""

from __future__ import annotations

from collections.abc import Hashable

from ._turn_types import (
    Action,
    InterruptSpeech,
    PauseAudio,
    ReleasePause,
    ResumeAudio,
    SpeechFacts,
    TurnOptions,
)

__all__ = ["PauseRules"]


class PauseRules:
    """Barge-in and the pause of one speech; the base of :class:`~trio_playout._turn.TurnRules`."""

    def __init__(self, options: TurnOptions, *, has_vad: bool) -> None:
        self.options = options
        self.has_vad = has_vad
        # the user's voice (changed by TurnRules)
        self._speaking = False
        self._duration = 0.0  # voiced speech_duration of the current speech
        self._silence = 0.0  # silence run inside the current speech
        # the agent
        self._speeches: dict[Hashable, SpeechFacts] = {}
        self._paused: Hashable | None = None
        self._barged: Hashable | None = None  # interrupted by this utterance: never again
        self._provisional = False
        self._resume_at: float | None = None

    def _utt_words(self) -> int:
        """Words of the current utterance (TurnRules counts them)."""
        raise NotImplementedError

    @property
    def paused_speech(self) -> Hashable | None:
        return self._paused

    def _playing(self) -> Hashable | None:
        for key, facts in self._speeches.items():
            if facts.playing:
                return key
        return None

    # -- the provisional pause (rule 10) ----------------------------------------------
    def _pause_provisionally(self, out: list[Action]) -> None:
        """The user's voice is heard: pause the playing speech until it counts or stops."""
        if not (self.options.pause_on_speech_start and self.has_vad and self._speaking
                and self._paused is None and self.options.pause_enabled):
            return
        target = self._playing()
        if target is None or target == self._barged:
            return
        facts = self._speeches[target]
        if facts.interruptible and facts.pausable:
            self._paused, self._provisional = target, True
            out.append(PauseAudio(target, provisional=True))

    def _voice_window(self, speech_duration: float, silence_duration: float, out: list[Action]) -> None:
        """One VAD window while the user speaks: barge in, or follow the voice provisionally."""
        self._duration = max(self._duration, speech_duration)
        self._silence = silence_duration
        self._check_barge_in(out)
        if silence_duration <= 0.0:
            self._pause_provisionally(out)
        elif (self._provisional and self._paused is not None
              and silence_duration >= self.options.provisional_resume_silence - 1e-9):
            self._resume_provisional(out)

    def _resume_provisional(self, out: list[Action]) -> None:
        speech = self._paused
        assert speech is not None
        self._clear_pause()
        out.append(ResumeAudio(speech, false_interruption=True, provisional=True))

    # -- the end of the user's speech (rules 4 and 10) ---------------------------------------
    def _pause_at_end_of_speech(self, now: float, out: list[Action]) -> None:
        if self._paused is None:
            return
        if self._provisional:
            self._resume_provisional(out)
        else:
            timeout = self.options.false_interruption_timeout
            assert timeout is not None  # pausing needs one
            self._resume_at = now + timeout

    # -- barge-in (rules 2 and 3) -----------------------------------------------------------
    def _check_barge_in(self, out: list[Action]) -> None:
        if not self._speaking:
            return
        target = self._playing()
        if target is None:
            return
        facts = self._speeches[target]
        if (not facts.interruptible or target == self._barged
                or (target == self._paused and not self._provisional)):
            return
        words_needed = self.options.min_interruption_words
        if self.has_vad:
            if self._duration < self.options.min_interruption_duration:
                return
        else:
            words_needed = max(1, words_needed)
        if self._utt_words() < words_needed:
            return
        if facts.pausable and self.options.pause_enabled:
            if target == self._paused:
                self._provisional = False  # the provisional pause now counts
            else:
                self._paused, self._provisional = target, False
                out.append(PauseAudio(target))
        else:
            if target == self._paused:
                self._clear_pause()
                out.append(InterruptSpeech(target, "audio_activity"))
                out.append(ReleasePause(target))
            else:
                out.append(InterruptSpeech(target, "audio_activity"))
            self._speeches.pop(target, None)
            self._barged = target  # once per utterance, even if the driver reports it refused

    def _interrupt_paused(self, out: list[Action]) -> None:
        speech = self._paused
        assert speech is not None
        self._clear_pause()
        self._speeches.pop(speech, None)
        self._barged = speech  # once per utterance, even if the driver reports it refused
        out.append(InterruptSpeech(speech, "user_turn"))
        out.append(ReleasePause(speech))

    # -- facts about the paused speech (rule 5) ----------------------------------------------
    def _paused_speech_update(self, speech: Hashable, facts: SpeechFacts, out: list[Action]) -> None:
        if speech != self._paused:
            return
        if facts.finished or not facts.playing:
            self._drop_pause(out)
        elif not facts.interruptible:
            self._clear_pause()
            out.append(ResumeAudio(speech, false_interruption=False))

    def _drop_pause(self, out: list[Action]) -> None:
        speech = self._paused
        assert speech is not None
        self._clear_pause()
        out.append(ReleasePause(speech))

    def _clear_pause(self) -> None:
        self._paused = None
        self._provisional = False
        self._resume_at = None

    def _resume_due(self, out: list[Action]) -> None:
        """The false-interruption timer expired: resume where it paused (rule 4)."""
        speech = self._paused
        assert speech is not None
        self._clear_pause()
        out.append(ResumeAudio(speech, false_interruption=True))
