"""The implementations and scenarios of issue 4, with their sample plans.

Every scenario is the same for every implementation: same text, same sink
behaviour (confirmation delay), same interrupt moment, same real clock. What
differs per scenario is only how many samples we can afford: a sample that
waits for livekit's 5 s watchdog or a 12 s tool costs seconds, so those
scenarios take a handful of samples, while the microsecond paths take hundreds.
N is what was asked for; the worker also stops at ``budget_s`` and the report
prints the N actually measured.

Warm-up samples are discarded. For the slow scenarios (S3, S5) the warm-up runs
the S1 shape (immediate confirmation) on the same code paths, because a warm-up
that waits 5 s would only warm the sleep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

IMPLS: tuple[str, ...] = ("livekit", "livekit-race", "trio-native", "bridge")

#: The event loop each implementation measures on. ``asyncio`` processes must
#: never import trio_asyncio (DESIGN 6); the worker asserts it and records it.
RUNTIME: dict[str, str] = {
    "livekit": "asyncio",
    "livekit-race": "asyncio",
    "trio-native": "trio",
    "bridge": "trio-asyncio",
}

#: Words per second of the fake TTS in every implementation.
WORDS_PER_SECOND = 3.0

#: How long after the sink reported that playback started we interrupt:
#: "mid-playout", with audio both heard and still queued.
INTERRUPT_AFTER_START_S = 0.1

#: The sentence spoken in S1, S2, S3 and S7 (21 words: 7 s of audio, longer than
#: livekit's 5 s watchdog, so a sink that never stops is still playing then).
SPEECH_TEXT = (
    "Thanks for calling, I can help you change your booking, check the weather "
    "at your destination, or find a quiet table for dinner tonight."
)

#: S4: the preamble the LLM says before calling the tool (#5359).
PREAMBLE_TEXT = "Sure, let me look that up for you, it will only take a moment while I check."

#: S4: work the tool does after its ``ctx.wait_for_playout()`` returned.
LOOKUP_S = 0.5

#: S5: the long tool and when the interrupt lands after it started.
LONG_TOOL_S = 12.0
LONG_TOOL_INTERRUPT_AFTER_S = 1.0
LONG_TOOL_PREAMBLE = "One moment."

#: S7: the busy task: CPU work per period, like audio resampling and VAD.
BUSY_WORK_S = 0.008
BUSY_PERIOD_S = 0.010

#: S6: concurrent conversation counts, default and quick.
SCALE_LEVELS: tuple[int, ...] = (1, 10, 100, 1000, 10000)
SCALE_LEVELS_QUICK: tuple[int, ...] = (1, 10)

#: S6: hard caps per implementation, with the reason printed in the report.
SCALE_CAPS: dict[str, tuple[int, str]] = {
    "livekit-race": (
        0,
        "same code as `livekit` except the wait itself, which S6 does not exercise "
        "differently; scale is measured on `livekit`",
    ),
}


@dataclass(frozen=True)
class Scenario:
    """One scenario of issue 4 and how many samples to take of it."""

    id: str
    title: str
    #: seconds the sink takes to confirm a clear; ``math.inf`` = never.
    clear_delay: float
    n_default: int
    n_quick: int
    warmup_default: int
    warmup_quick: int
    #: run the warm-up in the S1 shape rather than the scenario's own.
    warmup_as_s1: bool
    #: per-configuration time budget for the measured samples (seconds).
    budget_s: float
    budget_quick_s: float
    #: after the wait returned, how long to keep watching for late history
    #: writes, the sink stopping and the tool stopping (seconds).
    observe_s: float
    observe_quick_s: float
    #: a fresh session per sample (needed when a sample can leave the sink or
    #: the session wedged, as a never-confirming sink does in livekit).
    fresh_session: bool = False

    def n(self, quick: bool) -> int:
        return self.n_quick if quick else self.n_default

    def warmup(self, quick: bool) -> int:
        return self.warmup_quick if quick else self.warmup_default

    def budget(self, quick: bool) -> float:
        return self.budget_quick_s if quick else self.budget_s

    def observe(self, quick: bool) -> float:
        return self.observe_quick_s if quick else self.observe_s


SCENARIOS: dict[str, Scenario] = {
    s.id: s
    for s in (
        Scenario(
            "S1", "interrupt mid-playout, sink confirms at once", 0.0,
            200, 20, 30, 3, False, 60.0, 5.0, 0.005, 0.005,
        ),
        Scenario(
            "S2", "interrupt mid-playout, sink confirms after 150 ms (avatar)", 0.15,
            40, 5, 5, 1, False, 60.0, 5.0, 0.2, 0.2,
        ),
        Scenario(
            "S3", "interrupt mid-playout, sink never confirms", math.inf,
            3, 1, 5, 1, True, 60.0, 15.0, 8.0, 1.0, fresh_session=True,
        ),
        Scenario(
            "S4", "#5359 tool preamble: tool awaits ctx.wait_for_playout(), barge-in "
            "during the preamble (sink confirms after 150 ms)", 0.15,
            12, 2, 2, 1, False, 60.0, 5.0, LOOKUP_S + 0.2, LOOKUP_S + 0.2,
        ),
        Scenario(
            "S5", "12 s tool interrupted 1 s after it started", 0.0,
            3, 1, 5, 1, True, 60.0, 15.0, LONG_TOOL_S, 0.5, fresh_session=True,
        ),
        Scenario(
            "S6", "scale: N concurrent conversations interrupted at once", 0.0,
            1, 1, 0, 0, False, 120.0, 10.0, 0.0, 0.0,
        ),
        Scenario(
            "S7", "S1 with the loop busy (8 ms CPU every 10 ms)", 0.0,
            150, 10, 20, 2, False, 60.0, 3.0, 0.005, 0.005,
        ),
    )
}
