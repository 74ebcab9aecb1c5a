"""The reference sink: audio played in real time on trio's clock.

:class:`RealtimeAudioSink` is what the tests, the demo and the benchmarks play into.
It keeps the :class:`~trio_playout.AudioOutput` contract exactly (segments finish
once, a clear confirms at the position heard, pause freezes it) and models the
sinks that break livekit: an avatar that confirms a clear late, a deaf sink that
never confirms, a bounded buffer that pushes back on the writer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from ._audio import AudioFrame, AudioOutput, PlaybackSegment

__all__ = ["PlayoutRecord", "RealtimeAudioSink"]

logger = logging.getLogger("trio_playout.audio")


@dataclass
class PlayoutRecord:
    """What a :class:`RealtimeAudioSink` did with one segment (times on trio's clock).

    ``started_at`` is when its first audio was heard (scheduled time until then;
    for a segment dropped before any of it was heard, the time it was dropped).
    ``stopped_at`` is when its audio stopped for good: its natural end, the moment a
    clear took effect, or, for a segment cleared while paused, the moment of that
    pause. ``pauses`` lists the pauses that caught it mid-playout as ``(paused_at,
    resumed_at)``; ``resumed_at`` is None if it never resumed (it was cleared while
    paused). Without gaps in the audio (the writer kept ahead of playback)::

        position == stopped_at - started_at - sum(paused time in pauses)
    """

    segment_id: int
    started_at: float
    stopped_at: float | None = None
    position: float | None = None
    interrupted: bool = False
    confirmed: bool = False
    clear_requested_at: float | None = None
    pauses: list[tuple[float, float | None]] = field(default_factory=list)


@dataclass
class _Track:
    """Playback schedule of one segment, in sink time (see :class:`RealtimeAudioSink`)."""

    segment: PlaybackSegment
    record: PlayoutRecord
    opened: float  # sink time at which it would start if it got audio now
    frames: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    end: float | None = None  # natural end, known once flushed (or a clear was ignored)
    cut: float = math.inf  # nothing after this is heard (a clear, or a pause with a clear in flight)
    clear_at: float | None = None  # trio time at which a clear takes effect and is confirmed
    silenced_at: float | None = None  # trio time of the pause that silenced it for good
    deaf: bool = False  # a clear was ignored: play on, never confirm

    @property
    def natural(self) -> bool:
        """It ends by playing out (rather than by a clear)."""
        return self.end is not None and self.end <= self.cut


class RealtimeAudioSink(AudioOutput):
    """A reference sink that plays audio in real time on trio's clock.

    Under ``trio.testing.MockClock`` it plays in virtual time, so tests of 2-second
    graces take microseconds. ``clear_delay`` models how fast the sink confirms a
    clear: 0 stops and confirms inside :meth:`clear_buffer` (a local device); 0.15
    keeps playing 150 ms and then confirms (an avatar behind an RPC); ``math.inf``
    ignores the clear and never confirms (a deaf sink: the audio plays out and the
    interrupted segment is never finished by the sink). ``buffer`` is how far ahead
    of playback ``capture_frame`` accepts audio before it blocks.

    Pause and resume (``can_pause=True`` by default; pass False to model a sink that
    cannot pause) act at once whatever the ``clear_delay``: only a clear travels
    slowly. While paused nothing plays, positions are frozen, natural ends move
    back by the paused time, and writers block once ``buffer`` is full (a clear or a
    resume releases them). A clear while paused finishes each segment at its paused
    position (``clear_delay`` later) and ends the pause, as
    :meth:`AudioOutput.clear_buffer` says; new audio starts once the clear has taken
    effect. A deaf sink pauses too, but ignores the clear: the end of the pause lets
    its audio play out. A pause while a clear is in flight silences that audio for
    good: it never resumes, and the clear confirms at the paused position.

    :attr:`records` says what was played: per segment, when it started and stopped,
    the position heard, whether it was interrupted, whether it confirmed and which
    pauses caught it. :attr:`pauses` lists every pause of the sink.
    """

    # Audio is scheduled on a *sink clock* that follows trio's clock but stands still
    # while paused: sink time = trio time - (total paused time). Frames, natural ends
    # and cuts live on the sink clock, so a pause delays all of them without editing
    # them; a clear's confirmation is a trio-clock deadline, as a remote clear would be.

    def __init__(self, clear_delay: float = 0.0, *, buffer: float = 0.2, can_pause: bool = True) -> None:
        if clear_delay < 0 or math.isnan(clear_delay):
            raise ValueError(f"clear_delay must be >= 0 (math.inf: never), got {clear_delay}")
        if buffer <= 0:
            raise ValueError(f"buffer must be positive, got {buffer}")
        super().__init__()
        self.clear_delay = clear_delay
        self.buffer = buffer
        self.records: list[PlayoutRecord] = []
        self.pauses: list[tuple[float, float | None]] = []
        self.clear_calls = 0
        self._can_pause = can_pause
        self._tracks: dict[int, _Track] = {}
        self._busy_until = -math.inf  # sink time at which the queued audio ends
        self._shift = 0.0  # total paused time of the finished pauses
        self._paused_at: float | None = None  # trio time of the current pause
        self._frozen = 0.0  # sink time during the current pause
        self._clears = 0
        self._wake = trio.Event()  # serve(): the schedule changed
        self._writers = trio.lowlevel.ParkingLot()  # blocked writers: a clear, pause or resume
        self._serving = False

    @property
    def can_pause(self) -> bool:
        return self._can_pause

    # -- the sink clock -------------------------------------------------------
    def _sink_now(self) -> float:
        return self._frozen if self._paused_at is not None else trio.current_time() - self._shift

    def _trio_time(self, sink_time: float) -> float:
        """When ``sink_time`` comes, if the sink is not paused (again) before."""
        if self._paused_at is None:
            return sink_time + self._shift
        return trio.current_time() + sink_time - self._frozen  # as if resumed now

    def _due_at(self, track: _Track) -> float:
        """Trio time at which ``track`` finishes (``-inf``: now; ``inf``: not yet known)."""
        if track.natural:
            assert track.end is not None
            if self._paused_at is None:
                return track.end + self._shift
            return -math.inf if track.end <= self._frozen else math.inf
        return track.clear_at if track.clear_at is not None else math.inf

    def _signal(self) -> None:
        self._wake.set()
        self._writers.unpark_all()

    # -- queries --------------------------------------------------------------
    def playback_position(self, segment: PlaybackSegment) -> float:
        track = self._tracks.get(segment.id)
        if track is None or segment.done():
            return segment.reported_position
        return self._position(track, min(self._sink_now(), track.cut))

    def is_playing(self) -> bool:
        """True while some audio is audible right now (never while paused)."""
        if self._paused_at is not None:
            return False
        now = self._sink_now()
        return any(s <= now < min(e, t.cut) for t in self._tracks.values() for s, e in t.frames)

    @staticmethod
    def _position(track: _Track, t: float) -> float:
        return sum(max(0.0, min(t, e) - s) for s, e in track.frames if s < t)

    # -- AudioOutput hooks ----------------------------------------------------
    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        start = max(self._sink_now(), self._busy_until)
        record = PlayoutRecord(segment.id, started_at=self._trio_time(start))
        self.records.append(record)
        self._tracks[segment.id] = _Track(segment, record, opened=start)

    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        track = self._tracks[segment.id]
        start = max(self._sink_now(), self._busy_until)
        if not track.frames:
            track.record.started_at = self._trio_time(start)
        end = self._busy_until = start + frame.duration
        track.frames.append((start, end))
        self._wake.set()
        # Back-pressure: return once at most `buffer` is left ahead of playback. A
        # clear releases the writer at once; a pause holds it until resume.
        clears, waited = self._clears, False
        while clears == self._clears:
            if self._paused_at is not None:
                if end - self.buffer <= self._frozen:
                    break  # the buffer is not full
                deadline = math.inf
            else:
                deadline = end - self.buffer + self._shift
                if trio.current_time() >= deadline:
                    break
            waited = True
            with trio.move_on_at(deadline):
                await self._writers.park()
        if not waited:
            await trio.lowlevel.checkpoint()

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        track = self._tracks[segment.id]
        if track.end is None:
            track.end = track.frames[-1][1] if track.frames else self._sink_now()
        self._wake.set()

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        self.clear_calls += 1
        now, sink_now = trio.current_time(), self._sink_now()
        for seg in segments:
            track = self._tracks.get(seg.id)
            if track is None or track.clear_at is not None or track.deaf:
                continue  # unknown, or a clear is already in flight
            track.record.clear_requested_at = now
            if math.isinf(self.clear_delay):
                track.deaf = True
                if track.end is None:
                    track.end = track.frames[-1][1] if track.frames else sink_now
                continue
            track.clear_at = now + self.clear_delay
            if self._paused_at is not None:
                track.cut = min(track.cut, sink_now)  # paused audio never plays again
                track.silenced_at = self._paused_at
            else:
                # it plays on until the clear takes effect, unless it ends before
                track.cut = sink_now + self.clear_delay
        if not math.isinf(self.clear_delay):
            self._busy_until = min(self._busy_until, sink_now + self.clear_delay)
        self._clears += 1
        if self.clear_delay == 0:
            # Stops and confirms now. serve() is not woken: every cleared track is
            # gone, no other track's due time moved, and a stale deadline only costs
            # it a spurious wake-up later, never a missed one. (A wake-up here is one
            # more task step between the interrupt and the speech's done.)
            self._fire_due(now)
            self._writers.unpark_all()  # blocked writers: the clear releases them
        else:
            self._signal()

    def on_pause(self) -> None:
        now = trio.current_time()
        self._fire_due(now)  # what ended before the pause ends at its own time
        sink_now = now - self._shift
        self._paused_at, self._frozen = now, sink_now
        for track in self._tracks.values():
            frames = track.frames
            if frames and frames[0][0] < sink_now < frames[-1][1] and sink_now < track.cut:
                track.record.pauses.append((now, None))  # caught mid-playout
            if track.clear_at is not None and sink_now < track.cut:
                track.cut, track.silenced_at = sink_now, now  # a clear is on its way
        self.pauses.append((now, None))
        self._signal()

    def on_resume(self) -> None:
        now = trio.current_time()
        self._fire_due(now)  # clears that took effect during the pause
        paused_at, frozen = self._paused_at, self._frozen
        assert paused_at is not None
        self._shift += now - paused_at
        self._paused_at = None
        for track in self._tracks.values():
            pauses = track.record.pauses
            if pauses and pauses[-1] == (paused_at, None) and frozen < track.cut:
                pauses[-1] = (paused_at, now)
            start = track.frames[0][0] if track.frames else track.opened
            if start >= frozen:  # not heard yet: it starts later by the paused time
                track.record.started_at = self._trio_time(start)
        self.pauses[-1] = (paused_at, now)
        self._signal()

    # -- playback -------------------------------------------------------------
    def _fire_due(self, now: float) -> None:
        for seg_id, track in list(self._tracks.items()):
            if self._due_at(track) > now:
                continue
            del self._tracks[seg_id]
            rec = track.record
            if track.natural:
                assert track.end is not None
                position = self._position(track, track.end)
                rec.stopped_at = track.end + self._shift  # before any pause that began later
            else:
                assert track.clear_at is not None
                position = self._position(track, track.cut)
                if position > 0:
                    rec.stopped_at = track.silenced_at if track.silenced_at is not None else track.clear_at
                else:  # never heard: it was dropped when the clear took effect
                    rec.stopped_at = rec.started_at = track.clear_at
            rec.position, rec.interrupted = position, not track.natural
            if track.deaf:
                logger.debug("deaf sink: segment %s played out, never confirmed", seg_id)
                track.segment.report_position(position)
                continue
            rec.confirmed = track.segment.finish(position, interrupted=not track.natural)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._serving:
            raise RuntimeError("this sink is already being served by another session")
        self._serving = True
        try:
            task_status.started()
            while True:
                self._fire_due(trio.current_time())
                deadline = min((self._due_at(t) for t in self._tracks.values()), default=math.inf)
                self._wake = trio.Event()
                with trio.move_on_at(deadline):
                    await self._wake.wait()
        finally:
            self._serving = False
