"""The implementations and benchmark scenarios, with their sample plans.

S4 is the tool preamble of livekit/agents issue #5359
(https://github.com/livekit/agents/issues/5359).

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
#: never import trio_asyncio (it patches asyncio for the whole process); the
#: worker asserts it and records it.
RUNTIME: dict[str, str] = {
    "livekit": "asyncio",
    "livekit-race": "asyncio",
    "trio-native": "trio",
    "bridge": "trio-asyncio",
}

#: Words per second of the fake TTS in every implementation.
WORDS_PER_SECOND = 3.0

#: Seconds of audio every sink accepts ahead of playback (back-pressure), unless a
#: scenario says otherwise: ``trio_playout.RealtimeAudioSink``'s default, and
#: ``bridge.testing.FakeAudioSink(buffer=0.2)`` for livekit and the bridge.
SINK_BUFFER_S = 0.2

#: How long after the sink reported that playback started we interrupt:
#: "mid-playout", with audio both heard and still queued.
INTERRUPT_AFTER_START_S = 0.1

#: The sentence spoken in S1, S2, S3, S7 and S8 (24 words: 8 s of audio, longer than
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

#: S6: default caps per implementation, with the reason printed in the report.
#: Only applied to the default level list: ``--levels 1,10,100,1000,10000`` runs
#: the higher levels anyway (each level still has its own time budget).
_LIVEKIT_CAP = (
    "creating 10,000 stock AgentSessions (each with its own tasks, TTS adapter and "
    "transcript synchronizer) takes about a minute on 2 vCPUs, longer than the whole "
    "default run may. "
    "Run `--levels 1,10,100,1000,10000` to measure it"
)
SCALE_CAPS: dict[str, tuple[int, str]] = {
    "livekit": (1000, _LIVEKIT_CAP),
    "livekit-race": (1000, _LIVEKIT_CAP),
    "bridge": (1000, _LIVEKIT_CAP.replace("stock AgentSessions", "bridged stock AgentSessions")),
}

#: How a scenario's configurations may share the machine (see ``benchmarks.cli``):
#: ``timing`` ones run alone (their microsecond numbers are the point);
#: ``long-wait`` ones (S3, S5) sleep through seconds-long timers and may overlap
#: each other and one ``scale`` level; ``scale`` levels run one at a time.
KINDS: tuple[str, ...] = ("timing", "long-wait", "scale")


@dataclass(frozen=True)
class Scenario:
    """One benchmark scenario and how many samples to take of it."""

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
    #: ``timing``, ``long-wait`` or ``scale`` (see :data:`KINDS`).
    kind: str = "timing"
    #: default-run N for particular implementations, ``(impl, n)`` pairs.
    n_by_impl: tuple[tuple[str, int], ...] = ()
    #: seconds of audio the sink accepts ahead of playback; ``math.inf``: the
    #: whole reply (the TTS is faster than real time, so all of it is buffered).
    sink_buffer_s: float = SINK_BUFFER_S

    def n(self, quick: bool, impl: str | None = None) -> int:
        if quick:
            return self.n_quick
        return dict(self.n_by_impl).get(impl or "", self.n_default)

    def warmup(self, quick: bool) -> int:
        return self.warmup_quick if quick else self.warmup_default

    def budget(self, quick: bool) -> float:
        return self.budget_quick_s if quick else self.budget_s

    def observe(self, quick: bool) -> float:
        return self.observe_quick_s if quick else self.observe_s


SCENARIOS: dict[str, Scenario] = {
    s.id: s
    for s in (
        # N per scenario, sized so the default run fits in about 5 minutes on 2
        # vCPUs: S1 needs a p99 that is not the max (1000 samples, p99 = the 10th
        # largest; the bridge, whose samples cost more, 500); S7 100 under load;
        # S2 and S4 cost 0.2-1.3 s a sample and their target is a max lag, so 30
        # and 6; S3, S5 and S8 cost 3-13 s a sample (livekit's 5 s watchdog, the
        # 12 s tool, 7 s of buffered audio) and their targets are bounds, so 3.
        Scenario(
            "S1", "interrupt mid-playout, sink confirms at once", 0.0,
            1000, 20, 30, 3, False, 60.0, 5.0, 0.005, 0.005,
            n_by_impl=(("bridge", 500),),
        ),
        Scenario(
            "S2", "interrupt mid-playout, sink confirms after 150 ms (avatar)", 0.15,
            30, 5, 3, 1, False, 30.0, 5.0, 0.2, 0.2,
        ),
        Scenario(
            "S3", "interrupt mid-playout, sink never confirms", math.inf,
            3, 1, 3, 1, True, 60.0, 15.0, 8.0, 1.0, fresh_session=True, kind="long-wait",
        ),
        Scenario(
            "S4", "#5359 tool preamble: tool awaits ctx.wait_for_playout(), barge-in "
            "during the preamble (sink confirms after 150 ms)", 0.15,
            6, 2, 1, 1, False, 30.0, 5.0, LOOKUP_S + 0.2, LOOKUP_S + 0.2,
        ),
        Scenario(
            "S5", "12 s tool interrupted 1 s after it started", 0.0,
            3, 1, 3, 1, True, 60.0, 15.0, LONG_TOOL_S, 0.5, fresh_session=True,
            kind="long-wait",
        ),
        Scenario(
            "S6", "scale: N concurrent conversations interrupted at once", 0.0,
            1, 1, 0, 0, False, 120.0, 10.0, 0.0, 0.0, kind="scale",
        ),
        Scenario(
            "S7", "S1 with the loop busy (8 ms CPU every 10 ms)", 0.0,
            100, 10, 20, 2, False, 40.0, 3.0, 0.005, 0.005,
        ),
        # S8: S3 with a sink that had buffered the whole 8 s reply, so after the
        # interrupt (1 s in) its audio plays on for 7 s: longer than the 2 s grace
        # and livekit's 5 s watchdog. Every wait that ends before then is early.
        Scenario(
            "S8", "S3 with a sink that buffered the whole reply (its audio plays on for 7 s)",
            math.inf, 3, 1, 3, 1, True, 60.0, 15.0, 8.0, 0.5, fresh_session=True,
            kind="long-wait", sink_buffer_s=math.inf,
        ),
    )
}
