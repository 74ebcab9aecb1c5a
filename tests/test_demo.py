"""The demo (the README's main job) runs and tells the story it promises."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from trio_playout import demo


@pytest.mark.parametrize("clear_delay", [0.15, math.inf])
async def test_demo_timeline(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str], clear_delay: float
) -> None:
    await demo.run_demo(barge_in_after=1.0, clear_delay=clear_delay, sink_grace=2.0)
    out = capsys.readouterr().out
    assert out.count("tool got the interrupt once") == 1
    waited = "2000.000" if clear_delay == math.inf else "150.000"
    assert f"wait_for_playout() returned ({waited} ms after the interrupt)" in out
    assert ("never confirmed" in out) is (clear_delay == math.inf)
    assert "(interrupted)" in out and "[call_1, interrupted]" in out
    assert "'London is cloudy today.'" in out


def test_demo_rejects_bad_arguments() -> None:
    with pytest.raises(SystemExit):
        demo.main(["--sink-grace", "inf"])
