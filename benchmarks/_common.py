"""What every implementation agrees on: when to interrupt, what history must hold.

Kept free of asyncio and trio so both kinds of worker can import it.

Interrupt moment: each scenario interrupts a fixed time after the sink reported
that playback of the sample's speech started (S5: after the tool started), so
the same amount of audio is heard in every implementation.

Expected history after an interrupted speech (the report's "lost" records):

* an assistant message, if at least :data:`HEARD_FOR_MESSAGE_S` of its audio was
  heard (1.5 words at 3 words/s; below that "nothing heard, no message" is the
  correct outcome in both livekit and trio_playout, so nothing is expected);
* for a tool scenario: the function call and exactly one output for it.

A record counts as lost when it is expected and absent once the speech is done
and the observation window has passed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.model import ScalePoint
from benchmarks.scenarios import LONG_TOOL_INTERRUPT_AFTER_S, Scenario

#: Heard audio from which an interrupted assistant message must exist.
HEARD_FOR_MESSAGE_S = 0.5

#: After everything is quiet, how long to keep watching for late history writes.
SETTLE_S = 0.005

#: Interrupt offset after playback start, per scenario.
INTERRUPT_AFTER_START: dict[str, float] = {
    "S1": 0.02,
    "S2": 0.02,
    "S3": 1.0,
    "S4": 0.6,
    "S6": 0.05,
    "S7": 0.02,
    "S8": 1.0,
}

#: The tool each scenario's LLM calls (None: the speech is a plain ``say``).
TOOL_OF: dict[str, str | None] = {
    "S1": None,
    "S2": None,
    "S3": None,
    "S4": "lookup",
    "S5": "long_task",
    "S6": None,
    "S7": None,
    "S8": None,
}


def interrupt_offset(scenario: Scenario) -> float:
    """Seconds after playback start (S5: after tool start) to interrupt."""
    if scenario.id == "S5":
        return LONG_TOOL_INTERRUPT_AFTER_S
    return INTERRUPT_AFTER_START[scenario.id]


@dataclass(frozen=True)
class HistoryCount:
    """What a sample's new history items were."""

    assistant_messages: int
    function_calls: int
    function_outputs: int


def lost_records(
    scenario: Scenario, heard_s: float | None, got: HistoryCount
) -> int:
    """How many expected records are missing (never negative)."""
    lost = 0
    if heard_s is not None and heard_s >= HEARD_FOR_MESSAGE_S and got.assistant_messages < 1:
        lost += 1
    if TOOL_OF[scenario.id] is not None:
        lost += max(0, 1 - got.function_calls)
        lost += max(0, 1 - got.function_outputs)
    return lost


def finite(x: float) -> bool:
    return not math.isinf(x) and not math.isnan(x)


def scale_point(
    *,
    n: int,
    t0: int,
    t1: int,
    returned: Sequence[int],
    sink_stops: Sequence[int | None],
    running: int,
    rss0: int,
    peak: int,
    setup_s: float,
    done_before: int,
) -> ScalePoint:
    """One S6 level from its raw timestamps: the same arithmetic for every implementation.

    ``t0``/``t1`` bracket the loop that interrupts all ``n`` conversations;
    ``returned[i]`` is when conversation i's waiter returned and ``sink_stops[i]``
    when its audio stopped (None: still playing), all ``perf_counter_ns``.
    """
    t_all = max(returned)
    early = sum(1 for stop, r in zip(sink_stops, returned, strict=True) if stop is None or stop > r)
    return ScalePoint(
        n=n,
        all_done_ns=t_all - t0,
        interrupt_loop_ns=t1 - t0,
        per_conversation_ns=(t_all - t0) / n,
        rss_before_bytes=rss0,
        rss_peak_bytes=peak,
        bytes_per_conversation=(peak - rss0) / n,
        setup_s=setup_s,
        early_returns=early,
        running_at_done=running,
        done_before_interrupt=done_before,
    )
