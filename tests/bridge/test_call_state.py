"""The pure tool-call state machine (no loop): rules 1-4 of bridge._state."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge._state import CallPhase, ToolCallState


def test_cancel_granted_once() -> None:
    s = ToolCallState("c1")
    assert s.start()
    assert s.request_cancel("interrupt a")
    assert not s.request_cancel("interrupt b")
    assert not s.request_cancel("teardown")
    assert s.cancel_requests == 1 and s.cancel_reason == "interrupt a"
    assert s.refused == ["interrupt b", "teardown"]


def test_cancel_before_start_prevents_start() -> None:
    s = ToolCallState("c1")
    assert s.request_cancel("early")
    assert not s.start()
    s.finish(CallPhase.INTERRUPTED)
    assert s.phase is CallPhase.INTERRUPTED


def test_protected_never_cancelled() -> None:
    s = ToolCallState("c1", interruptible=False)
    assert s.protected and s.start()
    assert not s.request_cancel("force")
    assert s.cancel_requests == 0


def test_protect_after_cancel_is_refused() -> None:
    s = ToolCallState("c1")
    s.start()
    s.request_cancel("x")
    assert not s.protect()


def test_one_terminal_phase() -> None:
    s = ToolCallState("c1")
    s.start()
    s.finish(CallPhase.RESULT)
    assert not s.request_cancel("late")
    with pytest.raises(AssertionError):
        s.finish(CallPhase.INTERRUPTED)


EVENTS = st.lists(st.sampled_from(["cancel", "protect", "start", "result", "error"]), max_size=12)


@given(events=EVENTS, interruptible=st.booleans())
def test_random_interleavings_keep_the_rules(events: list[str], interruptible: bool) -> None:
    s = ToolCallState("c1", interruptible=interruptible)
    started = False
    for i, ev in enumerate(events):
        if ev == "cancel":
            was_protected, was_terminal = s.protected, s.phase.terminal
            granted = s.request_cancel(f"r{i}")
            if granted:
                assert not was_protected and not was_terminal
        elif ev == "protect":
            s.protect()
        elif ev == "start" and not started and not s.phase.terminal:
            started = True
            if not s.start():
                assert s.cancel_reason is not None
                s.finish(CallPhase.INTERRUPTED)
        elif ev in ("result", "error") and s.phase is CallPhase.RUNNING:
            s.finish(CallPhase.RESULT if ev == "result" else CallPhase.ERROR)
    assert s.cancel_requests <= 1
    if not interruptible:
        assert s.cancel_requests == 0
