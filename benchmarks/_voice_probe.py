"""Instruments for :mod:`benchmarks.voice_latency`: a microphone, VADs and a sink that
stamp ``time.perf_counter_ns()`` at the moments the latencies start and end.

Why these stamps: the latency a user feels is "the VAD made up its mind" to "the
audio stopped". The first moment is when the VAD *yields* its event to the session
(:class:`DrivenVAD`, :class:`StampedVAD`); the second is when the sink's own stop
has happened (:class:`ProbeSink`, stamped when ``on_pause``/``on_clear`` return).
Everything between the two is the playout core: the driver, the turn rules, the
session's host and the sink's bookkeeping.

:class:`DrivenVAD` is a VAD without a model: a controller queues, per microphone
frame, the events to yield when that frame arrives. So a barge-in that would need
0.5 s of user speech is one ``INFERENCE`` with ``speech_duration=0.5``, and a sample
takes a few frames instead of a second, which is what makes N >= 1000 feasible in
real time. The session cannot tell the difference: it reads the event's
``speech_duration``, never the clock, to decide a barge-in.

Everything here runs on trio's real clock in the benchmark, and under
``trio.testing.MockClock`` in the smoke test (stamps are then meaningless but the
ordering of events still holds).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

import trio

import trio_playout as tp

FRAME_S = 0.02
RATE = 16000
now_ns = time.perf_counter_ns


class StampedMic:
    """A microphone paced on trio's clock: frame *k* is yielded at ``(k + 1) * frame``.

    Each yield is stamped (``frames``: a bounded deque of ``(frame, ns)``), so a
    VAD can look up when the frame it received was delivered. ``source`` gives the
    audio of frame *k* (default: silence); :attr:`t0_ns` and :attr:`t0` are the
    start of the audio timeline in ``perf_counter_ns`` and trio time.
    """

    def __init__(self, source: Callable[[int], bytes] | None = None, *, frame_s: float = FRAME_S) -> None:
        self.frame_s = frame_s
        self.samples = round(frame_s * RATE)
        self._silence = bytes(2 * self.samples)
        self.source = source
        self.frames: deque[tuple[tp.AudioFrame, int]] = deque(maxlen=256)
        self.t0 = 0.0
        self.t0_ns = 0
        self.delivered = 0

    def __aiter__(self) -> AsyncIterator[tp.AudioFrame]:
        return self._run()

    async def _run(self) -> AsyncIterator[tp.AudioFrame]:
        self.t0, self.t0_ns = trio.current_time(), now_ns()
        k = 0
        while True:
            await trio.sleep_until(self.t0 + (k + 1) * self.frame_s)
            data = self.source(k) if self.source is not None else self._silence
            frame = tp.AudioFrame(data, RATE)
            self.frames.append((frame, now_ns()))
            self.delivered = k = k + 1
            yield frame

    def delivered_at(self, frame: tp.AudioFrame) -> int | None:
        """The ``perf_counter_ns`` at which ``frame`` was yielded (None if unknown)."""
        for f, ns in reversed(self.frames):
            if f is frame:
                return ns
        return None


@dataclass
class Stamp:
    """One yielded VAD event: its type, the yield stamp, and the stamp of the frame
    that carried it (None when the frame is unknown)."""

    type: tp.VADEventType
    ns: int
    frame_ns: int | None
    speech_duration: float


class DrivenVAD:
    """A VAD whose events are queued by a controller, one list per arriving frame.

    Each frame pops the next entry of :attr:`plan` (a deque of event-type lists) and
    yields those events; with nothing planned it yields one ``INFERENCE`` reporting
    silence (or the growing speech while the user "speaks"), like a model would.
    Every yield is stamped into :attr:`stamps` just before ``yield``; the session's
    driver consumes the event in the same task, without a checkpoint in between.
    ``crossing`` is the ``speech_duration`` put into the first ``INFERENCE`` of each
    utterance: set it to the session's ``min_interruption_duration``.
    """

    def __init__(self, mic: StampedMic, crossing: float) -> None:
        self.mic = mic
        self.crossing = crossing
        self.plan: deque[Sequence[tp.VADEventType]] = deque()
        self.stamps: list[Stamp] = []
        self.frames = 0

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        E = tp.VADEventType
        speech_start: float | None = None
        silence_start = 0.0
        async for frame in frames:
            self.frames += 1
            t = self.frames * self.mic.frame_s
            planned = self.plan.popleft() if self.plan else (E.INFERENCE,)
            for kind in planned:
                if kind is E.START_OF_SPEECH:
                    speech_start = t
                    event = tp.VADEvent(kind, t, 0.0, 0.0, 1.0)
                elif kind is E.END_OF_SPEECH:
                    speech_start, silence_start = None, t
                    event = tp.VADEvent(kind, t, 0.0, 0.0, 0.0)
                elif speech_start is not None:  # inference in speech: cross at once
                    duration = max(self.crossing, t - speech_start)
                    event = tp.VADEvent(kind, t, duration, 0.0, 1.0)
                else:
                    event = tp.VADEvent(kind, t, 0.0, t - silence_start, 0.0)
                self.stamps.append(Stamp(kind, now_ns(), self.mic.delivered_at(frame), event.speech_duration))
                yield event


class StampedVAD:
    """Wraps a real VAD (Silero): stamps each event it yields, as :class:`DrivenVAD` does."""

    def __init__(self, inner: tp.VAD, mic: StampedMic) -> None:
        self.inner = inner
        self.mic = mic
        self.stamps: list[Stamp] = []

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        last: list[tp.AudioFrame] = []

        async def tap() -> AsyncIterator[tp.AudioFrame]:
            async for frame in frames:
                last[:] = [frame]
                yield frame

        async for event in self.inner.stream(tap()):
            frame_ns = self.mic.delivered_at(last[0]) if last else None
            self.stamps.append(Stamp(event.type, now_ns(), frame_ns, event.speech_duration))
            yield event


@dataclass
class SinkStamps:
    """``perf_counter_ns`` stamps of the sink's own actions, in order."""

    pauses: list[int] = field(default_factory=list)  # when on_pause returned
    resumes: list[int] = field(default_factory=list)  # when on_resume was entered
    clears: list[int] = field(default_factory=list)  # when on_clear returned


class ProbeSink(tp.RealtimeAudioSink):
    """A :class:`~trio_playout.RealtimeAudioSink` that stamps its pause, resume and clear.

    The pause and the clear are stamped when the sink's own handler *returns* (the
    sink has stopped: for ``clear_delay=0`` the clear is also confirmed then, the
    segment finished); the resume when it is *entered* (the moment the session
    decided to go on). :attr:`changed` is set after each, for the controller;
    :meth:`expect_write` tells it when audio is being written (a speech is playing).
    """

    def __init__(self, *, can_pause: bool = True) -> None:
        super().__init__(clear_delay=0.0, can_pause=can_pause)
        self.stamps = SinkStamps()
        self.changed = trio.Event()
        self.wrote = trio.Event()  # set by the next written frame (see expect_write)
        self.writes = 0

    def _poke(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def on_pause(self) -> None:
        super().on_pause()
        self.stamps.pauses.append(now_ns())
        self._poke()

    def on_resume(self) -> None:
        self.stamps.resumes.append(now_ns())
        super().on_resume()
        self._poke()

    def on_clear(self, segments: Sequence[tp.PlaybackSegment]) -> None:
        super().on_clear(segments)
        self.stamps.clears.append(now_ns())
        self._poke()

    async def write_frame(self, segment: tp.PlaybackSegment, frame: tp.AudioFrame) -> None:
        self.writes += 1
        self.wrote.set()
        await super().write_frame(segment, frame)

    def expect_write(self) -> trio.Event:
        """An event the next written frame sets."""
        self.wrote = trio.Event()
        return self.wrote
