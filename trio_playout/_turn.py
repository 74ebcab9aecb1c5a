"""The rules of the user's turn: barge-in, false interruptions, user turns, states.

Theory of operation
-------------------
This module decides what the user's voice *means*; it never awaits and imports no
trio. The trio driver (``_voice.py``) feeds :class:`TurnRules` with plain method
calls, each stamped with an explicit ``now`` (seconds on any monotonic clock), and
executes the returned actions in order. It also calls :meth:`TurnRules.tick` at
:meth:`TurnRules.next_deadline`. Speeches are opaque hashable keys; the driver
reports what it knows about one with :class:`SpeechFacts`.

Inputs: the VAD's start of speech, inference (with the current voiced
``speech_duration`` and the ``silence_duration`` since the user's voice was last
heard) and end of speech; the STT's interim and final transcripts; timer expiry; facts
about the agent's speeches; and the commit of a completed turn.

The rules, with livekit's option names (:class:`TurnOptions`):

1. **Utterances.** The user speaks from a start of speech to an end of speech. A
   start of speech within ``min_endpointing_delay`` of the previous end continues the
   same utterance and the same turn; any later one begins a new utterance, and the
   utterance's word count starts again at 0. Words are counted with ``str.split``
   over the utterance's final transcripts plus its latest interim one; words are
   never counted across utterances or across the agent's turn.
2. **Barge-in.** While a speech's audio is playing (its first frame went out) and it
   is interruptible, user speech with ``speech_duration >= min_interruption_duration``
   (voiced time: a short sound followed by silence never gets there)
   and, when ``min_interruption_words > 0``, at least that many words in the current
   utterance, takes effect at once: the speech is paused (:class:`PauseAudio`) if its
   sink can pause and pausing is on (``resume_false_interruption`` and a
   ``false_interruption_timeout`` that is not None); otherwise it is interrupted
   (:class:`InterruptSpeech`, source ``"audio_activity"``). It is checked on every
   inference, every transcript and every fact update (audio that starts while the
   user already talks is barged in on at its first frame), and interrupts a speech
   at most once per utterance (if the interrupt was refused, the next utterance may
   try again; this counts the ``"user_turn"`` interrupt of rule 3 too). Shorter
   speech does nothing. A protected speech is never paused or
   interrupted; the words are kept.
3. **Confirmed.** A paused speech is interrupted (source ``"user_turn"``) as soon as
   the current utterance's final transcripts hold ``max(1, min_interruption_words)``
   words, and when a user turn completes while it is paused.
4. **False.** At the end of the user's speech a paused speech arms a timer of
   ``false_interruption_timeout``; a new start of speech stops it until the next end
   of speech. When it expires the speech resumes where it paused
   (:class:`ResumeAudio` with ``false_interruption=True``; the driver emits
   ``FalseInterruption(resumed=...)`` from what the resume really did).
5. **A pause never outlives its speech.** Facts saying the paused speech finished
   (done or interrupted) or stopped playing drop the pause without resuming it
   (:class:`ReleasePause`: the sink must not stay paused for the next speech). A
   paused speech that becomes protected is resumed at once (it can no longer be
   interrupted). A completed user turn interrupts the paused speech. So a resume
   never lands on a speech that is done, interrupted or superseded by a newer turn;
   the driver re-checks at execution time as well.
6. **Backchannel.** With ``min_interruption_words = N > 0``, a turn of fewer than N
   final words while the agent holds the floor (a speech playing or paused) is a
   backchannel: no pause, no interrupt, no turn. Its text is kept and prepended to
   the user's next turn.
7. **User turns.** The endpoint is ``min_endpointing_delay`` after the end of the
   user's *voice*: the end of speech's time minus the silence the VAD already waited
   (its ``silence_duration``), as livekit counts it; a VAD that waited longer than the
   delay makes the endpoint due at its end of speech. At the endpoint the final
   transcripts received since the previous turn complete one turn
   (:class:`CompleteUserTurn`, the texts joined in order, backchannel text first).
   Interim text never counts, and interim text still waiting for its final holds the
   turn open: otherwise its final would make a second turn. Text that comes after the
   endpoint (a late final, or the interim taken back by an empty final or interim)
   completes the turn ``late_final_delay`` after the last such transcript while the
   user is silent and no interim is pending: a slow STT that delivers one utterance
   as two late finals gives one turn (so does a final the VAD heard no speech for).
   Each final text lands in exactly one turn; at close the driver writes the text
   still pending (:meth:`TurnRules.take_pending_text`). For a turn, the driver
   interrupts earlier interruptible speeches (source ``"user_turn"``), waits for them
   and for protected ones, writes the user message and schedules one reply (if
   ``auto_reply``), then reports :meth:`TurnRules.turn_committed`.
8. **States.** The user is ``"speaking"`` from start to end of speech, else
   ``"listening"``. The agent (:func:`agent_state`) is ``"speaking"`` while a
   speech's audio plays and is not paused, ``"thinking"`` from a completed turn
   (with ``auto_reply``) to the first frame of its reply (or the reply's end without
   audio), ``"listening"`` otherwise, ``"idle"`` only for a session without audio
   input. Each change is returned as an action, once.
9. **Without a VAD** (STT only) transcripts stand in for it: the first non-empty
   transcript starts the user's speech and a final one ends it on arrival; barge-in
   needs ``max(1, min_interruption_words)`` words and no duration. **Without an
   STT** (VAD only) there are no words: barge-in goes by duration alone (a
   ``min_interruption_words > 0`` then never barges in), a pause always ends in a
   resume after the timeout, and there are no user turns.
10. **Provisional pause** (``pause_on_speech_start``): a start of speech pauses a
   pausable, interruptible playing speech at once, and so does every voiced window
   (``silence_duration`` 0) while the user speaks and nothing is paused. It becomes a
   real barge-in when rule 2 holds; if the voice stops before that, for
   ``provisional_resume_silence`` by the VAD's ``silence_duration`` or by an end of
   speech, the audio resumes at once (``ResumeAudio(false_interruption=True,
   provisional=True)``: one ``FalseInterruption`` with ``provisional=True``), and
   pauses again if the voice comes back; words that confirm it (rule 3) interrupt it.

Module layout: the options, facts and actions are in :mod:`trio_playout._turn_types`,
the pause rules (2-5, 10) in :mod:`trio_playout._turn_pause` (:class:`PauseRules`,
the base of :class:`TurnRules`); this module keeps the user's utterances, turns,
endpointing and states (1, 6-9) and re-exports the rest.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

from ._turn_pause import PauseRules
from ._turn_types import (
    Action,
    AgentState,
    AgentStateChange,
    CompleteUserTurn,
    InterruptSpeech,
    PauseAudio,
    ReleasePause,
    ResumeAudio,
    SpeechFacts,
    TranscriptReceived,
    TurnOptions,
    UserState,
    UserStateChange,
    agent_state,
    count_words,
)

__all__ = [
    "Action",
    "AgentState",
    "AgentStateChange",
    "CompleteUserTurn",
    "InterruptSpeech",
    "PauseAudio",
    "PauseRules",
    "ReleasePause",
    "ResumeAudio",
    "SpeechFacts",
    "TranscriptReceived",
    "TurnOptions",
    "TurnRules",
    "UserState",
    "UserStateChange",
    "agent_state",
    "count_words",
]


class TurnRules(PauseRules):
    """The user-turn rules of one session (see the module docstring)."""

    def __init__(self, options: TurnOptions | None = None, *, has_vad: bool = True,
                 has_stt: bool = True) -> None:
        if options is None:
            options = TurnOptions()
        if not isinstance(options, TurnOptions):
            raise TypeError(f"options must be a TurnOptions, got {type(options).__name__}")
        if not (has_vad or has_stt):
            raise ValueError("the rules need a VAD, an STT or both")
        super().__init__(options, has_vad=has_vad)
        self.has_stt = has_stt
        # the user's utterance and turn
        self._utt_final_words = 0
        self._utt_interim = ""
        self._endpoint_at: float | None = None  # end of the voice + endpointing delay
        self._late = False  # _endpoint_at is a late-text delay (rule 7), moved by more text
        self._finals: list[str] = []  # final texts of the open turn
        self._carry: list[str] = []  # backchannel texts for the next turn
        # the agent
        self._uncommitted = 0  # completed turns not yet committed by the driver
        self._reply: Hashable | None = None  # reply awaiting its first frame
        # reported states
        self._user_state: UserState = "listening"
        self._agent_state: AgentState = "listening"

    # -- read-only ----------------------------------------------------------------
    @property
    def user_state(self) -> UserState:
        return self._user_state

    @property
    def agent_state(self) -> AgentState:
        return self._agent_state

    @property
    def pending_text(self) -> str:
        """Final text not yet in a completed turn (backchannel text first)."""
        return " ".join(self._carry + self._finals)

    @property
    def user_speaking(self) -> bool:
        return self._speaking

    def tracked_speeches(self) -> tuple[Hashable, ...]:
        """Speeches whose facts the driver should refresh before each input."""
        keys = dict.fromkeys(self._speeches)
        if self._reply is not None:
            keys[self._reply] = None
        return tuple(keys)

    def next_deadline(self) -> float:
        """When :meth:`tick` must be called next (``math.inf``: no timer)."""
        return min(t for t in (self._endpoint_at, self._resume_at, math.inf) if t is not None)

    # -- inputs: the VAD ---------------------------------------------------------------
    def start_of_speech(self, now: float) -> list[Action]:
        out: list[Action] = []
        self._run_due(now, out)
        if not self._speaking:
            self._begin_speech(now, out)
        return self._settle(out)

    def inference(self, now: float, speech_duration: float, silence_duration: float = 0.0) -> list[Action]:
        """One VAD window: the voiced ``speech_duration`` of the current speech and the
        ``silence_duration`` since the voice was last heard; they count only while the
        user speaks (between start and end of speech)."""
        out: list[Action] = []
        self._run_due(now, out)
        if self._speaking:
            self._voice_window(speech_duration, silence_duration, out)
        return self._settle(out)

    def end_of_speech(self, now: float, silence_duration: float = 0.0) -> list[Action]:
        """The VAD's end of speech; ``silence_duration``: the silence it waited before
        saying so (the voice ended that long ago; the endpoint counts from there)."""
        out: list[Action] = []
        self._run_due(now, out)
        if self._speaking:
            self._end_speech(now, out, voice_end=now - max(0.0, silence_duration))
            self._run_due(now, out)  # the endpoint may be due already
        return self._settle(out)

    # -- inputs: the STT -----------------------------------------------------------------
    def transcript(self, now: float, text: str, final: bool) -> list[Action]:
        out: list[Action] = []
        self._run_due(now, out)
        out.append(TranscriptReceived(text, final))
        words = count_words(text)
        if not self.has_vad and not self._speaking and words:
            self._begin_speech(now, out)
        if final:
            self._utt_interim = ""
            if words:
                self._finals.append(" ".join(text.split()))
                self._utt_final_words += words
        else:
            self._utt_interim = text
        self._check_barge_in(out)  # these words may barge in (pause) ...
        if (final and self._paused is not None  # ... and, being final, confirm it at once
                and self._utt_final_words >= max(1, self.options.min_interruption_words)):
            self._interrupt_paused(out)
        if not self.has_vad and final and self._speaking:
            self._end_speech(now, out)
        elif not self._speaking and (self._endpoint_at is None or self._late):
            self._late_text(now, out)  # the endpoint passed (or the VAD heard nothing)
        return self._settle(out)

    def take_pending_text(self) -> str:
        """Closing: the final text not in a completed turn (backchannel text first),
        removed from the rules, so the driver can write it: the user's words are never
        lost, even when the session closes before their endpoint."""
        text = self.pending_text
        self._carry.clear()
        self._finals.clear()
        self._endpoint_at, self._late = None, False
        return text

    # -- inputs: time and the agent ------------------------------------------------------
    def tick(self, now: float) -> list[Action]:
        out: list[Action] = []
        self._run_due(now, out)
        return self._settle(out)

    def speech_update(self, now: float, speech: Hashable, facts: SpeechFacts) -> list[Action]:
        """What the driver now knows about ``speech`` (report every change, and its end)."""
        out: list[Action] = []
        self._run_due(now, out)
        if facts.finished:
            self._speeches.pop(speech, None)
            if speech == self._reply:
                self._reply = None  # ended without a first frame
        else:
            self._speeches[speech] = facts
            if speech == self._reply and facts.playing:
                self._reply = None  # its first frame: no longer thinking
        self._paused_speech_update(speech, facts, out)
        self._check_barge_in(out)
        return self._settle(out)

    def turn_committed(self, now: float, reply: Hashable | None) -> list[Action]:
        """The driver wrote one completed turn; ``reply`` is the speech it scheduled."""
        if self._uncommitted == 0:
            raise ValueError("turn_committed() without a CompleteUserTurn to commit")
        out: list[Action] = []
        self._run_due(now, out)
        self._uncommitted -= 1
        if reply is not None:
            facts = self._speeches.get(reply)
            self._reply = None if facts is not None and facts.playing else reply
        return self._settle(out)

    # -- the rules ------------------------------------------------------------------------
    def _utt_words(self) -> int:
        return self._utt_final_words + count_words(self._utt_interim)

    def _begin_speech(self, now: float, out: list[Action]) -> None:
        if self._endpoint_at is None or now >= self._endpoint_at:
            self._utt_final_words = 0  # a new utterance
            self._utt_interim = ""
            self._barged = None
        self._speaking = True
        self._duration = 0.0
        self._silence = 0.0
        self._endpoint_at, self._late = None, False
        self._resume_at = None  # stopped until the next end of speech
        self._set_user("speaking", out)
        self._pause_provisionally(out)

    def _end_speech(self, now: float, out: list[Action], voice_end: float | None = None) -> None:
        self._speaking = False
        self._duration = 0.0
        self._silence = 0.0
        end = now if voice_end is None else voice_end
        self._endpoint_at, self._late = end + self.options.min_endpointing_delay, False
        self._set_user("listening", out)
        self._pause_at_end_of_speech(now, out)

    def _run_due(self, now: float, out: list[Action]) -> None:
        # Deadlines in time order; on a tie the turn goes first: it supersedes a resume.
        while True:
            endpoint = self._endpoint_at if self._endpoint_at is not None else math.inf
            resume = self._resume_at if self._resume_at is not None else math.inf
            if min(endpoint, resume) > now:
                return
            if endpoint <= resume:
                self._endpoint_at, self._late = None, False  # passed: later text is late (rule 7)
                if self._finals and not self._utt_interim.strip():
                    self._complete_turn(out)
            else:
                self._resume_due(out)

    def _late_text(self, now: float, out: list[Action]) -> None:
        """A transcript after the endpoint: (re)arm the late-text delay if final text
        waits and no interim holds the turn open; an interim does hold it (again)."""
        if self._utt_interim.strip():
            self._endpoint_at, self._late = None, False
        elif self._finals:
            self._endpoint_at, self._late = now + self.options.late_final_delay, True
            self._run_due(now, out)  # a delay of 0 completes it now

    def _complete_turn(self, out: list[Action]) -> None:
        words = sum(count_words(t) for t in self._finals)
        needed = self.options.min_interruption_words
        holds_floor = self._paused is not None or self._playing() is not None
        if needed and holds_floor and words < needed:
            self._carry.extend(self._finals)  # a backchannel: kept for the next turn
            self._finals.clear()
            return
        text = " ".join(self._carry + self._finals)
        self._carry.clear()
        self._finals.clear()
        if self._paused is not None:
            self._interrupt_paused(out)
        self._uncommitted += 1
        out.append(CompleteUserTurn(text, reply=self.options.auto_reply))

    # -- states ------------------------------------------------------------------------------
    def _set_user(self, new: UserState, out: list[Action]) -> None:
        if new != self._user_state:
            out.append(UserStateChange(self._user_state, new))
            self._user_state = new

    def _settle(self, out: list[Action]) -> list[Action]:
        playing = self._playing()
        new = agent_state(
            has_audio_input=True,
            audio_playing=playing is not None and playing != self._paused,
            thinking=(self._uncommitted > 0 and self.options.auto_reply) or self._reply is not None,
        )
        if new != self._agent_state:
            out.append(AgentStateChange(self._agent_state, new))
            self._agent_state = new
        return out
