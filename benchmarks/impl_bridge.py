"""bridge: stock livekit-agents hosted on trio by :mod:`bridge`, with bridged trio tools.

The same ``AgentSession`` and the same :mod:`bridge.testing` fakes as the
``livekit`` processes, on the bridge's trio-asyncio loop (``bridge.open_loop``).
What the bridge adds, and what is measured here:

* the tools are ``@bridge.function_tool`` trio bodies (an interrupt cancels them);
* the sink sits behind ``bridge.with_sink_grace(sink, 2.0)``, the bridge's bound on
  a sink that never confirms (the counterpart of trio_playout's ``sink_grace``);
* the external waiter is trio code: ``await bridge.wait_for_playout(handle)``,
  stamped in trio right after it returns; ``handle.interrupt()`` is called
  directly from trio, stamped right before.

This is the only worker that imports trio_asyncio.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from typing import Any

import trio
from livekit.agents import Agent

import bridge
from benchmarks import _trio_tools as trio_tools
from benchmarks._common import SETTLE_S, interrupt_offset, lost_records, scale_point
from benchmarks._proc import peak_rss_bytes, rss_bytes
from benchmarks.impl_livekit import Conversation as _LivekitConversation
from benchmarks.impl_livekit import _count, _Current, _sink_stop_ns, _WatchdogLog
from benchmarks.model import Probe, RunOutput, Sample, WorkerConfig, now_ns
from benchmarks.scenarios import (
    BUSY_PERIOD_S,
    BUSY_WORK_S,
    SCENARIOS,
    Scenario,
)

SINK_GRACE_S = 2.0


def _tools(current: _Current) -> list[Any]:
    @bridge.function_tool
    async def lookup(ctx: bridge.RunContext) -> str:
        """Look up the answer (the #5359 preamble tool)."""
        return await trio_tools.lookup(ctx, current.probe)

    @bridge.function_tool
    async def long_task(ctx: bridge.RunContext) -> str:
        """A task that takes 12 seconds."""
        return await trio_tools.long_task(current.probe)

    return [lookup, long_task]


class Conversation(_LivekitConversation):
    """The stock livekit conversation, on the bridge loop, with bridged trio tools and
    the sink behind the bridge's grace."""

    def _wrap_sink(self, sink: Any) -> Any:
        self.grace = bridge.with_sink_grace(sink, SINK_GRACE_S)
        return self.grace

    async def start(self) -> None:
        await bridge.aio(self.session.start)(
            agent=Agent(instructions="You are a benchmark.", tools=_tools(self.current))
        )

    async def aclose(self) -> None:
        # not measured; bounded like the livekit worker's close
        with trio.move_on_after(2, shield=True):
            await bridge.aio(self.session.aclose)()
            if self.sync is not None:
                await bridge.aio(self.sync.aclose)()


async def _wait_until(pred: Callable[[], bool], limit_s: float, step: float = 0.001) -> bool:
    """Poll ``pred`` (setup and observation only, never inside a timing window)."""
    with trio.move_on_after(limit_s):
        while not pred():  # noqa: ASYNC110 - polling objects that have no event to wait on
            await trio.sleep(step)
        return True
    return False


async def one_sample(
    conv: Conversation, scenario: Scenario, observe_s: float, watchdog: _WatchdogLog
) -> Sample:
    probe = conv.current.probe = Probe()
    seg_before = len(conv.sink.segments)
    expiries_before = len(conv.grace.expiries)
    hist_before = conv.history_ids()
    handle = conv.start_speech(scenario)

    if scenario.id == "S5":
        if not await _wait_until(lambda: probe.t_tool_started is not None, 10.0):
            raise RuntimeError("the long tool never started")
    elif not await _wait_until(lambda: len(conv.sink.segments) > seg_before, 10.0):
        raise RuntimeError("playback never started")
    await trio.sleep(interrupt_offset(scenario))

    probe.mark_interrupt()
    handle.interrupt()
    await bridge.wait_for_playout(handle)
    probe.mark_wait_returned()
    # the bridge's counterpart of trio_playout's SpeechHandle.sink_timed_out
    sink_timed_out = len(conv.grace.expiries) > expiries_before

    running = sum(1 for t in handle._tasks if not t.done()) + int(probe.tool_running)
    done_items = len(conv.new_items(hist_before))

    def quiet() -> bool:
        return (
            not probe.tool_running
            and all(
                not s.playing and (s.confirmed or conv.sink.clear_delay == float("inf"))
                for s in conv.sink.segments[seg_before:]
            )
            and all(t.done() for t in handle._tasks)
        )

    await _wait_until(quiet, observe_s)
    await trio.sleep(SETTLE_S)
    segments = conv.sink.segments[seg_before:]
    items = conv.new_items(hist_before)
    stop = _sink_stop_ns(segments)
    if stop is not None and probe.t_interrupt is not None and stop < probe.t_interrupt:
        stop = probe.t_interrupt
    probe.t_sink_stopped = stop
    heard = sum(s.position or 0.0 for s in segments)
    return probe.finish(
        lost_records=lost_records(scenario, heard, _count(items)),
        running_at_done=running,
        late_writes=len(items) - done_items,
        sink_timed_out=sink_timed_out,
        watchdog_fired=handle.id in watchdog.fired,
    )


async def _busy_loop() -> None:
    nxt = time.perf_counter()
    while True:
        t = time.perf_counter()
        while time.perf_counter() - t < BUSY_WORK_S:
            pass
        nxt += BUSY_PERIOD_S
        await trio.sleep(max(0.0, nxt - time.perf_counter()))


async def _series(cfg: WorkerConfig, watchdog: _WatchdogLog) -> RunOutput:
    sc = cfg.scenario
    out = RunOutput()
    current = _Current(Probe())

    async def block(scn: Scenario, count: int, fresh: bool, observe: float,
                    collect: bool, deadline: float | None) -> None:
        conv: Conversation | None = None
        try:
            for i in range(count):
                if deadline is not None and time.monotonic() > deadline:
                    out.budget_hit = True
                    break
                if conv is None or fresh:
                    if conv is not None:
                        await conv.aclose()
                    conv = Conversation(scn.clear_delay, current, scn.sink_buffer_s)
                    await conv.start()
                sample = await one_sample(conv, scn, observe, watchdog)
                if collect:
                    out.samples.append(sample)
                    cfg.progress(i + 1, count)
        finally:
            if conv is not None:
                await conv.aclose()

    async with bridge.open_loop(), trio.open_nursery() as nursery:
        if sc.id == "S7":
            nursery.start_soon(_busy_loop)
        warm = SCENARIOS["S1"] if sc.warmup_as_s1 else sc
        await block(warm, cfg.warmup, False, warm.observe(cfg.quick), False, None)
        gc.collect()
        await block(sc, cfg.n, sc.fresh_session, cfg.observe_s, True,
                    time.monotonic() + cfg.budget_s)
        nursery.cancel_scope.cancel()
    return out


async def _scale(cfg: WorkerConfig) -> RunOutput:
    n = cfg.level or 1
    out = RunOutput()
    s6 = SCENARIOS["S6"]
    async with bridge.open_loop():
        warm = Conversation(0.0, _Current(Probe()))
        await warm.start()
        await one_sample(warm, SCENARIOS["S1"], 0.005, _WatchdogLog())
        await warm.aclose()
        del warm
        gc.collect()
        rss0 = rss_bytes()
        t_setup = time.perf_counter()
        deadline = time.monotonic() + cfg.budget_s
        convs: list[Conversation] = []
        try:
            for _ in range(n):
                c = Conversation(0.0, _Current(Probe()))
                await c.start()
                convs.append(c)
                if time.monotonic() > deadline:
                    out.skipped = f"creating {n} sessions exceeded the {cfg.budget_s:.0f} s budget"
                    return out
            handles = [c.start_speech(s6) for c in convs]
            ok = await _wait_until(
                lambda: all(c.sink.segments for c in convs),
                max(10.0, deadline - time.monotonic()),
            )
            if not ok:
                out.skipped = f"{n} conversations did not all start playing within the budget"
                return out
            await trio.sleep(interrupt_offset(s6))
            setup_s = time.perf_counter() - t_setup
            returned: list[int] = [0] * n
            parked = 0

            async def waiter(i: int, h: Any) -> None:
                nonlocal parked
                parked += 1
                await bridge.wait_for_playout(h)
                returned[i] = now_ns()

            async with trio.open_nursery() as waiters:
                for i, h in enumerate(handles):
                    waiters.start_soon(waiter, i, h)
                await _wait_until(lambda: parked == n, 60.0, step=0)
                done_before = sum(1 for h in handles if h.done())
                t0 = now_ns()
                for h in handles:
                    h.interrupt()
                t1 = now_ns()
            peak = peak_rss_bytes()
            sink_stops = [_sink_stop_ns(c.sink.segments) for c in convs]
            running = sum(1 for h in handles for t in h._tasks if not t.done())
            out.scale = scale_point(
                n=n, t0=t0, t1=t1, returned=returned, sink_stops=sink_stops, running=running,
                rss0=rss0, peak=peak, setup_s=setup_s, done_before=done_before,
            )
        finally:
            for c in convs:
                await c.aclose()
    return out


def run(cfg: WorkerConfig) -> RunOutput:
    """Entry point for the worker (``bridge``)."""
    watchdog = _WatchdogLog()
    logging.getLogger("livekit.agents").addHandler(watchdog)
    logging.getLogger("livekit.agents").setLevel(logging.ERROR)
    out = trio.run(_scale, cfg) if cfg.scenario.id == "S6" else trio.run(_series, cfg, watchdog)
    out.notes.append(
        f"bridge.open_loop (trio-asyncio), bridged trio tools, "
        f"bridge.with_sink_grace({SINK_GRACE_S:g} s) above bridge.testing.FakeAudioSink "
        f"(buffer={cfg.scenario.sink_buffer_s:g} s)"
    )
    if cfg.scenario.clear_delay == float("inf"):
        out.notes.append("never-confirming sink: FakeAudioSink(clear_delay=inf): the clear never "
                         "arrives, the buffered audio plays out, no confirmation")
    return out
