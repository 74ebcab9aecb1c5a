"""Bridged trio tools inside a real livekit AgentSession: the interrupt contract.

Virtual time (``autojump_clock``): the preamble is 14 words at 2 words/s = 7 s of audio;
the tests interrupt 1 s in. ``t_int`` is the interrupt's time; durations are relative.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
from harness import ToolProbe, preamble_then_tool, running_session, watchdog_fired

import bridge


@pytest.mark.parametrize(
    ("clear_delay", "done_after"), [(0.0, 0.0), (0.15, 0.15)], ids=["instant", "avatar"]
)
async def test_5359_preamble_barge_in_sink_confirms(
    autojump_clock: trio.abc.Clock, caplog: Any, clear_delay: float, done_after: float
) -> None:
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, wait_playout=True)
    async with running_session([tool], preamble_then_tool("lookup"), clear_delay=clear_delay) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        done = trio.current_time() - t_int

        assert done == pytest.approx(done_after, abs=0.02)
        assert len(probe.starts) == 1
        assert probe.cancelled == [t_int]  # one cancellation, at the interrupt
        assert probe.finished == []
        assert probe.contexts[0]._state.cancel_requests == 1
        assert "source=programmatic" in (probe.reasons[0] or "")
        assert not watchdog_fired(caplog)
        outs = env.outputs("c1")
        assert len(outs) == 1 and bridge.is_interrupted_output(outs[0])
        assert len(env.calls("c1")) == 1
        # the heard part of the preamble is recorded, marked interrupted
        (msg,) = env.assistant_messages()
        assert msg.interrupted and 0 < len(msg.text_content or "") < 30
        await trio.sleep(10)  # nothing happens later: no watchdog, no late writes
        assert not watchdog_fired(caplog)
        assert len(env.outputs("c1")) == 1 and len(probe.cancelled) == 1


async def test_5359_preamble_barge_in_sink_never_confirms(
    autojump_clock: trio.abc.Clock, caplog: Any
) -> None:
    """The tool is cancelled at once, but livekit itself waits for the deaf sink.

    livekit's reply task waits for the sink's confirmation with no bound; its 5 s
    watchdog ends the speech and the step's records are lost (stock behaviour the bridge
    does not change). ``bridge.with_sink_grace`` fixes it: next test.
    """
    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, wait_playout=True)
    async with running_session([tool], preamble_then_tool("lookup"), clear_delay=math.inf) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(5.0, abs=0.02)
        assert probe.cancelled == [t_int]
        assert watchdog_fired(caplog)
        assert env.outputs("c1") == [] and env.calls("c1") == []


async def test_5359_never_confirming_sink_with_grace(
    autojump_clock: trio.abc.Clock, caplog: Any
) -> None:
    from bridge.testing import FakeAudioSink

    probe = ToolProbe()
    tool = probe.slow_tool("lookup", 1.0, wait_playout=True)
    deaf = FakeAudioSink(clear_delay=math.inf)
    graced = bridge.with_sink_grace(deaf, grace=2.0)
    async with running_session([tool], preamble_then_tool("lookup"), sink=graced) as env:
        handle = env.session.generate_reply(user_input="weather?")
        await trio.sleep(1.0)
        t_int = trio.current_time()
        handle.interrupt()
        await bridge.wait_for_playout(handle)
        assert trio.current_time() - t_int == pytest.approx(2.0, abs=0.02)
        assert probe.cancelled == [t_int]
        assert not watchdog_fired(caplog)
        assert len(graced.expiries) == 1
        assert not deaf.playing  # the audio really stopped at the interrupt
        assert deaf.segments[-1].stopped_at == pytest.approx(t_int, abs=0.01)
        outs = env.outputs("c1")
        assert len(outs) == 1 and bridge.is_interrupted_output(outs[0])
        (msg,) = env.assistant_messages()
        assert msg.interrupted
