"""Bridge mode inside an ordinary asyncio livekit program (loop from asyncio.new_event_loop()).

Each case runs in a fresh interpreter, because importing trio_asyncio patches asyncio for
the whole process and the point is what livekit's own loop creation returns.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

APP = Path(__file__).parent / "hosted" / "asyncio_first_app.py"
ROOT = Path(__file__).resolve().parents[2]


def run_app(mode: str, runner: str = "ruc") -> str:
    out = subprocess.run(
        [sys.executable, str(APP), mode, runner], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "exit ok" in out.stdout
    return out.stdout + out.stderr


@pytest.mark.parametrize("mode", ["install", "auto"])
def test_bridged_tool_in_asyncio_first_program(mode: str) -> None:
    text = run_app(mode)
    assert "loop BridgeSyncEventLoop" in text
    outputs = [line for line in text.splitlines() if line.startswith("output c1 ")]
    assert len(outputs) == 1
    if mode == "install":
        assert outputs[0].startswith("output c1 True interrupted:")
        assert text.count("cancelled: livekit speech") == 1
        assert "speech not done in time" not in text


RUNNERS = [
    "run",
    pytest.param(
        "runner",
        marks=pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.Runner is 3.11+"),
    ),
]


@pytest.mark.parametrize("runner", RUNNERS)
def test_asyncio_run_and_runner(runner: str) -> None:
    """asyncio.run() (3.11+) and asyncio.Runner run the main task in a context of their
    own, made before the loop runs: the tool's trio code must still find the bridge loop
    (it raised NotInstalledError from ctx.wait_for_playout())."""
    text = run_app("install", runner)
    assert "loop BridgeSyncEventLoop" in text
    assert "NotInstalledError" not in text
    outputs = [line for line in text.splitlines() if line.startswith("output c1 ")]
    assert len(outputs) == 1 and outputs[0].startswith("output c1 True interrupted:"), text
    assert text.count("cancelled: livekit speech") == 1


def test_loop_created_before_the_bridge_is_refused_clearly() -> None:
    text = run_app("late")
    assert "NotInstalledError" in text and "bridge.install()" in text
    assert "output c1 True An internal error occurred" in text
