"""The trio programs behind each :mod:`benchmarks.voice_latency` configuration.

Each ``run_*`` function is one configuration: it opens a real session on trio's
real clock (a :class:`~benchmarks._voice_probe.StampedMic` paced in 20 ms frames, a
VAD, a :class:`~benchmarks._voice_probe.ProbeSink`, a :class:`FakeTTS` speaking a
long text in 20 ms frames), repeats one barge-in cycle ``warmup + n`` times and
returns the measured intervals in nanoseconds (warm-up cycles dropped). A cycle
that went wrong (no pause, two pauses, a timeout) is counted in ``invalid`` and
described in ``notes``; it never becomes a sample.

Between cycles the controller sleeps a random 0-40 ms, so the decision does not
always land at the same phase of the microphone's or the TTS writer's 20 ms beat.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

import trio_playout as tp
from benchmarks._voice_probe import FRAME_S, RATE, DrivenVAD, ProbeSink, Stamp, StampedMic, StampedVAD, now_ns
from trio_playout.testing import FakeTTS, ScriptedLLM

E = tp.VADEventType
MIN_INTERRUPTION_S = 0.5  # livekit's default; the driven VAD crosses it in one event
FALSE_TIMEOUT_S = 0.1  # shorter than livekit's 2 s so that 1000 cycles fit in minutes
SILERO_FALSE_TIMEOUT_S = 0.25
CYCLE_TIMEOUT_S = 3.0
LONG_TEXT = " ".join(f"This is sentence number {i} of a long answer that keeps the agent talking."
                     for i in range(400))
SHORT_TEXT = " ".join(f"Sentence {i} of a reply the user will cut short." for i in range(6))

Progress = Callable[[int, int], None]


@dataclass
class RunResult:
    """Intervals in ns per metric, and what went wrong."""

    metrics: dict[str, list[int]] = field(default_factory=dict)
    invalid: int = 0
    notes: list[str] = field(default_factory=list)
    params: dict[str, object] = field(default_factory=dict)

    def add(self, name: str, value: int) -> None:
        self.metrics.setdefault(name, []).append(value)

    def bad(self, why: str) -> None:
        self.invalid += 1
        if len(self.notes) < 20:
            self.notes.append(why)


def _after(stamps: list[Stamp], start: int, pred: Callable[[Stamp], bool]) -> Stamp | None:
    for s in stamps[start:]:
        if pred(s):
            return s
    return None


async def _resumed(sink: ProbeSink, count: int, within: float) -> bool:
    """Wait (at most ``within`` seconds) until the sink has resumed more than ``count`` times."""
    with trio.move_on_after(within):
        while len(sink.stamps.resumes) <= count:
            await sink.changed.wait()
        return True
    return False


async def run_pause(n: int, warmup: int, progress: Progress, *, on_start: bool = False) -> RunResult:
    """(a) the VAD decision -> the sink paused, and (c) the false-interruption resume.

    Cycle: START_OF_SPEECH, an INFERENCE at ``min_interruption_duration`` (the
    decision, unless ``on_start``: then the start is), END_OF_SPEECH, one frame
    apart; the rules pause at the decision and resume ``false_interruption_timeout``
    after the end of speech.
    """
    res = _pause_result(on_start)
    await _pause_conversation(res, n, warmup, on_start, random.Random(1), progress)
    return res


async def run_pause_many(n: int, warmup: int, progress: Progress, *, sessions: int = 16) -> RunResult:
    """(a) with ``sessions`` conversations in one trio run (a server's process), each
    cycling on its own, microphones out of phase: N samples in all."""
    res = _pause_result(False)
    res.params["sessions"] = sessions
    per = -(-n // sessions)
    done = [0]
    total = sessions * (per + warmup)

    def one_more(_i: int, _t: int) -> None:
        done[0] += 1
        progress(done[0], total)

    async def conversation(k: int) -> None:
        await trio.sleep(k * FRAME_S / sessions)
        await _pause_conversation(res, per, warmup, False, random.Random(100 + k), one_more)

    async with trio.open_nursery() as nursery:
        for k in range(sessions):
            nursery.start_soon(conversation, k)
    return res


def _pause_result(on_start: bool) -> RunResult:
    return RunResult(params={"min_interruption_duration": MIN_INTERRUPTION_S,
                             "false_interruption_timeout": FALSE_TIMEOUT_S, "pause_on_speech_start": on_start,
                             "decision": "START_OF_SPEECH" if on_start else
                             "first INFERENCE with speech_duration >= min_interruption_duration"})


async def _pause_conversation(res: RunResult, n: int, warmup: int, on_start: bool, rng: random.Random,
                              progress: Progress) -> None:
    mic = StampedMic()
    vad = DrivenVAD(mic, MIN_INTERRUPTION_S)
    sink = ProbeSink()
    turn = tp.TurnOptions(min_interruption_duration=MIN_INTERRUPTION_S,
                          false_interruption_timeout=FALSE_TIMEOUT_S, pause_on_speech_start=on_start)
    timeout_ns = round(FALSE_TIMEOUT_S * 1e9)
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(frame_duration=FRAME_S), output=sink,
                               audio_input=mic, vad=vad, turn=turn) as session:
        speech: tp.SpeechHandle | None = None
        for i in range(warmup + n):
            if speech is None or speech.done():
                wrote = sink.expect_write()
                speech = session.say(LONG_TEXT)
                await wrote.wait()
            p0, r0, s0 = len(sink.stamps.pauses), len(sink.stamps.resumes), len(vad.stamps)
            vad.plan.extend([(E.START_OF_SPEECH,), (E.INFERENCE,), (E.END_OF_SPEECH,)])
            ok = await _resumed(sink, r0, CYCLE_TIMEOUT_S)
            stamps = vad.stamps
            start = _after(stamps, s0, lambda s: s.type is E.START_OF_SPEECH)
            cross = _after(stamps, s0, lambda s: s.type is E.INFERENCE
                           and s.speech_duration >= MIN_INTERRUPTION_S)
            end = _after(stamps, s0, lambda s: s.type is E.END_OF_SPEECH)
            decision = start if on_start else cross
            pauses, resumes = sink.stamps.pauses[p0:], sink.stamps.resumes[r0:]
            if not ok or decision is None or end is None or len(pauses) != 1 or len(resumes) != 1:
                res.bad(f"cycle {i}: ok={ok} decision={decision is not None} end={end is not None} "
                        f"pauses={len(pauses)} resumes={len(resumes)}")
            elif i >= warmup:
                res.add("decision_to_pause", pauses[0] - decision.ns)
                if decision.frame_ns is not None:
                    res.add("frame_to_decision", decision.ns - decision.frame_ns)
                res.add("resume_late", resumes[0] - (end.ns + timeout_ns))
            progress(i + 1, warmup + n)
            await trio.sleep(rng.uniform(0.0, 0.04))


async def run_interrupt(n: int, warmup: int, progress: Progress) -> RunResult:
    """(b) a sink that cannot pause: the decision -> the clear confirmed by the sink,
    and -> ``wait_for_playout()`` returned in the task waiting on the speech."""
    mic = StampedMic()
    vad = DrivenVAD(mic, MIN_INTERRUPTION_S)
    sink = ProbeSink(can_pause=False)
    turn = tp.TurnOptions(min_interruption_duration=MIN_INTERRUPTION_S)
    res = RunResult(params={"min_interruption_duration": MIN_INTERRUPTION_S, "sink_can_pause": False,
                            "clear_delay": 0.0,
                            "decision": "first INFERENCE with speech_duration >= min_interruption_duration"})
    rng = random.Random(2)
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(frame_duration=FRAME_S), output=sink,
                               audio_input=mic, vad=vad, turn=turn) as session:
        for i in range(warmup + n):
            wrote = sink.expect_write()
            speech = session.say(SHORT_TEXT)
            await wrote.wait()
            c0, s0 = len(sink.stamps.clears), len(vad.stamps)
            vad.plan.extend([(E.START_OF_SPEECH,), (E.INFERENCE,), (E.END_OF_SPEECH,)])
            done_ns: int | None = None
            with trio.move_on_after(CYCLE_TIMEOUT_S):
                await speech.wait_for_playout()
                done_ns = now_ns()
            cross = _after(vad.stamps, s0, lambda s: s.type is E.INFERENCE
                           and s.speech_duration >= MIN_INTERRUPTION_S)
            clears = sink.stamps.clears[c0:]
            confirmed = bool(sink.records) and sink.records[-1].confirmed
            if (done_ns is None or cross is None or len(clears) != 1 or not confirmed
                    or speech.interrupt_source != "audio_activity"):
                res.bad(f"cycle {i}: done={done_ns is not None} decision={cross is not None} "
                        f"clears={len(clears)} confirmed={confirmed} source={speech.interrupt_source}")
                with trio.move_on_after(CYCLE_TIMEOUT_S):
                    await speech.wait_for_playout()
            elif i >= warmup:
                res.add("decision_to_clear", clears[0] - cross.ns)
                res.add("decision_to_playout_done", done_ns - cross.ns)
                if cross.frame_ns is not None:
                    res.add("frame_to_decision", cross.ns - cross.frame_ns)
            progress(i + 1, warmup + n)
            await trio.sleep(rng.uniform(0.02, 0.06))  # the END_OF_SPEECH frame has passed
    return res


async def run_floor(n: int, warmup: int, progress: Progress) -> RunResult:
    """The measurement floor: the same microphone and driven VAD read directly by a
    loop that only stamps (no session, no fan-out queue)."""
    mic = StampedMic()
    vad = DrivenVAD(mic, MIN_INTERRUPTION_S)
    res = RunResult(params={"what": "yield -> the consuming loop, no session; a bare trio "
                                    "deadline's lateness; a fixed piece of Python timed right after an "
                                    "idle sleep and again at once"})
    rng = random.Random(3)
    samples = 0

    async def consume() -> None:
        nonlocal samples
        async for event in vad.stream(aiter(mic)):
            got = now_ns()
            if event.type is E.INFERENCE and event.speech_duration >= MIN_INTERRUPTION_S:
                stamp = vad.stamps[-1]
                if samples >= warmup:
                    res.add("yield_to_consumer", got - stamp.ns)
                    if stamp.frame_ns is not None:
                        res.add("frame_to_decision", stamp.ns - stamp.frame_ns)
                samples += 1
                progress(samples, warmup + n)
                if samples >= warmup + n:
                    return

    async def drive() -> None:
        cycle = 0
        while True:
            vad.plan.extend([(E.START_OF_SPEECH,), (E.INFERENCE,), (E.END_OF_SPEECH,)])
            # A bare trio deadline, as the false-interruption timer is one: its lateness.
            delay = 3 * FRAME_S + rng.uniform(0.0, 0.04)
            target_ns = now_ns() + round(delay * 1e9)
            await trio.sleep_until(trio.current_time() + delay)
            late = now_ns() - target_ns
            # Calibration: the same fixed work right after an idle sleep, then again at once.
            t = now_ns()
            _fixed_work()
            cold = now_ns() - t
            t = now_ns()
            _fixed_work()
            hot = now_ns() - t
            cycle += 1
            if cycle > warmup:
                res.add("fixed_work_after_idle", cold)
                res.add("fixed_work_hot", hot)
                res.add("timer_late", late)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(drive)
        await consume()
        nursery.cancel_scope.cancel()
    return res


class _Probe:
    __slots__ = ("a", "b", "c")

    def __init__(self) -> None:
        self.a, self.b, self.c = 1, 2.0, "x"


def _fixed_work() -> int:
    """A few microseconds of ordinary Python (attribute reads, a dict, a small object):
    what a VAD decision costs in kind, to show how much slower code runs right after
    the process slept (cold caches, a CPU coming back from idle) than in a hot loop."""
    table: dict[int, _Probe] = {}
    total = 0
    for i in range(20):
        p = table.setdefault(i % 7, _Probe())
        total += p.a + int(p.b) + len(p.c)
    return total


def audible_onset(pcm: bytes, *, block_s: float = 0.005, rel: float = 0.1) -> float:
    """Seconds into ``pcm`` (16 kHz mono) of the first 5 ms block whose RMS reaches
    ``rel`` of the loudest block's: where a listener hears the speech begin."""
    import numpy as np

    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    size = round(block_s * RATE)
    blocks = len(x) // size
    rms = np.sqrt((x[:blocks * size].reshape(blocks, size) ** 2).mean(axis=1))
    first = int(np.argmax(rms >= rel * rms.max()))
    return first * block_s


async def _settled(sink: ProbeSink, vad: StampedVAD, p0: int, r0: int, s0: int, within: float) -> bool:
    """Wait (at most ``within`` s) until the VAD's end of speech came and every pause since
    ``p0`` was resumed (with ``pause_on_speech_start`` a phrase may pause, resume between
    its words, and pause again)."""
    with trio.move_on_after(within):
        while not (_after(vad.stamps, s0, lambda s: s.type is E.END_OF_SPEECH) is not None
                   and len(sink.stamps.pauses) > p0
                   and len(sink.stamps.resumes) - r0 == len(sink.stamps.pauses) - p0):
            await sink.changed.wait()
        return True
    return False


async def run_silero(n: int, warmup: int, progress: Progress, *, phrases: Sequence[str],
                     on_start: bool = False) -> RunResult:
    """(d) real speech through the real Silero VAD: audible onset -> the sink paused.

    Each cycle plays the next of ``phrases`` (espeak-ng) into the paced microphone at a
    frame boundary while the agent speaks; the onset's wall time is the microphone's
    start plus the onset's audio time (a live microphone hears the sample then; it
    delivers it at the end of its 20 ms frame). The decision is the ``INFERENCE``
    whose voiced ``speech_duration`` reaches ``min_interruption_duration``, or with
    ``on_start`` (``pause_on_speech_start=True``) the ``START_OF_SPEECH``; the pause
    measured is the first of the cycle (a provisional pause may resume between words
    and pause again: ``pauses_per_cycle`` counts them).
    """
    from trio_playout.espeak import EspeakTTS
    from trio_playout.silero import SileroVAD

    tts = EspeakTTS()
    clips = [tts.render_sync(phrase, sample_rate=RATE).data for phrase in phrases]
    onsets = [audible_onset(clip) for clip in clips]
    tape: dict[str, int] = {"start": -1, "clip": 0}
    mic = StampedMic()
    size = 2 * mic.samples

    def source(k: int) -> bytes:
        clip = clips[tape["clip"]]
        offset = (k - tape["start"]) * size
        if tape["start"] < 0 or offset < 0 or offset >= len(clip):
            return mic._silence
        chunk = clip[offset:offset + size]
        return chunk + bytes(size - len(chunk))

    mic.source = source
    silero = SileroVAD()
    vad = StampedVAD(silero, mic)
    sink = ProbeSink()
    turn = tp.TurnOptions(min_interruption_duration=MIN_INTERRUPTION_S,
                          false_interruption_timeout=SILERO_FALSE_TIMEOUT_S, pause_on_speech_start=on_start)
    res = RunResult(params={"min_interruption_duration": MIN_INTERRUPTION_S,
                            "false_interruption_timeout": SILERO_FALSE_TIMEOUT_S,
                            "pause_on_speech_start": on_start,
                            "provisional_resume_silence": turn.provisional_resume_silence,
                            "phrases": list(phrases),
                            "clip_s": [len(c) / 2 / RATE for c in clips],
                            "audible_onset_in_clip_s": onsets,
                            "decision": "START_OF_SPEECH" if on_start else "INFERENCE, voiced >= 0.5 s",
                            "silero": f"SileroVAD() defaults: min_speech {silero.min_speech_duration} s, "
                                      f"min_silence {silero.min_silence_duration} s, threshold "
                                      f"{silero.activation_threshold}/{silero.deactivation_threshold:.2f}, "
                                      f"{1000 * silero.window_duration:.0f} ms windows"})
    rng = random.Random(4)
    flips: dict[str, int] = {}  # pauses per cycle -> cycles
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(frame_duration=FRAME_S), output=sink,
                               audio_input=mic, vad=vad, turn=turn) as session:
        speech: tp.SpeechHandle | None = None
        for i in range(warmup + n):
            if speech is None or speech.done():
                wrote = sink.expect_write()
                speech = session.say(LONG_TEXT)
                await wrote.wait()
            p0, r0, s0 = len(sink.stamps.pauses), len(sink.stamps.resumes), len(vad.stamps)
            start_frame = mic.delivered + 2
            tape["clip"] = i % len(clips)
            tape["start"] = start_frame
            onset_ns = mic.t0_ns + round((start_frame * mic.frame_s + onsets[tape["clip"]]) * 1e9)
            ok = await _settled(sink, vad, p0, r0, s0, 2 * CYCLE_TIMEOUT_S)
            if on_start:
                decision = _after(vad.stamps, s0, lambda s: s.type is E.START_OF_SPEECH)
            else:
                decision = _after(vad.stamps, s0, lambda s: s.type is E.INFERENCE
                                  and s.speech_duration >= MIN_INTERRUPTION_S)
            pauses = sink.stamps.pauses[p0:]
            if (not ok or decision is None or not pauses or (not on_start and len(pauses) != 1)
                    or not onset_ns < decision.ns < pauses[0]):
                res.bad(f"cycle {i}: ok={ok} decision={decision is not None} pauses={len(pauses)}")
            elif i >= warmup:
                res.add("onset_to_pause", pauses[0] - onset_ns)
                res.add("onset_to_decision", decision.ns - onset_ns)
                res.add("decision_to_pause", pauses[0] - decision.ns)
                flips[str(len(pauses))] = flips.get(str(len(pauses)), 0) + 1
            progress(i + 1, warmup + n)
            await trio.sleep(0.2 + rng.uniform(0.0, 0.04))
    res.params["pauses_per_cycle"] = flips
    return res
