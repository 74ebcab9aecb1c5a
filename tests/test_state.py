"""The pure lifecycle rules of ``trio_playout._state``: plain function calls, no trio."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from trio_playout._state import (
    IllegalTransition,
    InterruptDecision,
    SpeechPhase,
    SpeechState,
    ToolCallPhase,
    ToolCallState,
    ToolOutcome,
)

P = SpeechPhase
T = ToolCallPhase
ACCEPTED, NOOP, DENIED = InterruptDecision.ACCEPTED, InterruptDecision.NOOP, InterruptDecision.DENIED


def speech_in(phase: SpeechPhase, **kwargs: bool) -> SpeechState:
    """A fresh speech driven along the happy path up to ``phase``."""
    s = SpeechState(**kwargs)
    path = {
        P.CREATED: [],
        P.SCHEDULED: [s.schedule],
        P.AUTHORIZED: [s.schedule, s.authorize],
        P.PLAYED: [s.schedule, s.authorize, s.playout_finished],
        P.DONE: [s.finish],
    }[phase]
    for step in path:
        step()
    assert s.phase is phase
    return s


def snapshot(s: SpeechState) -> tuple[object, ...]:
    return (s.phase, s.num_steps, s.interrupted, s.interrupt_source, s.forced,
            s.allow_interruptions, s.holds, s.protected)


# --------------------------------------------------------------------------- phases

def test_initial_speech_state() -> None:
    s = SpeechState()
    assert s.phase is P.CREATED
    assert s.num_steps == 1
    assert not s.interrupted
    assert s.interrupt_source is None
    assert not s.forced
    assert s.allow_interruptions
    assert s.holds == 0
    assert not s.protected
    assert not s.done


def test_happy_path_with_a_tool_reply_step() -> None:
    s = SpeechState()
    s.schedule()
    assert s.phase is P.SCHEDULED
    s.authorize()
    assert s.phase is P.AUTHORIZED
    s.playout_finished()
    assert s.phase is P.PLAYED
    assert s.may_continue()
    s.next_step()
    assert s.phase is P.SCHEDULED
    assert s.num_steps == 2
    s.authorize()
    s.playout_finished()
    s.next_step()
    assert s.num_steps == 3
    s.authorize()
    s.playout_finished()
    s.finish()
    assert s.phase is P.DONE
    assert s.done
    assert s.num_steps == 3


# Which phase each transition is allowed from.
_ALLOWED_FROM = {
    "schedule": {P.CREATED},
    "authorize": {P.SCHEDULED},
    "playout_finished": {P.AUTHORIZED},
    "next_step": {P.PLAYED},
    "finish": {P.CREATED, P.SCHEDULED, P.AUTHORIZED, P.PLAYED},
}
_TARGET = {
    "schedule": P.SCHEDULED,
    "authorize": P.AUTHORIZED,
    "playout_finished": P.PLAYED,
    "next_step": P.SCHEDULED,
    "finish": P.DONE,
}


@pytest.mark.parametrize(
    ("method", "phase"),
    [(m, ph) for m, ph in itertools.product(_ALLOWED_FROM, SpeechPhase) if ph in _ALLOWED_FROM[m]],
)
def test_allowed_speech_transitions(method: str, phase: SpeechPhase) -> None:
    s = speech_in(phase)
    getattr(s, method)()
    assert s.phase is _TARGET[method]


@pytest.mark.parametrize(
    ("method", "phase"),
    [(m, ph) for m, ph in itertools.product(_ALLOWED_FROM, SpeechPhase) if ph not in _ALLOWED_FROM[m]],
)
def test_forbidden_speech_transitions_raise_and_change_nothing(method: str, phase: SpeechPhase) -> None:
    s = speech_in(phase)
    before = snapshot(s)
    with pytest.raises(IllegalTransition):
        getattr(s, method)()
    assert snapshot(s) == before


def test_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)


def test_finish_twice_raises() -> None:
    s = SpeechState()
    s.finish()
    with pytest.raises(IllegalTransition, match="already done"):
        s.finish()
    assert s.done


@pytest.mark.parametrize("phase", list(SpeechPhase))
def test_may_continue_only_when_played_and_not_interrupted(phase: SpeechPhase) -> None:
    s = speech_in(phase)
    assert s.may_continue() is (phase is P.PLAYED)


def test_interrupted_speech_takes_no_further_step() -> None:
    s = speech_in(P.PLAYED)
    assert s.request_interrupt(force=False, source="user") is ACCEPTED
    assert not s.may_continue()
    with pytest.raises(IllegalTransition, match="interrupted"):
        s.next_step()
    assert s.phase is P.PLAYED
    assert s.num_steps == 1
    s.finish()
    assert s.done


@pytest.mark.parametrize("phase", [P.CREATED, P.SCHEDULED, P.AUTHORIZED, P.PLAYED])
def test_interrupted_speech_can_still_finish_from_any_phase(phase: SpeechPhase) -> None:
    s = speech_in(phase)
    s.request_interrupt(force=False, source="user")
    s.finish()
    assert s.done
    assert s.interrupted


# --------------------------------------------------------------------------- interrupt latch

@pytest.mark.parametrize("phase", [P.CREATED, P.SCHEDULED, P.AUTHORIZED, P.PLAYED])
def test_first_interrupt_wins_and_records_its_source(phase: SpeechPhase) -> None:
    s = speech_in(phase)
    assert s.request_interrupt(force=False, source="user") is ACCEPTED
    assert s.interrupted
    assert s.interrupt_source == "user"
    assert not s.forced
    assert s.phase is phase  # the latch does not move the phase
    assert s.request_interrupt(force=False, source="vad") is NOOP
    assert s.request_interrupt(force=True, source="close") is NOOP
    assert s.interrupt_source == "user"
    assert not s.forced


def test_interrupt_on_done_speech_is_noop() -> None:
    s = speech_in(P.DONE)
    assert s.request_interrupt(force=False, source="user") is NOOP
    assert s.request_interrupt(force=True, source="user") is NOOP
    assert not s.interrupted
    assert s.interrupt_source is None


def test_interrupt_on_protected_speech_is_denied_and_changes_nothing() -> None:
    s = speech_in(P.AUTHORIZED, allow_interruptions=False)
    before = snapshot(s)
    assert s.request_interrupt(force=False, source="user") is DENIED
    assert snapshot(s) == before
    assert not s.interrupted
    assert s.interrupt_source is None


def test_interrupt_on_held_speech_is_denied_and_changes_nothing() -> None:
    s = speech_in(P.AUTHORIZED)
    s.hold()
    before = snapshot(s)
    assert s.request_interrupt(force=False, source="user") is DENIED
    assert snapshot(s) == before


def test_forced_interrupt_lands_on_protected_speech() -> None:
    s = speech_in(P.AUTHORIZED, allow_interruptions=False)
    s.hold()
    assert s.request_interrupt(force=True, source="close") is ACCEPTED
    assert s.interrupted
    assert s.forced
    assert s.interrupt_source == "close"
    assert s.request_interrupt(force=True, source="again") is NOOP
    assert s.interrupt_source == "close"


def test_denied_then_forced_records_the_forced_source() -> None:
    s = SpeechState(allow_interruptions=False)
    assert s.request_interrupt(force=False, source="user") is DENIED
    assert s.request_interrupt(force=True, source="session") is ACCEPTED
    assert s.interrupt_source == "session"


def test_forced_interrupt_on_unprotected_speech_is_recorded_as_forced() -> None:
    s = SpeechState()
    assert s.request_interrupt(force=True, source="x") is ACCEPTED
    assert s.forced


# --------------------------------------------------------------------------- holds

def test_holds_are_counted() -> None:
    s = SpeechState()
    s.hold()
    s.hold()
    assert s.holds == 2
    assert s.protected
    assert s.allow_interruptions  # the user's flag is untouched
    s.release()
    assert s.holds == 1
    assert s.protected
    assert s.request_interrupt(force=False, source="user") is DENIED
    s.release()
    assert s.holds == 0
    assert not s.protected
    assert s.request_interrupt(force=False, source="user") is ACCEPTED


def test_release_without_hold_raises() -> None:
    s = SpeechState()
    with pytest.raises(IllegalTransition, match="without a matching hold"):
        s.release()
    assert s.holds == 0
    s.hold()
    s.release()
    with pytest.raises(IllegalTransition):
        s.release()
    assert s.holds == 0


def test_user_flag_is_kept_apart_from_holds() -> None:
    s = SpeechState(allow_interruptions=False)
    s.hold()
    s.release()
    # releasing the last hold restores exactly the user's choice: still protected
    assert s.protected
    assert not s.allow_interruptions
    s.set_allow_interruptions(True)
    assert not s.protected
    s.hold()
    s.set_allow_interruptions(True)
    assert s.protected  # the hold still protects
    s.set_allow_interruptions(False)
    s.release()
    assert s.protected
    assert not s.allow_interruptions


def test_hold_after_interrupt_raises() -> None:
    s = SpeechState()
    s.request_interrupt(force=False, source="user")
    with pytest.raises(IllegalTransition, match="already interrupted"):
        s.hold()
    assert s.holds == 0


def test_release_after_forced_interrupt_still_works() -> None:
    s = SpeechState()
    s.hold()
    assert s.request_interrupt(force=True, source="close") is ACCEPTED
    s.release()
    assert s.holds == 0


def test_disallowing_after_interrupt_raises_and_changes_nothing() -> None:
    s = SpeechState()
    s.request_interrupt(force=False, source="user")
    with pytest.raises(IllegalTransition, match="already interrupted"):
        s.set_allow_interruptions(False)
    assert s.allow_interruptions
    # allowing is harmless
    s.set_allow_interruptions(True)
    assert s.allow_interruptions


def test_set_allow_interruptions_toggles_protection() -> None:
    s = SpeechState()
    s.set_allow_interruptions(False)
    assert s.protected
    assert s.request_interrupt(force=False, source="user") is DENIED
    s.set_allow_interruptions(True)
    assert s.request_interrupt(force=False, source="user") is ACCEPTED


# --------------------------------------------------------------------------- tool calls

def test_initial_tool_call_state() -> None:
    c = ToolCallState()
    assert c.phase is T.PENDING
    assert not c.protected
    assert not c.cancel_requested
    assert c.cancel_source is None
    assert c.deliveries == 0
    assert c.outcome is None
    assert ToolCallState(protected=True).protected


def test_terminal_phases() -> None:
    assert {p for p in ToolCallPhase if p.terminal} == {T.RESULT, T.ERROR, T.INTERRUPTED}


def test_start_runs_a_pending_call_once() -> None:
    c = ToolCallState()
    assert c.start() is True
    assert c.phase is T.RUNNING
    with pytest.raises(IllegalTransition, match="running"):
        c.start()


@pytest.mark.parametrize("protected", [False, True])
def test_cancel_before_start_means_never_started(protected: bool) -> None:
    c = ToolCallState(protected=protected)
    assert c.request_cancel("user") is False  # nothing to cancel yet
    assert c.cancel_requested
    assert c.cancel_source == "user"
    assert c.start() is False
    assert c.phase is T.PENDING
    assert c.deliveries == 0
    out = c.finish(T.INTERRUPTED, "interrupted")
    assert out == ToolOutcome(T.INTERRUPTED, "interrupted")
    assert c.outcome is out


def test_pending_cancel_keeps_the_first_source() -> None:
    c = ToolCallState()
    c.request_cancel("user")
    c.request_cancel("vad")
    assert c.cancel_source == "user"


def test_request_cancel_delivers_exactly_once() -> None:
    c = ToolCallState()
    c.start()
    answers = [c.request_cancel(src) for src in ("user", "vad", "user", "session")]
    answers.append(c.request_cancel("close", override_protection=True))
    assert answers == [True, False, False, False, False]
    assert c.deliveries == 1
    assert c.cancel_source == "user"
    assert c.cancel_requested


@pytest.mark.parametrize("declared", [True, False])
def test_protected_running_call_is_never_cancelled_without_override(declared: bool) -> None:
    c = ToolCallState(protected=declared)
    c.start()
    if not declared:
        c.protect()  # ctx.disallow_interruptions()
    assert c.protected
    for src in ("user", "vad", "forced"):
        assert c.request_cancel(src) is False
    assert c.deliveries == 0
    assert not c.cancel_requested
    assert c.cancel_source is None
    assert c.phase is T.RUNNING
    c.finish(T.RESULT, "42")
    assert c.outcome == ToolOutcome(T.RESULT, "42")


def test_override_protection_cancels_a_protected_call_once() -> None:
    c = ToolCallState(protected=True)
    c.start()
    assert c.request_cancel("user") is False
    assert c.request_cancel("close", override_protection=True) is True
    assert c.request_cancel("close", override_protection=True) is False
    assert c.deliveries == 1
    assert c.cancel_source == "close"


def test_protect_after_delivery_raises() -> None:
    c = ToolCallState()
    c.start()
    assert c.request_cancel("user")
    with pytest.raises(IllegalTransition, match="already interrupted"):
        c.protect()
    assert not c.protected


@pytest.mark.parametrize("phase", [T.RESULT, T.ERROR, T.INTERRUPTED])
def test_protect_after_finish_raises(phase: ToolCallPhase) -> None:
    c = ToolCallState()
    c.start()
    c.finish(phase, "x")
    with pytest.raises(IllegalTransition, match="already finished"):
        c.protect()


def test_protect_pending_call() -> None:
    c = ToolCallState()
    c.protect()
    assert c.protected
    # protection covers a running call, not one still pending
    c.request_cancel("user")
    assert c.start() is False


@pytest.mark.parametrize("phase", [T.RESULT, T.ERROR, T.INTERRUPTED])
@pytest.mark.parametrize("override", [False, True])
def test_finished_call_is_never_cancelled(phase: ToolCallPhase, override: bool) -> None:
    c = ToolCallState()
    c.start()
    c.finish(phase, "done")
    assert c.request_cancel("user", override_protection=override) is False
    assert c.deliveries == 0
    assert not c.cancel_requested
    assert c.outcome == ToolOutcome(phase, "done")


@pytest.mark.parametrize("first", [T.RESULT, T.ERROR, T.INTERRUPTED])
@pytest.mark.parametrize("second", [T.RESULT, T.ERROR, T.INTERRUPTED])
def test_finish_exactly_once(first: ToolCallPhase, second: ToolCallPhase) -> None:
    c = ToolCallState()
    c.start()
    out = c.finish(first, "one")
    with pytest.raises(IllegalTransition, match="already finished"):
        c.finish(second, "two")
    assert c.phase is first
    assert c.outcome is out
    assert out.output == "one"


@pytest.mark.parametrize("phase", [T.PENDING, T.RUNNING])
def test_finish_with_non_terminal_phase_raises(phase: ToolCallPhase) -> None:
    c = ToolCallState()
    c.start()
    with pytest.raises(IllegalTransition, match="not a terminal"):
        c.finish(phase, "x")
    assert c.phase is T.RUNNING
    assert c.outcome is None


def test_result_from_pending_is_forbidden() -> None:
    c = ToolCallState()
    with pytest.raises(IllegalTransition, match="never ran"):
        c.finish(T.RESULT, "x")
    assert c.phase is T.PENDING
    assert c.outcome is None


def test_error_from_pending_is_allowed() -> None:
    c = ToolCallState()  # e.g. unknown tool or invalid arguments
    out = c.finish(T.ERROR, "no such tool")
    assert out == ToolOutcome(T.ERROR, "no such tool")
    assert c.phase is T.ERROR
    with pytest.raises(IllegalTransition):
        c.start()


def test_interrupted_from_pending_is_allowed() -> None:
    c = ToolCallState()
    c.finish(T.INTERRUPTED, "interrupted")
    assert c.phase is T.INTERRUPTED


@pytest.mark.parametrize("phase", [T.RESULT, T.ERROR, T.INTERRUPTED])
def test_cannot_start_a_finished_call(phase: ToolCallPhase) -> None:
    c = ToolCallState()
    c.start()
    c.finish(phase, "x")
    with pytest.raises(IllegalTransition, match=phase.value):
        c.start()


def test_delivered_call_finishes_interrupted_once() -> None:
    c = ToolCallState()
    c.start()
    assert c.request_cancel("user")
    c.finish(T.INTERRUPTED, "interrupted")
    assert c.outcome == ToolOutcome(T.INTERRUPTED, "interrupted")


def test_tool_outcome_is_frozen() -> None:
    out = ToolOutcome(T.RESULT, "x")
    with pytest.raises(AttributeError):
        out.output = "y"  # type: ignore[misc]


# --------------------------------------------------------------------------- random sequences

_TOOL_OPS = st.lists(
    st.one_of(
        st.just(("start",)),
        st.just(("protect",)),
        st.tuples(st.just("cancel"), st.sampled_from(["user", "vad", "close"]), st.booleans()),
        st.tuples(st.just("finish"), st.sampled_from(list(ToolCallPhase))),
    ),
    max_size=20,
)


@settings(max_examples=300, deadline=None)
@given(initially_protected=st.booleans(), ops=_TOOL_OPS)
def test_tool_call_random_sequences_keep_invariants(initially_protected: bool, ops: list[tuple]) -> None:
    c = ToolCallState(protected=initially_protected)
    started = False
    terminal_count = 0
    true_answers = 0
    first_outcome: ToolOutcome | None = None
    for op in ops:
        before = (c.phase, c.protected, c.deliveries, c.outcome)
        try:
            if op[0] == "start":
                if c.start():
                    assert not started
                    started = True
                    assert c.phase is T.RUNNING
                    assert not c.cancel_requested
                else:
                    assert c.cancel_requested
                    assert c.phase is T.PENDING
            elif op[0] == "protect":
                c.protect()
                assert c.protected
            elif op[0] == "cancel":
                _, src, override = op
                was_protected, was_phase = c.protected, c.phase
                if c.request_cancel(src, override_protection=override):
                    true_answers += 1
                    assert was_phase is T.RUNNING
                    assert override or not was_protected
                elif was_phase is T.RUNNING and was_protected and not override:
                    assert (c.phase, c.protected, c.deliveries, c.outcome) == before
            else:
                out = c.finish(op[1], "x")
                terminal_count += 1
                first_outcome = first_outcome or out
                assert c.phase.terminal
        except IllegalTransition:
            assert (c.phase, c.protected, c.deliveries, c.outcome) == before
        assert c.deliveries <= 1
        assert true_answers == c.deliveries
        assert terminal_count <= 1
        if first_outcome is not None:
            assert c.outcome is first_outcome
        if c.phase is T.RESULT:
            assert started
        if c.deliveries:
            assert started
    assert terminal_count == (1 if c.phase.terminal else 0)


class SpeechAndTools(RuleBasedStateMachine):
    """Random operations on a speech and its tool calls, as the driver could issue them."""

    def __init__(self) -> None:
        super().__init__()
        self.speech = SpeechState()
        self.calls: list[ToolCallState] = []
        self.finished: set[int] = set()
        self.was_interrupted = False
        self.source: str | None = None
        self.last_phase = self.speech.phase
        self.done_seen = False

    # speech ---------------------------------------------------------------
    @rule(method=st.sampled_from(["schedule", "authorize", "playout_finished", "next_step", "finish"]))
    def move(self, method: str) -> None:
        before = snapshot(self.speech)
        try:
            getattr(self.speech, method)()
        except IllegalTransition:
            assert snapshot(self.speech) == before

    @rule(force=st.booleans(), source=st.sampled_from(["user", "vad", "session"]))
    def interrupt(self, force: bool, source: str) -> None:
        s = self.speech
        protected, done, was = s.protected, s.done, s.interrupted
        decision = s.request_interrupt(force=force, source=source)
        if done or was:
            assert decision is NOOP
        elif protected and not force:
            assert decision is DENIED
            assert not s.interrupted
        else:
            assert decision is ACCEPTED
            self.source = source
        if decision is ACCEPTED:
            # the driver delivers the interrupt to every call
            for c in self.calls:
                protected_call, deliveries = c.protected, c.deliveries
                if c.request_cancel(source):
                    assert not protected_call and deliveries == 0 and c.phase is T.RUNNING

    @rule()
    def hold(self) -> None:
        try:
            self.speech.hold()
        except IllegalTransition:
            assert self.speech.interrupted

    @rule()
    def release(self) -> None:
        holds = self.speech.holds
        try:
            self.speech.release()
        except IllegalTransition:
            assert holds == 0

    @rule(value=st.booleans())
    def set_allow(self, value: bool) -> None:
        try:
            self.speech.set_allow_interruptions(value)
            assert self.speech.allow_interruptions is value
        except IllegalTransition:
            assert self.speech.interrupted and not value

    # tools ----------------------------------------------------------------
    @precondition(lambda self: len(self.calls) < 5)
    @rule(protected=st.booleans())
    def new_call(self, protected: bool) -> None:
        self.calls.append(ToolCallState(protected=protected))

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data())
    def start_call(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(self.calls))
        try:
            c.start()
        except IllegalTransition:
            assert c.phase is not T.PENDING

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data())
    def protect_call(self, data: st.DataObject) -> None:
        c = data.draw(st.sampled_from(self.calls))
        try:
            c.protect()
        except IllegalTransition:
            assert c.phase.terminal or c.deliveries

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data(), phase=st.sampled_from([T.RESULT, T.ERROR, T.INTERRUPTED]))
    def finish_call(self, data: st.DataObject, phase: ToolCallPhase) -> None:
        i = data.draw(st.integers(0, len(self.calls) - 1))
        c = self.calls[i]
        try:
            c.finish(phase, "x")
        except IllegalTransition:
            assert c.phase.terminal or (phase is T.RESULT and c.phase is T.PENDING)
            return
        assert i not in self.finished
        self.finished.add(i)

    @precondition(lambda self: bool(self.calls))
    @rule(data=st.data(), override=st.booleans())
    def cancel_call(self, data: st.DataObject, override: bool) -> None:
        c = data.draw(st.sampled_from(self.calls))
        protected, deliveries = c.protected, c.deliveries
        if c.request_cancel("close", override_protection=override):
            assert deliveries == 0
            assert override or not protected

    # invariants -----------------------------------------------------------
    @invariant()
    def latch_is_monotonic(self) -> None:
        s = self.speech
        if self.was_interrupted:
            assert s.interrupted
            assert s.interrupt_source == self.source
        self.was_interrupted = s.interrupted
        if s.interrupted:
            assert s.interrupt_source is not None

    @invariant()
    def done_is_terminal(self) -> None:
        if self.done_seen:
            assert self.speech.done
        self.done_seen = self.speech.done

    @invariant()
    def holds_never_negative(self) -> None:
        assert self.speech.holds >= 0
        assert self.speech.protected == (not self.speech.allow_interruptions or self.speech.holds > 0)

    @invariant()
    def calls_keep_their_rules(self) -> None:
        for i, c in enumerate(self.calls):
            assert c.deliveries <= 1
            assert (c.outcome is not None) == c.phase.terminal == (i in self.finished)
            if c.deliveries:
                assert c.cancel_requested


SpeechAndTools.TestCase.settings = settings(max_examples=150, stateful_step_count=30, deadline=None)
TestSpeechAndTools = SpeechAndTools.TestCase
