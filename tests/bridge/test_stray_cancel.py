"""A bridged tool whose trio body ends in asyncio.CancelledError: one error output, no spin.

The cases run in ``hosted/stray_cancel_app.py``, in a fresh interpreter under a real-time
bound: the bug this pins made the bridge loop spin inside one asyncio callback, where no
trio deadline (virtual or real) can fire, so only killing the process bounds it. One
interpreter runs every case (importing livekit is most of the cost).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).parent / "hosted" / "stray_cancel_app.py"
ROOT = Path(__file__).resolve().parents[2]
MODES = ["direct", "aio", "group", "interrupted"]
BOUND = 90.0  # real seconds; a healthy run of all cases takes about 5


@pytest.fixture(scope="module")
def app_output() -> str:
    try:
        out = subprocess.run(
            [sys.executable, str(APP), *MODES], cwd=ROOT, capture_output=True, text=True, timeout=BOUND
        )
    except subprocess.TimeoutExpired as exc:
        done = [m for m in MODES if f"{m} phases" in str(exc.stdout or "")]
        pytest.fail(f"a bridged call never finished (the loop spun for {BOUND:g} s); finished: {done}")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "exit ok" in out.stdout
    return out.stdout + out.stderr


def lines(text: str, mode: str, kind: str) -> list[str]:
    prefix = f"{mode} {kind} "
    return [line[len(prefix) :] for line in text.splitlines() if line.startswith(prefix)]


@pytest.mark.parametrize("mode", ["direct", "aio", "group"])
def test_tool_ending_in_asyncio_cancelled_error_is_one_error_output(app_output: str, mode: str) -> None:
    assert lines(app_output, mode, "bounded") == ["False"]  # finished in virtual time
    # exactly one output, an error, not mistaken for an interrupt (nobody interrupted)
    assert lines(app_output, mode, "output") == ["c1 True False An internal error occurred"], app_output
    # the session went on: the reply step after the tool, then a second turn
    assert lines(app_output, mode, "messages") == ["['One moment.', 'Something went wrong.', 'Hello again.']"]
    assert lines(app_output, mode, "phases") == ["['body ended']"]
    assert "UnexpectedCancelError" in app_output  # livekit logged the cause


def test_asyncio_cancel_while_answering_an_interrupt_is_the_interrupt(app_output: str) -> None:
    """The call was cancelled by an interrupt; its cleanup then ended in asyncio's
    CancelledError instead of trio's Cancelled. Still one output: interrupted."""
    assert lines(app_output, "interrupted", "bounded") == ["False"]
    (out,) = lines(app_output, "interrupted", "output")
    assert out.startswith("c1 True True interrupted:"), app_output
    assert lines(app_output, "interrupted", "phases") == ["['body ended']"]
