"""trio-native: :mod:`trio_playout` with its own fakes, on trio's real clock.

Same scenario as the livekit processes: the same text, the same fake TTS speed
(3 words/s) and frame size (100 ms, like ``bridge.testing.SilentTTS``), the same
interrupt moment, a :class:`trio_playout.RealtimeAudioSink` with the scenario's
``clear_delay``, and the default ``sink_grace`` of 2 s.

"The sink stopped playing" is the ``stopped_at`` the sink records (trio's clock,
converted to ``perf_counter_ns``): for ``clear_delay=0`` the moment of the
clear, for 0.15 the moment 150 ms later when it stops and confirms, for a sink
that never confirms the moment its buffered audio ran out.

This process imports trio and trio_playout, never trio_asyncio.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

import trio_playout as tp
from benchmarks import _trio_tools as trio_tools
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
    PREAMBLE_TEXT,
    SCENARIOS,
    SPEECH_TEXT,
    WORDS_PER_SECOND,
    Scenario,
)
from trio_playout.testing import FakeTTS, LLMReply, ScriptedLLM

FRAME_S = 0.1
#: bare-trio floor samples per kind after an S1 series (see _floors)
FLOOR_N = 300
SINK_GRACE_S = 2.0


@dataclass
class _Current:
    probe: Probe = field(default_factory=Probe)


def _tools(current: _Current) -> list[tp.FunctionTool]:
    @tp.function_tool
    async def lookup(ctx: tp.RunContext) -> str:
        """Look up the answer (the #5359 preamble tool)."""
        return await trio_tools.lookup(ctx, current.probe)

    @tp.function_tool
    async def long_task(ctx: tp.RunContext) -> str:
        """A task that takes 12 seconds."""
        return await trio_tools.long_task(current.probe)

    return [lookup, long_task]


def _replies(scenario: Scenario, count: int) -> list[LLMReply]:
    tool = TOOL_OF[scenario.id]
    if tool == "lookup":
        one = LLMReply(text=PREAMBLE_TEXT, tool_calls=[tp.ToolCall("lookup")])
    elif tool == "long_task":
        one = LLMReply(text=LONG_TOOL_PREAMBLE, tool_calls=[tp.ToolCall("long_task")])
    else:
        return []
    # one reply per sample; spare ones in case a tool reply is ever asked for
    return [one] * (2 * count + 4)


@dataclass
class Conversation:
    session: tp.Session
    sink: tp.RealtimeAudioSink
    current: _Current

    def start_speech(self, scenario: Scenario) -> tp.SpeechHandle:
        tool = TOOL_OF[scenario.id]
        if tool == "lookup":
            return self.session.generate_reply(user_input="What is the weather like?")
        if tool == "long_task":
            return self.session.generate_reply(user_input="Please run the long task.")
        return self.session.say(SPEECH_TEXT)


@asynccontextmanager
async def conversation(
    scenario: Scenario, current: _Current, count: int
) -> AsyncIterator[Conversation]:
    sink = tp.RealtimeAudioSink(clear_delay=scenario.clear_delay, buffer=scenario.sink_buffer_s)
    llm = ScriptedLLM(_replies(scenario, count))
    tts = FakeTTS(words_per_second=WORDS_PER_SECOND, frame_duration=FRAME_S)
    async with tp.open_session(
        llm=llm, tts=tts, output=sink, tools=_tools(current), sink_grace=SINK_GRACE_S
    ) as session:
        yield Conversation(session, sink, current)


def _trio_to_ns(t: float) -> int:
    """Convert a trio clock reading to perf_counter_ns (trio's clock has a random offset)."""
    return now_ns() - round((trio.current_time() - t) * 1e9)


def _count(items: list[tp.ChatItem]) -> HistoryCount:
    msgs = sum(
        1 for it in items if isinstance(it, tp.ChatMessage) and it.role == "assistant" and it.text
    )
    calls = sum(1 for it in items if isinstance(it, tp.FunctionCall))
    outs = sum(1 for it in items if isinstance(it, tp.FunctionCallOutput))
    return HistoryCount(msgs, calls, outs)


def _sink_stop_ns(records: list[tp.PlayoutRecord]) -> int | None:
    stops: list[float] = []
    for rec in records:
        if rec.stopped_at is None:
            return None
        stops.append(rec.stopped_at)
    return _trio_to_ns(max(stops)) if stops else None


async def _wait_until(pred: Callable[[], bool], limit_s: float, step: float = 0.001) -> bool:
    """Poll ``pred`` (setup and observation only, never inside a timing window)."""
    with trio.move_on_after(limit_s):
        while not pred():  # noqa: ASYNC110 - polling objects that have no event to wait on
            await trio.sleep(step)
        return True
    return False


async def one_sample(conv: Conversation, scenario: Scenario, observe_s: float) -> Sample:
    probe = conv.current.probe = Probe()
    rec_before = len(conv.sink.records)
    hist_before = len(conv.session.history)
    handle = conv.start_speech(scenario)

    # --- setup, outside the timing window
    if scenario.id == "S5":
        if not await _wait_until(lambda: probe.t_tool_started is not None, 10.0):
            raise RuntimeError("the long tool never started")
    elif not await _wait_until(lambda: len(conv.sink.records) > rec_before, 10.0):
        raise RuntimeError("playback never started")
    await trio.sleep(interrupt_offset(scenario))

    # --- the window
    probe.mark_interrupt()
    handle.interrupt()
    await handle.wait_for_playout()
    probe.mark_wait_returned()

    running = int(probe.tool_running) + int(not handle.done())
    done_items = len(conv.session.history)

    def quiet() -> bool:
        recs = conv.sink.records[rec_before:]
        return not probe.tool_running and all(r.stopped_at is not None for r in recs)

    await _wait_until(quiet, observe_s)
    await trio.sleep(SETTLE_S)
    records = conv.sink.records[rec_before:]
    stop = _sink_stop_ns(records)
    if stop is not None and probe.t_interrupt is not None and stop < probe.t_interrupt:
        stop = probe.t_interrupt  # already silent when interrupted (S5)
    probe.t_sink_stopped = stop
    heard = sum(r.position or 0.0 for r in records)
    items = list(conv.session.history[hist_before:])
    return probe.finish(
        lost_records=lost_records(scenario, heard, _count(items)),
        running_at_done=running,
        late_writes=len(conv.session.history) - done_items,
        sink_timed_out=handle.sink_timed_out,
    )


async def _busy_loop() -> None:
    """~8 ms of CPU every 10 ms on the same trio loop."""
    nxt = time.perf_counter()
    while True:
        t = time.perf_counter()
        while time.perf_counter() - t < BUSY_WORK_S:
            pass
        nxt += BUSY_PERIOD_S
        await trio.sleep(max(0.0, nxt - time.perf_counter()))


async def _floor_sample(kind: str, idle_s: float) -> int:
    """One window of bare trio, after the same idle as an S1 sample (see :func:`_floors`)."""
    back, forth = trio.Event(), trio.Event()

    async def worker() -> None:
        await forth.wait()
        back.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker if kind == "two_hop" else trio.sleep_forever)
        await trio.sleep(0.001)  # one poll for playback start, as in one_sample
        await trio.sleep(idle_s)
        t0 = now_ns()
        if kind == "two_hop":
            forth.set()
            await back.wait()
            return now_ns() - t0
        nursery.cancel_scope.cancel()
    return now_ns() - t0


async def _floors(n: int, idle_s: float) -> dict[str, list[int]]:
    """The floor under S1 on this machine, in the same process after the same idle.

    ``two_hop``: one ``Event.set()`` wakes a worker task, which sets an event the
    caller waits on (the least any "interrupt, the speech's task stops the audio,
    the waiter returns" can cost on trio: two task steps). ``cancel_exit``: cancel a
    nursery whose child sleeps, until the nursery has exited (Cancelled raised and
    collected). Both right after an idle as long as an S1 sample's, because a
    loop that slept pays for cold caches (by hand on the 2-vCPU benchmark machine,
    after a 1 ms sleep instead of 20 ms: p50 about 12 and 27 us, against 60-70 and
    130-150 us after the idle).
    """
    out: dict[str, list[int]] = {"two_hop": [], "cancel_exit": []}
    for i in range(n + 5):  # 5 discarded
        for kind, samples in out.items():
            ns = await _floor_sample(kind, idle_s)
            if i >= 5:
                samples.append(ns)
    return out


async def _series(cfg: WorkerConfig) -> RunOutput:
    sc = cfg.scenario
    out = RunOutput()
    current = _Current()

    async def run_block(scn: Scenario, count: int, fresh: bool, observe: float,
                        collect: bool, deadline: float | None) -> None:
        i = 0
        while i < count:
            async with conversation(scn, current, count) as conv:
                while i < count:
                    if deadline is not None and time.monotonic() > deadline:
                        out.budget_hit = True
                        return
                    sample = await one_sample(conv, scn, observe)
                    i += 1
                    if collect:
                        out.samples.append(sample)
                        cfg.progress(i, count)
                    if fresh:
                        break

    async with trio.open_nursery() as nursery:
        if sc.id == "S7":
            nursery.start_soon(_busy_loop)
        warm = SCENARIOS["S1"] if sc.warmup_as_s1 else sc
        await run_block(warm, cfg.warmup, False, warm.observe(cfg.quick), False, None)
        gc.collect()
        await run_block(sc, cfg.n, sc.fresh_session, cfg.observe_s, True,
                        time.monotonic() + cfg.budget_s)
        nursery.cancel_scope.cancel()
    if sc.id == "S1" and not out.budget_hit:
        out.floor = await _floors(min(cfg.n, FLOOR_N), interrupt_offset(sc))
    return out


async def _scale(cfg: WorkerConfig) -> RunOutput:
    """S6: N sessions playing at once, interrupted in one loop."""
    n = cfg.level or 1
    out = RunOutput()
    s6 = SCENARIOS["S6"]
    async with conversation(s6, _Current(), 1) as warm:
        await one_sample(warm, SCENARIOS["S1"], 0.005)
    gc.collect()
    rss0 = rss_bytes()
    t_setup = time.perf_counter()
    convs: list[Conversation] = []
    handles: list[tp.SpeechHandle] = []
    finish = trio.Event()

    async def hold(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with conversation(s6, _Current(), 1) as conv:
            convs.append(conv)
            task_status.started()
            await finish.wait()

    returned: list[int] = [0] * n
    parked = 0

    async def waiter(i: int, h: tp.SpeechHandle) -> None:
        nonlocal parked
        parked += 1  # no checkpoint between this and the wait parking
        await h.wait_for_playout()
        returned[i] = now_ns()

    with trio.move_on_after(cfg.budget_s) as budget:
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                await nursery.start(hold)
            # start every speech only once all sessions exist, as the livekit workers do
            handles.extend(c.start_speech(s6) for c in convs)
            ok = await _wait_until(
                lambda: all(c.sink.records for c in convs), max(1.0, cfg.budget_s)
            )
            if not ok:
                out.skipped = f"{n} conversations did not all start playing within the budget"
                finish.set()
                return out
            await trio.sleep(interrupt_offset(s6))
            setup_s = time.perf_counter() - t_setup
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
            sink_stops = [_sink_stop_ns(c.sink.records) for c in convs]
            running = sum(1 for h in handles if not h.done())
            finish.set()
    if budget.cancelled_caught:
        out.skipped = f"N={n} did not finish within the {cfg.budget_s:.0f} s level budget"
        return out
    out.scale = scale_point(
        n=n, t0=t0, t1=t1, returned=returned, sink_stops=sink_stops, running=running,
        rss0=rss0, peak=peak, setup_s=setup_s, done_before=done_before,
    )
    return out


def run(cfg: WorkerConfig) -> RunOutput:
    """Entry point for the worker (``trio-native``)."""
    import sys

    main = _scale if cfg.scenario.id == "S6" else _series
    out = trio.run(main, cfg)
    if "trio_asyncio" in sys.modules:
        out.notes.append("trio_asyncio was imported (unexpected for trio-native)")
    else:
        out.notes.append("trio_asyncio not imported")
    out.notes.append(f"RealtimeAudioSink, FakeTTS frames {FRAME_S * 1000:.0f} ms, "
                     f"sink_grace {SINK_GRACE_S:g} s")
    if math.isinf(cfg.scenario.clear_delay):
        out.notes.append("never-confirming sink: RealtimeAudioSink(clear_delay=inf): the clear "
                         "never arrives, the buffered audio plays out, no confirmation")
    out.notes.append(f"RealtimeAudioSink(buffer={cfg.scenario.sink_buffer_s:g} s)")
    return out
