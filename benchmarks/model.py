"""What one measured sample holds, and how the timing window is taken.

A :class:`Probe` is filled in by one sample of one implementation. Every time
is a ``time.perf_counter_ns()`` reading; the reference ``t_interrupt`` is read
in the interrupting task *right before* ``interrupt()`` is called, and each
observer reads its own stamp *right after* it resumes, so setup (spawning,
waiting for playback to start) stays outside the window. Sinks that stamp on
another clock (trio's clock, asyncio's ``loop.time()``) are converted by the
implementation before they reach the probe.

:class:`Sample` is the JSON-ready result: deltas from ``t_interrupt`` in ns,
plus the correctness observations the report counts (early return, lost
records, speech code running after done).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from benchmarks.scenarios import Scenario

now_ns = time.perf_counter_ns


@dataclass
class Sample:
    """One interrupted conversation, as measured. ``None`` = not observed."""

    #: interrupt -> ``SpeechHandle.wait_for_playout()`` returned (external waiter).
    wait_ns: int | None = None
    #: interrupt -> the tool's own ``ctx.wait_for_playout()`` ended (S4).
    ctx_wait_ns: int | None = None
    #: how it ended: "returned", "cancelled" or "error:<type>".
    ctx_wait_outcome: str | None = None
    #: interrupt -> the tool body exited (returned, raised or was cancelled).
    tool_stop_ns: int | None = None
    #: interrupt -> the sink stopped playing; None = still playing when we
    #: stopped watching (see ``observe_s`` in the scenario).
    sink_stop_ns: int | None = None
    #: the handle's wait returned while the sink was still playing.
    early_return: bool | None = None
    #: S4: the tool's ``ctx.wait_for_playout()`` *returned* (not cancelled)
    #: while the sink was still playing, so the tool went on as if it had not.
    ctx_wait_early: bool | None = None
    #: expected history records (heard assistant message, function call, one
    #: output per call) that were missing after the speech was done.
    lost_records: int = 0
    #: pieces of the speech (its tasks, its tool) still running when the wait
    #: returned.
    running_at_done: int = 0
    #: history records written after the wait returned.
    late_writes: int = 0
    #: the implementation says the sink did not confirm in time (trio-native:
    #: ``SpeechHandle.sink_timed_out``; bridge: ``with_sink_grace``'s grace
    #: expired), when it exposes that.
    sink_timed_out: bool | None = None
    #: livekit's 5 s INTERRUPTION_TIMEOUT watchdog fired for this speech.
    watchdog_fired: bool | None = None
    #: an early return (``early_return``) that the implementation knows about: it
    #: stopped waiting for the sink (``sink_timed_out``: its grace ran out; or the
    #: watchdog fired) while the audio was still playing, e.g. a deaf sink that had
    #: buffered the whole reply. Such a return is early, not clean: "done" then does
    #: not mean the audio stopped, only that the handle says so.
    early_gave_up: bool | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def gave_up_early(
    early_return: object, sink_timed_out: object, watchdog_fired: object
) -> bool | None:
    """``Sample.early_gave_up`` from the other flags (also for results.json files
    written before the flag existed). None when the return's timing is unknown."""
    if not isinstance(early_return, bool):
        return None
    return early_return and (sink_timed_out is True or watchdog_fired is True)


@dataclass
class Probe:
    """Raw perf_counter_ns stamps of one sample; ``finish()`` turns them into a Sample."""

    t_interrupt: int | None = None
    t_wait_returned: int | None = None
    t_ctx_wait_end: int | None = None
    ctx_wait_outcome: str | None = None
    t_tool_started: int | None = None
    t_tool_stopped: int | None = None
    t_sink_stopped: int | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def mark_interrupt(self) -> None:
        self.t_interrupt = now_ns()

    def mark_wait_returned(self) -> None:
        self.t_wait_returned = now_ns()

    def mark_tool_started(self) -> None:
        self.t_tool_started = now_ns()

    def mark_tool_stopped(self) -> None:
        if self.t_tool_stopped is None:
            self.t_tool_stopped = now_ns()

    def mark_ctx_wait(self, outcome: str) -> None:
        if self.t_ctx_wait_end is None:
            self.t_ctx_wait_end = now_ns()
            self.ctx_wait_outcome = outcome

    @property
    def tool_running(self) -> bool:
        return self.t_tool_started is not None and self.t_tool_stopped is None

    def _delta(self, t: int | None) -> int | None:
        if t is None or self.t_interrupt is None:
            return None
        return t - self.t_interrupt

    def finish(
        self,
        *,
        lost_records: int,
        running_at_done: int,
        late_writes: int,
        sink_timed_out: bool | None = None,
        watchdog_fired: bool | None = None,
    ) -> Sample:
        wait_ns = self._delta(self.t_wait_returned)
        sink_ns = self._delta(self.t_sink_stopped)
        early: bool | None = None
        if wait_ns is not None:
            early = sink_ns is None or sink_ns > wait_ns
        ctx_ns = self._delta(self.t_ctx_wait_end)
        ctx_early: bool | None = None
        if ctx_ns is not None and self.ctx_wait_outcome == "returned":
            ctx_early = sink_ns is None or sink_ns > ctx_ns
        elif ctx_ns is not None:
            ctx_early = False
        return Sample(
            wait_ns=wait_ns,
            ctx_wait_ns=ctx_ns,
            ctx_wait_outcome=self.ctx_wait_outcome,
            tool_stop_ns=self._delta(self.t_tool_stopped),
            sink_stop_ns=sink_ns,
            early_return=early,
            ctx_wait_early=ctx_early,
            lost_records=lost_records,
            running_at_done=running_at_done,
            late_writes=late_writes,
            sink_timed_out=sink_timed_out,
            watchdog_fired=watchdog_fired,
            early_gave_up=gave_up_early(early, sink_timed_out, watchdog_fired),
        )


@dataclass
class ScalePoint:
    """S6: one level of N concurrent conversations interrupted at once."""

    n: int
    #: interrupt of the first conversation -> the last one's wait returned.
    all_done_ns: int
    #: the loop that calls interrupt() on all N handles.
    interrupt_loop_ns: int
    #: all_done_ns / n.
    per_conversation_ns: float
    #: resident memory before the conversations were created and at the peak.
    rss_before_bytes: int
    rss_peak_bytes: int
    #: (peak - before) / n.
    bytes_per_conversation: float
    #: how long creating the N conversations until all were playing took.
    setup_s: float
    #: conversations whose wait returned while their sink was still playing.
    early_returns: int
    #: the wait returned but the handle was not done / something still ran.
    running_at_done: int
    #: conversations already done (audio over) when the interrupt loop started; a
    #: level with any is not a valid measurement of "N interrupted at once".
    done_before_interrupt: int = 0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass
class RunOutput:
    """What an implementation hands back to the worker for one configuration."""

    samples: list[Sample] = field(default_factory=list)
    scale: ScalePoint | None = None
    notes: list[str] = field(default_factory=list)
    budget_hit: bool = False
    skipped: str | None = None
    #: bare-runtime windows measured in the same process (ns per kind), if any
    floor: dict[str, list[int]] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerConfig:
    """Everything an implementation needs to run one configuration."""

    impl: str
    scenario: Scenario
    n: int
    warmup: int
    budget_s: float
    observe_s: float
    quick: bool
    level: int | None
    progress: Callable[[int, int], None]
