"""The user-turn rules (trio_playout._turn), with plain function calls and explicit times."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_playout._turn import (
    Action,
    AgentStateChange,
    CompleteUserTurn,
    InterruptSpeech,
    PauseAudio,
    ReleasePause,
    ResumeAudio,
    SpeechFacts,
    TranscriptReceived,
    TurnOptions,
    TurnRules,
    UserStateChange,
    agent_state,
    count_words,
)

S = "speech-1"
PLAYING = SpeechFacts(interruptible=True, playing=True, pausable=True)
NO_PAUSE = SpeechFacts(interruptible=True, playing=True, pausable=False)
PROTECTED = SpeechFacts(interruptible=False, playing=True, pausable=True)
FINISHED = SpeechFacts(finished=True)


def of(actions: Sequence[Action], kind: type) -> list[Action]:
    return [a for a in actions if isinstance(a, kind)]


def effects(actions: Sequence[Action]) -> list[Action]:
    """What the driver must do to the agent (no state or transcript notices)."""
    return [a for a in actions if isinstance(a, (PauseAudio, ResumeAudio, ReleasePause,
                                                InterruptSpeech, CompleteUserTurn))]


def talk(rules: TurnRules, start: float, end: float, window: float = 0.032) -> list[Action]:
    """The VAD hears speech from ``start`` to ``end``: start, an inference per window, end."""
    out = rules.start_of_speech(start)
    t = start + window
    while t < end:
        out += rules.inference(t, t - start)
        t += window
    out += rules.end_of_speech(end)
    return out


def playing_rules(options: TurnOptions | None = None, facts: SpeechFacts = PLAYING, **kw: bool) -> TurnRules:
    rules = TurnRules(options or TurnOptions(), **kw)
    rules.speech_update(0.0, S, facts)
    return rules


# -- options -----------------------------------------------------------------------------
def test_options_defaults_are_livekits() -> None:
    o = TurnOptions()
    assert (o.min_interruption_duration, o.min_interruption_words, o.false_interruption_timeout,
            o.resume_false_interruption, o.min_endpointing_delay, o.auto_reply,
            o.pause_on_speech_start, o.provisional_resume_silence
            ) == (0.5, 0, 2.0, True, 0.5, True, False, 0.05)
    assert o.late_final_delay == 0.2  # ours: livekit completes on a late final's arrival (0)
    assert o.pause_enabled
    assert not TurnOptions(false_interruption_timeout=None).pause_enabled
    assert not TurnOptions(resume_false_interruption=False).pause_enabled


@pytest.mark.parametrize(("kwargs", "error"), [
    ({"min_interruption_duration": -0.1}, ValueError),
    ({"min_interruption_duration": math.nan}, ValueError),
    ({"min_interruption_duration": "0.5"}, TypeError),
    ({"min_interruption_duration": True}, TypeError),
    ({"min_interruption_words": -1}, ValueError),
    ({"min_interruption_words": 1.5}, TypeError),
    ({"min_interruption_words": True}, TypeError),
    ({"false_interruption_timeout": math.inf}, ValueError),
    ({"false_interruption_timeout": "2"}, TypeError),
    ({"min_endpointing_delay": -1}, ValueError),
    ({"late_final_delay": -0.1}, ValueError),
    ({"late_final_delay": math.inf}, ValueError),
    ({"resume_false_interruption": 1}, TypeError),
    ({"auto_reply": None}, TypeError),
    ({"pause_on_speech_start": "yes"}, TypeError),
    ({"provisional_resume_silence": -0.01}, ValueError),
    ({"provisional_resume_silence": None}, TypeError),
])
def test_options_are_validated(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        TurnOptions(**kwargs)  # type: ignore[arg-type]


def test_rules_need_a_vad_or_an_stt() -> None:
    with pytest.raises(ValueError):
        TurnRules(has_vad=False, has_stt=False)
    with pytest.raises(TypeError):
        TurnRules({"min_endpointing_delay": 1})  # type: ignore[arg-type]


def test_pure_modules_import_no_trio_and_stay_small() -> None:
    import trio_playout._turn as turn
    import trio_playout._turn_pause as pause
    import trio_playout._turn_types as types
    for module in (turn, pause, types):
        source = Path(module.__file__ or "").read_text()
        assert "import trio" not in source and "from trio" not in source
        assert len(source.splitlines()) <= 500
    # the split modules' names are still importable where they always were
    assert turn.TurnOptions is types.TurnOptions and issubclass(turn.TurnRules, pause.PauseRules)


def test_count_words() -> None:
    assert count_words("  hold on,  wait ") == 3
    assert count_words("") == 0


# -- 1. barge-in ---------------------------------------------------------------------------
def test_barge_in_pauses_exactly_at_min_duration() -> None:
    r = playing_rules()
    assert r.agent_state == "speaking"
    out = r.start_of_speech(1.0)
    out += r.inference(1.2, 0.2)
    out += r.inference(1.499, 0.499)
    assert effects(out) == []
    out = r.inference(1.5, 0.5)
    assert effects(out) == [PauseAudio(S)]
    assert AgentStateChange("speaking", "listening") in out  # listening while paused
    assert r.paused_speech == S
    assert effects(r.inference(1.6, 0.6)) == []  # idempotent


def test_a_cough_changes_nothing() -> None:
    r = playing_rules()
    out = talk(r, 1.0, 1.3)
    assert effects(out) == []
    assert [a for a in out if isinstance(a, UserStateChange)] == [
        UserStateChange("listening", "speaking"), UserStateChange("speaking", "listening")]
    assert effects(r.tick(10.0)) == []
    assert r.agent_state == "speaking"


@pytest.mark.parametrize("options", [
    TurnOptions(resume_false_interruption=False),
    TurnOptions(false_interruption_timeout=None),
])
def test_barge_in_interrupts_when_pausing_is_off(options: TurnOptions) -> None:
    r = playing_rules(options)
    out = r.start_of_speech(1.0) + r.inference(1.5, 0.5)
    assert effects(out) == [InterruptSpeech(S, "audio_activity")]
    # None never resumes: nothing is armed at the end of speech
    out = r.end_of_speech(2.0)
    assert r.next_deadline() == pytest.approx(2.5)  # only the endpoint
    assert effects(out + r.tick(100.0)) == []


def test_barge_in_interrupts_when_the_sink_cannot_pause() -> None:
    r = playing_rules(facts=NO_PAUSE)
    out = r.start_of_speech(1.0) + r.inference(1.5, 0.5)
    assert effects(out) == [InterruptSpeech(S, "audio_activity")]
    assert r.agent_state == "listening"
    assert effects(r.inference(1.6, 0.6)) == []  # once


def test_a_refused_interrupt_is_not_retried_in_the_same_utterance() -> None:
    r = playing_rules(facts=NO_PAUSE)
    out = r.start_of_speech(1.0) + r.inference(1.5, 0.5)
    assert effects(out) == [InterruptSpeech(S, "audio_activity")]
    # the driver reports the speech still playing (the interrupt was refused)
    assert effects(r.speech_update(1.5, S, NO_PAUSE) + r.inference(1.6, 0.6)) == []
    assert r.agent_state == "speaking"
    r.end_of_speech(2.0)
    out = r.start_of_speech(3.0) + r.inference(3.5, 0.5)  # a new utterance may try again
    assert effects(out) == [InterruptSpeech(S, "audio_activity")]


def test_a_refused_confirmed_interrupt_does_not_pause_again_in_the_same_utterance() -> None:
    # Found by the property: the words confirm the pause, the interrupt is refused (the driver
    # reports the speech still playing, unpaused) and the same utterance paused it again, so
    # the ReleasePause that followed left the rules believing it paused while it played.
    r = playing_rules(TurnOptions(min_interruption_duration=0.0))
    out = r.start_of_speech(1.0) + r.inference(1.1, 0.1)
    assert effects(out) == [PauseAudio(S)]
    out = r.transcript(1.2, "stop", final=True)
    assert effects(out) == [InterruptSpeech(S, "user_turn"), ReleasePause(S)]
    assert effects(r.speech_update(1.2, S, PLAYING) + r.inference(1.3, 0.3)) == []
    assert r.paused_speech is None and r.agent_state == "speaking"
    r.end_of_speech(1.4)
    r.tick(1.9)  # the turn completes; the speech refused again and plays on
    out = r.start_of_speech(3.0) + r.inference(3.1, 0.1)  # a new utterance may pause it again
    assert effects(out) == [PauseAudio(S)]


def test_protected_speech_is_never_paused_nor_interrupted_but_words_are_kept() -> None:
    r = playing_rules(facts=PROTECTED)
    out = r.start_of_speech(1.0) + r.inference(3.0, 2.0)
    out += r.transcript(2.5, "please stop now", final=True)
    out += r.end_of_speech(3.0)
    assert effects(out) == []
    assert effects(r.tick(3.5)) == [CompleteUserTurn("please stop now", reply=True)]


def test_barge_in_needs_min_words_in_the_current_utterance() -> None:
    r = playing_rules(TurnOptions(min_interruption_words=2))
    out = r.start_of_speech(1.0) + r.inference(1.6, 0.6)
    out += r.transcript(1.7, "wait", final=False)
    assert effects(out) == []
    assert effects(r.transcript(1.8, "wait a", final=False)) == [PauseAudio(S)]


def test_final_words_that_barge_in_also_confirm_it_at_once() -> None:
    # The final that brings the utterance to min_interruption_words pauses the speech and,
    # being final words, confirms the pause in the same step. It used to stay paused (the
    # agent silent, not interrupted) until the turn completed at the endpoint.
    r = playing_rules(TurnOptions(min_interruption_words=2))
    out = r.start_of_speech(1.0) + r.inference(1.6, 0.6) + r.transcript(1.65, "wait", final=True)
    assert effects(out) == []
    out = r.transcript(1.7, "stop", final=True)
    assert effects(out) == [PauseAudio(S), InterruptSpeech(S, "user_turn"), ReleasePause(S)]
    assert r.paused_speech is None


# -- 2./3. confirmed or false ----------------------------------------------------------------
def test_paused_then_words_interrupts_with_user_turn_then_one_turn() -> None:
    r = playing_rules()
    r.start_of_speech(1.0)
    r.inference(1.5, 0.5)
    out = r.transcript(1.8, "stop please", final=True)
    assert effects(out) == [InterruptSpeech(S, "user_turn"), ReleasePause(S)]
    assert r.paused_speech is None
    out = r.end_of_speech(2.0)
    assert effects(out) == []
    assert effects(r.tick(2.49)) == []
    out = r.tick(2.5)
    assert effects(out) == [CompleteUserTurn("stop please", reply=True)]
    assert r.agent_state == "thinking"


def test_paused_then_silence_resumes_after_the_timeout() -> None:
    r = playing_rules()
    talk(r, 1.0, 1.7)
    assert r.paused_speech == S
    assert r.next_deadline() == pytest.approx(1.7 + 0.5)  # the endpoint comes first
    assert effects(r.tick(2.2)) == []  # no final: no turn
    assert r.next_deadline() == pytest.approx(3.7)
    assert effects(r.tick(3.69)) == []
    out = r.tick(3.7)
    assert effects(out) == [ResumeAudio(S, false_interruption=True)]
    assert AgentStateChange("listening", "speaking") in out
    assert r.paused_speech is None and r.next_deadline() == math.inf


def test_speaking_again_while_paused_stops_the_timer_until_the_next_end() -> None:
    r = playing_rules()
    talk(r, 1.0, 1.7)
    assert effects(r.start_of_speech(3.0)) == []  # before the 3.7 resume
    assert r.next_deadline() == math.inf
    assert effects(r.tick(10.0)) == []
    r.end_of_speech(11.0)
    assert effects(r.tick(12.99)) == []
    assert effects(r.tick(13.0)) == [ResumeAudio(S, false_interruption=True)]


def test_no_resume_after_the_speech_is_done_or_interrupted() -> None:
    for facts in (FINISHED, SpeechFacts(playing=False)):
        r = playing_rules()
        talk(r, 1.0, 1.7)
        out = r.speech_update(2.0, S, facts)
        assert effects(out) == [ReleasePause(S)]
        assert effects(r.tick(100.0)) == []


def test_paused_speech_that_becomes_protected_resumes_at_once() -> None:
    r = playing_rules()
    talk(r, 1.0, 1.7)
    out = r.speech_update(2.0, S, PROTECTED)
    assert effects(out) == [ResumeAudio(S, false_interruption=False)]
    assert effects(r.transcript(2.1, "stop it now", final=True) + r.tick(100.0)) == [
        CompleteUserTurn("stop it now", reply=True)]


def test_a_transcript_after_the_resume_still_ends_the_speech_through_the_turn() -> None:
    # The known stale-resume race: the final lands more than the timeout after the end.
    r = playing_rules()
    talk(r, 1.0, 1.7)
    assert effects(r.tick(3.7)) == [ResumeAudio(S, false_interruption=True)]
    out = r.transcript(4.0, "hold on", final=False)
    assert effects(out) == []  # an interim in silence does not pause again
    out = r.transcript(4.2, "hold on", final=True)
    assert effects(out) == []  # late: waits late_final_delay for more of it
    assert r.next_deadline() == pytest.approx(4.4)  # the late-text delay; no resume armed
    assert effects(r.tick(4.4)) == [CompleteUserTurn("hold on", reply=True)]
    assert r.next_deadline() == math.inf  # nothing armed: no resume can follow


def test_a_completed_turn_interrupts_the_paused_speech_before_the_turn() -> None:
    # #7108: the interrupted speech comes before the user's turn, never after it.
    r = playing_rules(TurnOptions(min_interruption_words=2))
    r.start_of_speech(1.0)
    r.transcript(1.2, "no wait", final=False)
    r.inference(1.6, 0.6)
    assert r.paused_speech == S
    r.end_of_speech(1.7)
    # The confirmation needs final words; they come after the endpoint and confirm the
    # pause on arrival; the turn follows late_final_delay later:
    out = r.transcript(2.5, "no wait", final=True)
    assert effects(out) == [InterruptSpeech(S, "user_turn"), ReleasePause(S)]
    assert effects(r.tick(2.7)) == [CompleteUserTurn("no wait", reply=True)]


def test_a_turn_completing_over_an_unconfirmed_pause_interrupts_it() -> None:
    # The turn spans two utterances: its words count, the utterance's do not confirm.
    r = TurnRules(TurnOptions(min_interruption_words=2))
    talk(r, 1.0, 2.0)
    r.transcript(2.0, "a b", final=True)
    r.transcript(2.1, "c d", final=False)  # holds the turn open past the endpoint
    r.tick(3.0)
    r.speech_update(3.0, S, PLAYING)
    r.start_of_speech(4.0)  # a new utterance: its word count starts at 0
    r.transcript(4.1, "x y", final=False)
    assert effects(r.inference(4.6, 0.6)) == [PauseAudio(S)]
    r.end_of_speech(5.0)
    assert effects(r.transcript(5.1, "c", final=True)) == []  # 1 word: not confirmed
    out = r.tick(5.5)
    assert effects(out) == [InterruptSpeech(S, "user_turn"), ReleasePause(S),
                            CompleteUserTurn("a b c", reply=True)]
    assert effects(r.tick(100.0)) == []  # and never resumed


# -- 4. backchannels -------------------------------------------------------------------------
def test_mhm_is_a_backchannel_and_the_agent_goes_on_4039() -> None:
    # livekit #4039: "mhm" stopped the agent for good.
    r = playing_rules(TurnOptions(min_interruption_words=2))
    out = talk(r, 1.0, 2.0)
    out += r.transcript(2.1, "mhm", final=True)
    out += r.tick(10.0)
    assert effects(out) == []
    assert r.agent_state == "speaking" and r.pending_text == "mhm"
    # kept, and prepended to the user's next turn
    r.speech_update(11.0, S, FINISHED)
    talk(r, 12.0, 13.0)
    r.transcript(13.1, "what time is it", final=True)
    assert effects(r.tick(13.5)) == [CompleteUserTurn("mhm what time is it", reply=True)]


def test_mhm_noise_that_paused_resumes_when_no_words_come() -> None:
    r = playing_rules()  # min_interruption_words=0: a long "mhm" pauses
    talk(r, 1.0, 1.8)
    out = r.transcript(2.0, "", final=True)  # the STT heard no words
    assert effects(out) == []
    assert effects(r.tick(3.8)) == [ResumeAudio(S, false_interruption=True)]


def test_words_are_counted_per_utterance_never_across_the_agent_turn() -> None:
    # livekit #3515 / livekit#4270: min_words counted across the whole agent turn.
    r = playing_rules(TurnOptions(min_interruption_words=3))
    talk(r, 1.0, 2.0)
    r.transcript(2.1, "yes please", final=True)
    r.tick(3.0)  # a backchannel
    out = r.start_of_speech(4.0) + r.inference(4.6, 0.6) + r.transcript(4.7, "go on", final=False)
    assert effects(out) == []  # 2 words in this utterance, not 4
    assert effects(r.transcript(4.8, "go on now", final=False)) == [PauseAudio(S)]


def test_speech_within_the_delay_continues_the_utterance_and_its_word_count() -> None:
    r = playing_rules(TurnOptions(min_interruption_words=3))
    talk(r, 1.0, 1.4)
    r.transcript(1.5, "hold on", final=True)
    out = r.start_of_speech(1.7)  # within 0.5 s of the end
    out += r.inference(2.3, 0.6)
    out += r.transcript(2.35, "wait", final=False)
    assert effects(out) == [PauseAudio(S)]


def test_pause_confirmation_needs_min_words_of_final_text() -> None:
    r = playing_rules(TurnOptions(min_interruption_words=3))
    r.start_of_speech(1.0)
    r.transcript(1.1, "no no no", final=False)
    r.inference(1.6, 0.6)
    assert r.paused_speech == S
    r.end_of_speech(1.7)
    out = r.transcript(1.8, "no", final=True)  # revised: 1 word
    assert effects(out) == []
    assert effects(r.tick(3.7)) == [ResumeAudio(S, false_interruption=True)]


# -- 5. user turns ---------------------------------------------------------------------------
def test_one_turn_after_end_of_speech_plus_delay() -> None:
    r = TurnRules()
    talk(r, 1.0, 2.0)
    r.transcript(1.9, "hello there", final=True)
    assert r.next_deadline() == pytest.approx(2.5)
    assert effects(r.tick(2.49)) == []
    out = r.tick(2.5)
    assert effects(out) == [CompleteUserTurn("hello there", reply=True)]
    assert AgentStateChange("listening", "thinking") in out
    assert effects(r.tick(100.0)) == []  # exactly one


def test_the_endpoint_counts_from_the_end_of_the_voice() -> None:
    """livekit's endpoint: min_endpointing_delay after the voice ended, i.e. the VAD's end
    of speech minus the silence it already waited (Silero: 0.55 s). With that silence over
    the delay the turn completes at the end of speech itself; before, 0.5 s after it."""
    r = TurnRules()
    r.start_of_speech(1.0)
    r.inference(1.5, 0.5)
    r.transcript(2.2, "hello there", final=True)
    out = r.end_of_speech(2.55, silence_duration=0.55)  # the voice ended at 2.0
    assert effects(out) == [CompleteUserTurn("hello there", reply=True)]
    assert AgentStateChange("listening", "thinking") in out
    # a silence shorter than the delay: the rest of the delay is still waited
    r = TurnRules()
    r.start_of_speech(1.0)
    r.transcript(2.2, "hello", final=True)
    assert effects(r.end_of_speech(2.3, silence_duration=0.3)) == []
    assert r.next_deadline() == pytest.approx(2.5)
    assert effects(r.tick(2.5)) == [CompleteUserTurn("hello", reply=True)]


def test_speech_resuming_within_the_delay_from_the_voice_still_continues_the_turn() -> None:
    """The delay counts from the end of the voice (2.0), so a start of speech before 3.0
    (delay 1.0) continues the same utterance and turn even though the VAD's end came at
    2.55; a final after the VAD's end but before the endpoint is not late."""
    r = TurnRules(TurnOptions(min_endpointing_delay=1.0))
    r.start_of_speech(1.0)
    r.end_of_speech(2.55, silence_duration=0.55)
    assert r.next_deadline() == pytest.approx(3.0)
    r.transcript(2.7, "I want", final=True)
    assert effects(r.start_of_speech(2.9)) == []  # same turn
    r.transcript(3.4, "a pizza", final=True)
    assert effects(r.end_of_speech(3.8, silence_duration=0.55)) == []  # endpoint 4.25
    assert effects(r.tick(4.25)) == [CompleteUserTurn("I want a pizza", reply=True)]
    # a final after the VAD's end, before the endpoint: waits for the endpoint, not late
    r = TurnRules(TurnOptions(min_endpointing_delay=1.0))
    r.start_of_speech(1.0)
    r.end_of_speech(2.55, silence_duration=0.55)
    assert effects(r.transcript(2.7, "hi", final=True)) == []
    assert r.next_deadline() == pytest.approx(3.0)


def test_speech_resuming_within_the_delay_continues_the_same_turn() -> None:
    r = TurnRules()
    talk(r, 1.0, 2.0)
    r.transcript(2.1, "I want", final=True)
    talk(r, 2.3, 3.0)  # within 0.5 s
    r.transcript(3.1, "a pizza", final=False)
    assert effects(r.tick(3.5)) == []  # interim only: not final yet
    out = r.transcript(3.6, "a pizza", final=True)
    assert effects(out) == []  # late: late_final_delay for more of it
    assert effects(r.tick(3.81)) == [CompleteUserTurn("I want a pizza", reply=True)]


def test_an_interim_taken_back_after_the_endpoint_completes_the_turn() -> None:
    """Review finding 3: an interim held the turn open at the endpoint, then the STT took
    it back (an empty final, as PocketSphinxSTT sends, or an empty interim): the finals
    already received complete the turn; before the fix they waited forever."""
    for retraction in (("", True), ("", False), ("  ", True)):
        r = TurnRules()
        r.start_of_speech(0.0)
        r.transcript(0.5, "what time is it", final=True)
        r.transcript(0.9, "um", final=False)  # a second segment's interim
        r.end_of_speech(1.0)
        assert effects(r.tick(1.5)) == []  # the endpoint: held open by the interim
        assert effects(r.transcript(1.8, *retraction)) == []
        assert r.next_deadline() == pytest.approx(2.0)  # late_final_delay after it
        assert effects(r.tick(2.0)) == [CompleteUserTurn("what time is it", reply=True)]
        assert r.pending_text == "" and r.next_deadline() == math.inf


def test_late_finals_of_one_utterance_make_one_turn() -> None:
    """Review finding 5: a slow STT delivers one utterance as two finals, both after the
    endpoint (1.5): one turn with both, late_final_delay after the last; before the fix
    the first final completed a turn on arrival and the second made another."""
    r = TurnRules()
    talk(r, 0.0, 1.0)
    assert effects(r.tick(1.5)) == []  # no final yet
    assert effects(r.transcript(1.6, "what time", final=True)) == []
    assert effects(r.transcript(1.75, "is it", final=True)) == []  # moves the delay
    assert effects(r.tick(1.94)) == []
    assert effects(r.tick(1.95)) == [CompleteUserTurn("what time is it", reply=True)]
    # a new interim after the endpoint holds the turn open again until its final
    r = TurnRules()
    talk(r, 0.0, 1.0)
    r.tick(1.5)
    r.transcript(1.6, "what time", final=True)
    r.transcript(1.7, "is", final=False)
    assert effects(r.tick(5.0)) == []
    r.transcript(5.1, "is it", final=True)
    assert effects(r.tick(5.3)) == [CompleteUserTurn("what time is it", reply=True)]


def test_late_final_delay_zero_completes_on_arrival() -> None:
    r = TurnRules(TurnOptions(late_final_delay=0.0))
    talk(r, 0.0, 1.0)
    r.tick(1.5)
    assert effects(r.transcript(1.6, "what time", final=True)) == [
        CompleteUserTurn("what time", reply=True)]


def test_pending_final_text_is_taken_at_close() -> None:
    """Review finding 3 (close): final text whose endpoint never came is handed to the
    driver at close (backchannel text first), once."""
    r = playing_rules(TurnOptions(min_interruption_words=2))
    talk(r, 1.0, 1.3)
    r.transcript(1.3, "mhm", final=True)
    r.tick(2.0)  # a backchannel: carried
    talk(r, 3.0, 4.0)
    r.transcript(3.9, "please remember this", final=True)
    assert r.take_pending_text() == "mhm please remember this"
    assert r.pending_text == "" and r.take_pending_text() == ""
    assert effects(r.tick(10.0)) == []


def test_interim_text_is_never_counted_as_final() -> None:
    r = TurnRules()
    talk(r, 1.0, 2.0)
    r.transcript(1.5, "hello wor", final=False)
    assert effects(r.tick(10.0)) == []
    assert r.pending_text == ""


def test_a_late_final_waits_while_the_user_speaks_again() -> None:
    r = TurnRules()
    talk(r, 1.0, 2.0)
    r.start_of_speech(3.0)  # after the endpoint: a new utterance, same open turn
    out = r.transcript(3.2, "first part", final=True)
    assert effects(out) == []
    r.end_of_speech(4.0)
    r.transcript(4.1, "second part", final=True)
    assert effects(r.tick(4.5)) == [CompleteUserTurn("first part second part", reply=True)]


def test_turn_without_auto_reply_never_thinks() -> None:
    r = TurnRules(TurnOptions(auto_reply=False))
    talk(r, 1.0, 2.0)
    r.transcript(2.0, "note this", final=True)
    out = r.tick(2.5)
    assert effects(out) == [CompleteUserTurn("note this", reply=False)]
    assert r.agent_state == "listening"
    r.turn_committed(2.6, None)
    assert r.agent_state == "listening"


def test_turn_committed_without_a_turn_is_a_bug() -> None:
    with pytest.raises(ValueError):
        TurnRules().turn_committed(0.0, None)


# -- #5038: nothing pauses a speech before its first frame ------------------------------------
def test_barge_in_before_the_first_frame_never_pauses_5038() -> None:
    r = TurnRules()
    r.speech_update(0.0, S, SpeechFacts(playing=False, pausable=True))  # authorized, no audio
    out = r.start_of_speech(1.0) + r.inference(1.8, 0.8)
    assert effects(out) == []
    # its first frame while the user is still talking: paused at once
    out = r.speech_update(2.0, S, PLAYING)
    assert effects(out) == [PauseAudio(S)]
    assert r.agent_state == "listening"


def test_first_frame_after_the_user_stopped_plays() -> None:
    r = TurnRules()
    r.speech_update(0.0, S, SpeechFacts(playing=False, pausable=True))
    talk(r, 1.0, 2.0)
    assert effects(r.speech_update(2.1, S, PLAYING)) == []
    assert r.agent_state == "speaking"


# -- 6. states -------------------------------------------------------------------------------
def test_agent_state_function() -> None:
    assert agent_state(has_audio_input=True, audio_playing=True, thinking=True) == "speaking"
    assert agent_state(has_audio_input=True, audio_playing=False, thinking=True) == "thinking"
    assert agent_state(has_audio_input=True, audio_playing=False, thinking=False) == "listening"
    assert agent_state(has_audio_input=False, audio_playing=False, thinking=False) == "idle"


def test_thinking_from_the_turn_to_the_first_frame_of_the_reply() -> None:
    r = TurnRules()
    talk(r, 1.0, 2.0)
    r.transcript(2.0, "hi", final=True)
    r.tick(2.5)
    assert r.agent_state == "thinking"
    r.turn_committed(2.6, "reply")
    assert r.agent_state == "thinking"
    assert "reply" in r.tracked_speeches()
    r.speech_update(2.7, "reply", SpeechFacts(playing=False))
    assert r.agent_state == "thinking"
    out = r.speech_update(3.0, "reply", SpeechFacts(playing=True))
    assert out == [AgentStateChange("thinking", "speaking")]
    out = r.speech_update(4.0, "reply", SpeechFacts(playing=False))
    assert out == [AgentStateChange("speaking", "listening")]
    # a tool step of the same reply does not think again
    assert r.speech_update(5.0, "reply", SpeechFacts(playing=False)) == []


def test_thinking_ends_when_the_reply_ends_without_audio() -> None:
    r = TurnRules()
    talk(r, 1.0, 2.0)
    r.transcript(2.0, "hi", final=True)
    r.tick(2.5)
    r.turn_committed(2.6, "reply")
    assert r.speech_update(3.0, "reply", FINISHED) == [AgentStateChange("thinking", "listening")]


def test_each_state_change_is_reported_once() -> None:
    r = TurnRules()
    out = r.start_of_speech(1.0) + r.start_of_speech(1.1) + r.end_of_speech(2.0) + r.end_of_speech(2.1)
    assert of(out, UserStateChange) == [UserStateChange("listening", "speaking"),
                                        UserStateChange("speaking", "listening")]


def test_transcripts_are_reported() -> None:
    r = TurnRules()
    assert of(r.transcript(1.0, "he", final=False), TranscriptReceived) == [TranscriptReceived("he", False)]


# -- without a VAD, without an STT, provisional pause ---------------------------------------
def test_stt_only_transcripts_stand_in_for_the_vad() -> None:
    r = playing_rules(has_vad=False)
    out = r.transcript(1.0, "wait", final=False)
    assert effects(out) == [PauseAudio(S)]  # 1 word, no duration needed
    assert r.user_state == "speaking"
    out = r.transcript(1.5, "wait a second", final=True)
    assert effects(out) == [InterruptSpeech(S, "user_turn"), ReleasePause(S)]
    assert r.user_state == "listening"
    assert effects(r.tick(2.0)) == [CompleteUserTurn("wait a second", reply=True)]


def test_vad_only_pauses_then_always_resumes_and_makes_no_turns() -> None:
    r = playing_rules(has_stt=False)
    out = talk(r, 1.0, 2.0)
    assert effects(out) == [PauseAudio(S)]
    assert effects(r.tick(4.0)) == [ResumeAudio(S, false_interruption=True)]


def test_provisional_pause_resumes_at_once_after_a_short_noise() -> None:
    r = playing_rules(TurnOptions(pause_on_speech_start=True))
    assert effects(r.start_of_speech(1.0)) == [PauseAudio(S, provisional=True)]
    assert r.agent_state == "listening"
    out = r.end_of_speech(1.2)
    assert effects(out) == [ResumeAudio(S, false_interruption=True, provisional=True)]
    assert r.next_deadline() == pytest.approx(1.7)  # only the endpoint


def test_provisional_pause_becomes_a_barge_in_at_min_duration() -> None:
    r = playing_rules(TurnOptions(pause_on_speech_start=True))
    r.start_of_speech(1.0)
    assert effects(r.inference(1.5, 0.5)) == []  # already paused; now it counts
    r.end_of_speech(1.6)
    assert effects(r.tick(3.59)) == []
    assert effects(r.tick(3.6)) == [ResumeAudio(S, false_interruption=True)]


def test_provisional_pause_confirmed_by_words_interrupts() -> None:
    r = playing_rules(TurnOptions(pause_on_speech_start=True))
    r.start_of_speech(1.0)
    out = r.transcript(1.3, "stop", final=True)
    assert effects(out) == [InterruptSpeech(S, "user_turn"), ReleasePause(S)]


def voice(rules: TurnRules, start: float, pattern: str,
          window: float = 0.032) -> list[tuple[float, list[Action]]]:
    """A VAD's windows after a start at ``start``: ``#`` voiced, ``.`` silent, reported as
    Silero does (voiced speech_duration, silence run). Returns (time, effects) per window."""
    voiced, silence, out = 2 * window, 0.0, []  # the start took two voiced windows
    for i, c in enumerate(pattern):
        if c == "#":
            voiced, silence = voiced + window, 0.0
        else:
            silence += window
        t = start + (i + 1) * window
        out.append((round(t, 6), effects(rules.inference(t, voiced, silence))))
    return out


def test_provisional_pause_resumes_after_a_short_silence_not_at_the_end_of_speech() -> None:
    """A 0.3 s 'hmm': paused at the start, resumed after provisional_resume_silence (two
    windows), long before the VAD's end of speech (0.55 s later)."""
    r = playing_rules(TurnOptions(pause_on_speech_start=True))
    assert effects(r.start_of_speech(1.0)) == [PauseAudio(S, provisional=True)]
    steps = voice(r, 1.0, "#######" + "." * 17)
    acted = [(t, e) for t, e in steps if e]
    assert acted == [(1.288, [ResumeAudio(S, false_interruption=True, provisional=True)])]
    assert r.user_state == "speaking" and r.agent_state == "speaking"
    assert effects(r.end_of_speech(1.8)) == []  # nothing left to resume
    assert r.next_deadline() == pytest.approx(2.3)  # only the endpoint


def test_provisional_pause_follows_the_voice_between_words() -> None:
    """A gap between words longer than provisional_resume_silence resumes; the voice
    coming back pauses again; a one-window dip does nothing."""
    r = playing_rules(TurnOptions(pause_on_speech_start=True))
    r.start_of_speech(1.0)
    steps = dict(voice(r, 1.0, "###.##...###"))
    pause, resume = PauseAudio(S, provisional=True), ResumeAudio(S, false_interruption=True, provisional=True)
    assert [e for e in steps.values() if e] == [[resume], [pause]]
    assert steps[1.256] == [resume] and steps[1.32] == [pause]
    assert r.paused_speech == S


def test_provisional_resume_silence_is_an_option() -> None:
    r = playing_rules(TurnOptions(pause_on_speech_start=True, provisional_resume_silence=0.1))
    r.start_of_speech(1.0)
    steps = voice(r, 1.0, "###...###....")
    assert [(t, e) for t, e in steps if e] == [
        (1.416, [ResumeAudio(S, false_interruption=True, provisional=True)])]  # the 4th silent window


def test_a_confirmed_pause_is_not_resumed_by_silence() -> None:
    """Once the voiced time reaches min_interruption_duration the pause is a barge-in:
    the silence run does not resume it, the false-interruption timer does."""
    r = playing_rules(TurnOptions(pause_on_speech_start=True))
    r.start_of_speech(1.0)
    steps = voice(r, 1.0, "#" * 14 + "." * 10)  # 2 + 14 windows = 0.512 s voiced
    assert [e for _, e in steps if e] == []
    r.end_of_speech(2.0)
    assert effects(r.tick(4.0)) == [ResumeAudio(S, false_interruption=True)]


def test_a_short_sound_then_silence_never_barges_in() -> None:
    """The voiced duration of a 0.35 s sound stays 0.35 through the silence before the
    VAD's end of speech: nothing happens under the default options."""
    r = playing_rules()
    assert effects(r.start_of_speech(1.0)) == []
    assert [e for _, e in voice(r, 1.0, "#########" + "." * 17)] == [[]] * 26
    assert effects(r.end_of_speech(1.9)) == [] and r.paused_speech is None


def test_no_provisional_pause_after_this_utterance_interrupted_the_speech() -> None:
    r = playing_rules(TurnOptions(pause_on_speech_start=True), facts=NO_PAUSE)
    r.start_of_speech(1.0)
    steps = voice(r, 1.0, "#" * 14)
    assert [e for _, e in steps if e] == [[InterruptSpeech(S, "audio_activity")]]
    r.speech_update(1.5, S, PLAYING)  # the driver says it still plays (refused): no pause
    assert [e for _, e in voice(r, 1.5, "###")] == [[], [], []]


def test_provisional_pause_needs_a_pausable_interruptible_speech() -> None:
    for facts in (NO_PAUSE, PROTECTED):
        r = playing_rules(TurnOptions(pause_on_speech_start=True), facts=facts)
        assert effects(r.start_of_speech(1.0)) == []


# -- property: random user speech against random agent speeches --------------------------------
@dataclass
class _Speech:
    key: str
    start: float
    remaining: float
    interruptible: bool
    pausable: bool
    refuse: bool = False  # protected behind the facts' back: interrupts are refused
    playing: bool = False
    paused: bool = False
    finished: bool = False

    def facts(self) -> SpeechFacts:
        return SpeechFacts(interruptible=self.interruptible, playing=self.playing and not self.finished,
                           pausable=self.pausable, finished=self.finished)


@dataclass
class _Sim:
    """A host for the rules: speeches play one at a time and end by themselves."""

    rules: TurnRules
    speeches: list[_Speech]
    now: float = 0.0
    turns: list[str] = field(default_factory=list)
    finals: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    steps: int = 0
    queue: deque[Action] = field(default_factory=deque)
    draining: bool = False

    def current(self) -> _Speech | None:
        return next((s for s in self.speeches if s.playing and not s.finished), None)

    def run(self, actions: list[Action]) -> None:
        """Execute ``actions`` in order, like VoiceDriver: the actions that acting on one
        produces (a resync) queue after the rest of the batch, never in the middle of it."""
        self.steps += len(actions)
        assert self.steps < 10_000, "the rules keep acting: a loop"
        self.queue.extend(actions)
        if self.draining:
            return
        self.draining = True
        try:
            while self.queue:
                self._do(self.queue.popleft())
        finally:
            self.draining = False

    def _do(self, action: Action) -> None:
        if isinstance(action, (PauseAudio, ResumeAudio, ReleasePause, InterruptSpeech)):
            speech = next(s for s in self.speeches if s.key == action.speech)
            if isinstance(action, PauseAudio):
                if speech.finished or not speech.playing or not speech.interruptible:
                    self.problems.append(f"paused {speech}")
                speech.paused = True
            elif isinstance(action, ResumeAudio):
                if speech.finished:
                    self.problems.append(f"resumed after done {speech}")
                speech.paused = False
            elif isinstance(action, ReleasePause):
                speech.paused = False
            elif speech.refuse:
                speech.paused = False
                self.run(self.rules.speech_update(self.now, speech.key, speech.facts()))  # resync
            else:
                if not speech.interruptible:
                    self.problems.append(f"interrupted protected {speech}")
                self.finish(speech)
        elif isinstance(action, CompleteUserTurn):
            if not action.text.strip():
                self.problems.append("empty turn")
            self.turns.append(action.text)
            # the host: interrupt the earlier interruptible speech, then commit
            current = self.current()
            if current is not None and current.interruptible and not current.refuse:
                self.finish(current)
            self.run(self.rules.turn_committed(self.now, None))

    def finish(self, speech: _Speech) -> None:
        if not speech.finished:
            speech.finished = True
            speech.paused = False
            self.run(self.rules.speech_update(self.now, speech.key, speech.facts()))

    def advance(self, to: float) -> None:
        """Move time to ``to``, running speech ends, starts and rule deadlines in order."""
        while True:
            current = self.current()
            end = current.remaining + self.now if current is not None and not current.paused else math.inf
            waiting = [s for s in self.speeches if not s.playing and not s.finished]
            start = max(self.now, waiting[0].start) if waiting and current is None else math.inf
            deadline = self.rules.next_deadline()
            t = min(end, start, deadline)
            if t > to:
                break
            self.elapse(t)
            if t == deadline:
                self.run(self.rules.tick(t))
            elif t == end and current is not None:
                current.playing = False
                self.finish(current)
            elif waiting:
                waiting[0].playing = True
                self.run(self.rules.speech_update(t, waiting[0].key, waiting[0].facts()))
        self.elapse(to)

    def elapse(self, t: float) -> None:
        current = self.current()
        if current is not None and not current.paused:
            current.remaining -= t - self.now
        self.now = max(self.now, t)


_tenths = st.integers(min_value=0, max_value=30).map(lambda n: n / 10)


@st.composite
def _scenario(draw: st.DrawFn) -> tuple[TurnOptions, str, list[tuple[float, str, object]], list[_Speech]]:
    options = TurnOptions(
        min_interruption_duration=draw(st.sampled_from([0.0, 0.3, 0.5])),
        min_interruption_words=draw(st.integers(0, 3)),
        false_interruption_timeout=draw(st.sampled_from([None, 0.0, 0.5, 2.0])),
        resume_false_interruption=draw(st.booleans()),
        min_endpointing_delay=draw(st.sampled_from([0.0, 0.5, 1.0])),
        auto_reply=draw(st.booleans()),
        pause_on_speech_start=draw(st.booleans()),
        provisional_resume_silence=draw(st.sampled_from([0.0, 0.05, 0.15])),
        late_final_delay=draw(st.sampled_from([0.0, 0.2])),
    )
    mode = draw(st.sampled_from(["both", "both", "vad", "stt"]))
    inputs: list[tuple[float, str, object]] = []
    t, word = 0.0, 0
    for _ in range(draw(st.integers(0, 6))):
        t += draw(_tenths) + 0.1
        length = draw(_tenths) + 0.1
        inputs.append((t, "start", None))
        k, voiced, silent = 1, 0, 0  # windows of 0.1 s: voiced ones, and the silence run
        while k / 10 < length:
            if draw(st.integers(0, 3)) == 0:  # a pause between words (a real VAD reports it)
                silent += 1
            else:
                voiced, silent = voiced + 1, 0
            inputs.append((t + k / 10, "inference", (voiced / 10, silent / 10)))
            k += 1
        inputs.append((t + length, "end", None))
        for _ in range(draw(st.integers(0, 2))):
            n = draw(st.integers(0, 4))
            text = " ".join(f"w{word + i}" for i in range(n))
            word += n
            lag = draw(_tenths) - 1.0
            if draw(st.booleans()):
                inputs.append((max(t, t + length + lag - 0.2), "interim", f"i{word} x{word}"))
            inputs.append((max(t, t + length + lag), "final", text))
        t += length
    speeches = [
        _Speech(f"s{i}", draw(_tenths) * 2, draw(_tenths) + 0.1, draw(st.booleans()), draw(st.booleans()),
                draw(st.booleans()))
        for i in range(draw(st.integers(0, 3)))
    ]
    speeches.sort(key=lambda s: s.start)
    order = {"start": 0, "inference": 1, "interim": 2, "final": 3, "end": 4}
    inputs.sort(key=lambda i: (i[0], order[i[1]]))
    return options, mode, inputs, speeches


@settings(max_examples=400, deadline=None)
@given(_scenario())
@example((  # a refused "user_turn" interrupt re-paused in the same utterance, then released
    TurnOptions(min_interruption_duration=0.0, false_interruption_timeout=0.5,
                min_endpointing_delay=0.0, auto_reply=False),
    "both",
    [(0.1, "start", None), (0.1, "final", ""), (0.1, "final", ""), (0.2, "end", None),
     (0.3, "start", None), (0.4, "end", None), (0.5, "start", None), (0.6, "end", None),
     (0.7, "start", None), (0.7, "final", "w0"), (0.8, "end", None)],
    [_Speech("s0", 0.0, 0.2, interruptible=True, pausable=True, refuse=True)],
))
def test_property_turns_words_pauses(scenario: tuple[TurnOptions, str, list[tuple[float, str, object]],
                                                     list[_Speech]]) -> None:
    options, mode, inputs, speeches = scenario
    rules = TurnRules(options, has_vad=mode != "stt", has_stt=mode != "vad")
    sim = _Sim(rules, speeches)
    for t, kind, value in inputs:
        if kind in ("start", "inference", "end") and mode == "stt":
            continue
        if kind in ("interim", "final") and mode == "vad":
            continue
        sim.advance(t)
        if kind == "start":
            sim.run(rules.start_of_speech(t))
        elif kind == "inference":
            assert isinstance(value, tuple)
            sim.run(rules.inference(t, *value))
        elif kind == "end":
            sim.run(rules.end_of_speech(t))
        else:
            assert isinstance(value, str)
            if kind == "final" and value:
                sim.finals.append(value)
            sim.run(rules.transcript(t, value, final=kind == "final"))
        current = sim.current()
        assert (rules.agent_state == "speaking") == (current is not None and not current.paused)
    sim.advance(sim.now + 100.0)  # the user is silent long enough
    assert sim.problems == []
    # every pause ended, resumed or interrupted
    assert rules.paused_speech is None
    assert not any(s.paused for s in speeches)
    # never a lost or repeated user word: each final word in exactly one turn, in order, or pending
    heard = " ".join(sim.finals).split()
    assert " ".join([*sim.turns, rules.pending_text]).split() == heard
    assert not any(w.startswith(("i", "x")) for turn in sim.turns for w in turn.split())  # no interim
    assert rules.user_state == "listening"
