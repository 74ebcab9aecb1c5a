"""Stock livekit-agents on plain asyncio, and the race patch of PR #5700.

PR #5700 (https://github.com/livekit/agents/pull/5700) and PR #5425
(https://github.com/livekit/agents/pull/5425) both tried to fix issue #5359
(https://github.com/livekit/agents/issues/5359).

A real ``livekit.agents.AgentSession`` runs in-process with no room: the model
and sink fakes of :mod:`bridge.testing` (built on the SDK's public base
classes, and importing neither trio nor trio_asyncio) are its LLM, TTS and
audio output, behind livekit's own ``TranscriptSynchronizer``.

``livekit-race`` is the same process with ``SpeechHandle.wait_for_playout`` and
``RunContext.wait_for_playout`` replaced by the race that PR #5700 (and #5425)
proposed and the maintainers rejected: return as soon as the interrupt future
*or* the done future (for ``RunContext``: the step's generation future)
resolves. We measure how often that returns while the sink is still playing,
which is why it was rejected.

The moment "the sink stopped playing" is when the audio actually stopped, as
the sink recorded it (``PlayedSegment.stopped_at_ns``): at once for
``clear_delay=0``, 150 ms later for the avatar (it plays on until the clear
reaches it, then stops and confirms), and for a sink that never confirms
(``clear_delay=inf``: the clear never arrives) when its buffered audio ran out.
The sink accepts at most :data:`SINK_BUFFER_S` of audio ahead of playback, like
``trio_playout.RealtimeAudioSink``'s default, so "buffered audio" means the same
in every implementation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import Agent, AgentSession, RunContext, function_tool
from livekit.agents.llm import ChatMessage, FunctionCall, FunctionCallOutput

from benchmarks._common import (
    SETTLE_S,
    TOOL_OF,
    HistoryCount,
    interrupt_offset,
    lost_records,
    scale_point,
)
from benchmarks._proc import peak_rss_bytes, rss_bytes
from benchmarks.model import Probe, RunOutput, Sample, WorkerConfig, now_ns
from benchmarks.scenarios import (
    BUSY_PERIOD_S,
    BUSY_WORK_S,
    LONG_TOOL_PREAMBLE,
    LONG_TOOL_S,
    LOOKUP_S,
    PREAMBLE_TEXT,
    SCENARIOS,
    SINK_BUFFER_S,
    SPEECH_TEXT,
    WORDS_PER_SECOND,
    Scenario,
)

# --------------------------------------------------------------------------------------
# the race patch (PR #5700)


def install_race_patch() -> None:
    """Replace both ``wait_for_playout`` methods with the rejected interrupt race."""
    from livekit.agents.voice.events import RunContext
    from livekit.agents.voice.speech_handle import SpeechHandle

    async def _race(a: asyncio.Future[Any], b: asyncio.Future[Any]) -> None:
        if a.done() or b.done():
            return
        await asyncio.wait(
            [asyncio.shield(a), asyncio.shield(b)], return_when=asyncio.FIRST_COMPLETED
        )

    async def handle_wait(self: SpeechHandle) -> None:
        await _race(self._done_fut, self._interrupt_fut)

    async def ctx_wait(self: RunContext[Any]) -> None:
        handle = self.speech_handle
        gens = handle._generations
        idx = self._initial_step_idx
        if not gens or idx >= len(gens):
            # fall back to the stock behaviour for its error cases
            await handle._wait_for_generation(step_idx=idx)
            return
        await _race(gens[idx], handle._interrupt_fut)

    SpeechHandle.wait_for_playout = handle_wait  # type: ignore[method-assign]
    RunContext.wait_for_playout = ctx_wait  # type: ignore[method-assign]


# --------------------------------------------------------------------------------------
# watchdog detection


class _WatchdogLog(logging.Handler):
    """Collects the speech ids for which livekit's 5 s INTERRUPTION_TIMEOUT fired."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.fired: set[str] = set()

    def emit(self, record: logging.LogRecord) -> None:
        if "speech not done in time" in record.getMessage():
            sid = getattr(record, "speech_id", None)
            if isinstance(sid, str):
                self.fired.add(sid)


# --------------------------------------------------------------------------------------
# one conversation


@dataclass
class _Current:
    """The probe the tools of the running sample write into."""

    probe: Probe = field(default_factory=Probe)


class Conversation:
    """One AgentSession with the bridge.testing fakes and our two tools."""

    def __init__(
        self, clear_delay: float, current: _Current, buffer: float = SINK_BUFFER_S
    ) -> None:
        from bridge.testing import FakeAudioSink, ScriptedLLM, SilentTTS, attach_sink

        self.current = current
        # math.inf: no back-pressure, the sink takes the whole reply at once
        self.sink = FakeAudioSink(
            clear_delay=clear_delay, buffer=None if math.isinf(buffer) else buffer
        )
        self.llm = ScriptedLLM()
        self.session: Any = AgentSession(
            llm=self.llm, tts=SilentTTS(words_per_second=WORDS_PER_SECOND)
        )
        self.sync = attach_sink(self.session, self._wrap_sink(self.sink))

    def _wrap_sink(self, sink: Any) -> Any:
        """What sits between livekit and the fake sink (the bridge adds its grace)."""
        return sink

    async def start(self) -> None:
        current = self.current

        @function_tool
        async def lookup(ctx: RunContext[Any]) -> str:
            """Look up the answer (the #5359 preamble tool)."""
            probe = current.probe
            probe.mark_tool_started()
            try:
                try:
                    await ctx.wait_for_playout()
                except asyncio.CancelledError:
                    probe.mark_ctx_wait("cancelled")
                    raise
                except Exception as exc:
                    probe.mark_ctx_wait(f"error:{type(exc).__name__}")
                    raise
                probe.mark_ctx_wait("returned")
                await asyncio.sleep(LOOKUP_S)
                return "It is sunny."
            finally:
                probe.mark_tool_stopped()

        @function_tool
        async def long_task(ctx: RunContext[Any]) -> str:
            """A task that takes 12 seconds."""
            probe = current.probe
            probe.mark_tool_started()
            try:
                await asyncio.sleep(LONG_TOOL_S)
                return "done"
            finally:
                probe.mark_tool_stopped()

        await self.session.start(
            agent=Agent(instructions="You are a benchmark.", tools=[lookup, long_task])
        )

    async def aclose(self) -> None:
        # not measured; bounded because livekit's aclose() waits for a running
        # 12 s tool, which would only slow the benchmark down
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.session.aclose(), timeout=2)
        if self.sync is not None:
            with contextlib.suppress(Exception):
                await self.sync.aclose()

    def history_ids(self) -> set[int]:
        return {id(it) for it in self.session.history.items}

    def new_items(self, before: set[int]) -> list[Any]:
        return [it for it in self.session.history.items if id(it) not in before]

    def start_speech(self, scenario: Scenario) -> Any:
        from bridge.testing import Reply, ToolCall

        tool = TOOL_OF[scenario.id]
        if tool == "lookup":
            self.llm.push(Reply(text=PREAMBLE_TEXT, tool_calls=[ToolCall("lookup")]))
            return self.session.generate_reply(user_input="What is the weather like?")
        if tool == "long_task":
            self.llm.push(Reply(text=LONG_TOOL_PREAMBLE, tool_calls=[ToolCall("long_task")]))
            return self.session.generate_reply(user_input="Please run the long task.")
        return self.session.say(SPEECH_TEXT)


def _count(items: list[Any]) -> HistoryCount:
    msgs = sum(
        1
        for it in items
        if isinstance(it, ChatMessage) and it.role == "assistant" and (it.text_content or "")
    )
    calls = sum(1 for it in items if isinstance(it, FunctionCall))
    outs = sum(1 for it in items if isinstance(it, FunctionCallOutput))
    return HistoryCount(msgs, calls, outs)


def _sink_stop_ns(segments: list[Any]) -> int | None:
    """When the sample's audio actually stopped, None if it is still playing."""
    stops: list[int] = []
    for seg in segments:
        t = seg.stopped_at_ns
        if t is None:
            return None
        stops.append(t)
    return max(stops) if stops else None


async def _wait_until(pred: Callable[[], bool], timeout: float, step: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


# --------------------------------------------------------------------------------------
# one sample


async def one_sample(
    conv: Conversation, scenario: Scenario, observe_s: float, watchdog: _WatchdogLog
) -> Sample:
    probe = conv.current.probe = Probe()
    seg_before = len(conv.sink.segments)
    hist_before = conv.history_ids()
    handle = conv.start_speech(scenario)

    # --- setup, outside the timing window
    if scenario.id == "S5":
        if not await _wait_until(lambda: probe.t_tool_started is not None, 10.0):
            raise RuntimeError("the long tool never started")
        await asyncio.sleep(interrupt_offset(scenario))
    else:
        if not await _wait_until(lambda: len(conv.sink.segments) > seg_before, 10.0):
            raise RuntimeError("playback never started")
        await asyncio.sleep(interrupt_offset(scenario))
    segments = conv.sink.segments[seg_before:]
    heard_at_interrupt = conv.sink.heard_seconds()

    # --- the window: stamp right before interrupt(), right after the wait returns
    probe.mark_interrupt()
    handle.interrupt()
    await handle.wait_for_playout()
    probe.mark_wait_returned()

    running = sum(1 for t in handle._tasks if not t.done()) + int(probe.tool_running)
    done_items = len(conv.new_items(hist_before))

    # --- observe: until the sink stopped, the tool stopped and the tasks joined
    def quiet() -> bool:
        return (
            not probe.tool_running
            and all(not s.playing and (s.confirmed or conv.sink.clear_delay == float("inf"))
                    for s in conv.sink.segments[seg_before:])
            and all(t.done() for t in handle._tasks)
        )

    await _wait_until(quiet, observe_s)
    await asyncio.sleep(SETTLE_S)
    segments = conv.sink.segments[seg_before:]
    items = conv.new_items(hist_before)
    stop = _sink_stop_ns(segments)
    if stop is not None and probe.t_interrupt is not None and stop < probe.t_interrupt:
        stop = probe.t_interrupt  # already silent when interrupted (S5)
    probe.t_sink_stopped = stop
    heard = sum(s.position or 0.0 for s in segments) if segments else heard_at_interrupt
    return probe.finish(
        lost_records=lost_records(scenario, heard, _count(items)),
        running_at_done=running,
        late_writes=len(items) - done_items,
        watchdog_fired=handle.id in watchdog.fired,
    )


# --------------------------------------------------------------------------------------
# S7 load


async def _busy_loop(stop: asyncio.Event) -> None:
    """~8 ms of CPU every 10 ms, like audio resampling and VAD on the same loop."""
    period = BUSY_PERIOD_S
    nxt = time.perf_counter()
    while not stop.is_set():
        t = time.perf_counter()
        while time.perf_counter() - t < BUSY_WORK_S:
            pass
        nxt += period
        await asyncio.sleep(max(0.0, nxt - time.perf_counter()))


# --------------------------------------------------------------------------------------
# drivers


async def _series(cfg: WorkerConfig, watchdog: _WatchdogLog) -> RunOutput:
    sc = cfg.scenario
    out = RunOutput()
    current = _Current()
    busy_stop = asyncio.Event()
    busy: asyncio.Task[None] | None = None
    if sc.id == "S7":
        busy = asyncio.create_task(_busy_loop(busy_stop))

    async def with_conv(scn: Scenario, count: int, fresh: bool, observe: float,
                        collect: bool, deadline: float | None) -> None:
        conv: Conversation | None = None
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
        if conv is not None:
            await conv.aclose()

    warm = SCENARIOS["S1"] if sc.warmup_as_s1 else sc
    await with_conv(warm, cfg.warmup, False, warm.observe(cfg.quick), False, None)
    import gc

    gc.collect()
    deadline = time.monotonic() + cfg.budget_s
    await with_conv(sc, cfg.n, sc.fresh_session, cfg.observe_s, True, deadline)
    if busy is not None:
        busy_stop.set()
        await busy
    return out


async def _scale(cfg: WorkerConfig) -> RunOutput:
    """S6: N conversations playing at once, all interrupted in one loop."""
    import gc

    n = cfg.level or 1
    out = RunOutput()
    # warm the code paths with one conversation first, outside the measurement
    warm = Conversation(0.0, _Current())
    await warm.start()
    await one_sample(warm, SCENARIOS["S1"], 0.005, _WatchdogLog())
    await warm.aclose()
    del warm
    gc.collect()
    rss0 = rss_bytes()
    t_setup = time.perf_counter()
    deadline = time.monotonic() + cfg.budget_s
    convs: list[Conversation] = []
    for _ in range(n):
        c = Conversation(0.0, _Current())
        await c.start()
        convs.append(c)
        if time.monotonic() > deadline:
            out.skipped = f"creating {n} sessions exceeded the {cfg.budget_s:.0f} s budget"
            return out
    handles = [c.start_speech(SCENARIOS["S6"]) for c in convs]
    ok = await _wait_until(
        lambda: all(c.sink.segments for c in convs), max(10.0, deadline - time.monotonic())
    )
    if not ok:
        out.skipped = f"{n} conversations did not all start playing within the budget"
        return out
    await asyncio.sleep(interrupt_offset(SCENARIOS["S6"]))
    setup_s = time.perf_counter() - t_setup
    returned: list[int] = [0] * n
    parked = 0

    async def waiter(i: int, h: Any) -> None:
        nonlocal parked
        parked += 1  # no suspension between this and the wait parking
        await h.wait_for_playout()
        returned[i] = now_ns()

    tasks = [asyncio.create_task(waiter(i, h)) for i, h in enumerate(handles)]
    await _wait_until(lambda: parked == n, 60.0, step=0)
    done_before = sum(1 for h in handles if h.done())
    t0 = now_ns()
    for h in handles:
        h.interrupt()
    t1 = now_ns()
    await asyncio.gather(*tasks)
    peak = peak_rss_bytes()
    sink_stops = [_sink_stop_ns(c.sink.segments) for c in convs]
    running = sum(1 for h in handles for t in h._tasks if not t.done())
    out.scale = scale_point(
        n=n, t0=t0, t1=t1, returned=returned, sink_stops=sink_stops, running=running,
        rss0=rss0, peak=peak, setup_s=setup_s, done_before=done_before,
    )
    for c in convs:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(c.aclose(), timeout=5)
    return out


def run(cfg: WorkerConfig) -> RunOutput:
    """Entry point for the worker (``livekit`` and ``livekit-race``)."""
    import sys

    assert "trio_asyncio" not in sys.modules, "a livekit worker must not import trio_asyncio"
    if cfg.impl == "livekit-race":
        install_race_patch()
    watchdog = _WatchdogLog()
    logging.getLogger("livekit.agents").addHandler(watchdog)
    # the SDK logs the watchdog at ERROR; everything else stays out of the way
    logging.getLogger("livekit.agents").setLevel(logging.ERROR)
    main: Callable[[], Awaitable[RunOutput]]
    if cfg.scenario.id == "S6":
        def main() -> Awaitable[RunOutput]:
            return _scale(cfg)
    else:
        def main() -> Awaitable[RunOutput]:
            return _series(cfg, watchdog)

    out = asyncio.run(_run_main(main))
    assert "trio_asyncio" not in sys.modules, "trio_asyncio got imported during a livekit run"
    out.notes.append("trio_asyncio not imported (checked before and after the run)")
    buffer = cfg.scenario.sink_buffer_s
    out.notes.append(f"bridge.testing.FakeAudioSink(buffer={buffer:g} s) behind livekit's "
                     "TranscriptSynchronizer" + (" (inf: the whole reply)" if math.isinf(buffer) else ""))
    if cfg.scenario.clear_delay == float("inf"):
        out.notes.append("never-confirming sink: FakeAudioSink(clear_delay=inf): the clear never "
                         "arrives, the buffered audio plays out, no confirmation")
    return out


async def _run_main(main: Callable[[], Awaitable[RunOutput]]) -> RunOutput:
    return await main()
