"""The audio-sink contract, with segments as objects, and a reference sink.

livekit-agents counts segments: every ``AudioOutput`` layer keeps
``segments_count`` and ``finished_count`` and a waiter compares them. One lost or
duplicated ``playback_finished`` shifts every later comparison and wedges the next
speech. Here ``capture_frame`` opens a :class:`PlaybackSegment`, ``flush`` closes
it and returns it, and each segment finishes exactly once. A late or duplicated
finish is dropped on *that* segment and cannot touch another one.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

__all__ = ["AudioFrame", "AudioOutput", "PlaybackResult", "PlaybackSegment", "PlayoutRecord",
           "RealtimeAudioSink"]

logger = logging.getLogger("trio_playout.audio")


@dataclass(frozen=True)
class AudioFrame:
    """16-bit PCM audio: ``data`` holds interleaved little-endian samples."""

    data: bytes
    sample_rate: int
    num_channels: int = 1

    def __post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.num_channels <= 0:
            raise ValueError(f"num_channels must be positive, got {self.num_channels}")
        if len(self.data) % (2 * self.num_channels):
            raise ValueError("data must hold whole 16-bit samples for every channel")

    @property
    def samples_per_channel(self) -> int:
        return len(self.data) // (2 * self.num_channels)

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.samples_per_channel / self.sample_rate

    @classmethod
    def silence(cls, duration: float, *, sample_rate: int = 16000, num_channels: int = 1) -> AudioFrame:
        """A frame of silence lasting ``duration`` seconds (rounded to whole samples)."""
        if duration < 0:
            raise ValueError(f"duration must not be negative, got {duration}")
        samples = round(duration * sample_rate)
        return cls(bytes(2 * samples * num_channels), sample_rate, num_channels)


@dataclass(frozen=True)
class PlaybackResult:
    """How a segment finished.

    ``position`` is the number of seconds of the segment the listener heard.
    ``confirmed`` is False when the sink never confirmed and the session gave up
    after its ``sink_grace``; ``position`` is then the best estimate available.
    """

    position: float
    interrupted: bool
    confirmed: bool = True


class PlaybackSegment:
    """One stretch of audio, from the first ``capture_frame`` to ``flush``.

    It finishes exactly once, through :meth:`finish` (the sink) or :meth:`abandon`
    (the session, when the sink's grace ran out). Later calls are ignored and logged,
    so a sink that reports twice cannot confuse anybody.
    """

    def __init__(self, segment_id: int) -> None:
        self.id = segment_id
        self.captured = 0.0
        self.flushed = False
        self._reported_position = 0.0
        self._finished = trio.Event()
        self._result: PlaybackResult | None = None

    def __repr__(self) -> str:
        return f"<PlaybackSegment {self.id} captured={self.captured:.3f}s result={self._result}>"

    @property
    def result(self) -> PlaybackResult | None:
        return self._result

    def done(self) -> bool:
        return self._result is not None

    @property
    def reported_position(self) -> float:
        """The last position the sink reported (see :meth:`report_position`)."""
        return self._result.position if self._result else self._reported_position

    def report_position(self, position: float) -> None:
        """Sinks may report progress; it is used if the segment must be abandoned."""
        self._reported_position = max(self._reported_position, min(position, self.captured))

    def finish(self, position: float, *, interrupted: bool) -> bool:
        """Report the end of this segment. True if this call was the one that counted."""
        return self._set(PlaybackResult(max(0.0, min(position, self.captured)), interrupted))

    def abandon(self, position: float) -> bool:
        """Finish without the sink's confirmation (the grace ran out)."""
        return self._set(PlaybackResult(max(0.0, min(position, self.captured)), True, False))

    def _set(self, result: PlaybackResult) -> bool:
        if self._result is not None:
            logger.debug("segment %s already finished (%s); ignoring %s", self.id, self._result, result)
            return False
        self._result = result
        self._finished.set()
        return True

    async def wait(self) -> PlaybackResult:
        """Wait until the segment finished; cancelling the waiter changes nothing."""
        await self._finished.wait()
        assert self._result is not None
        return self._result


class AudioOutput:
    """Base class of audio sinks.

    The session calls :meth:`capture_frame`, :meth:`flush`, :meth:`clear_buffer` and
    runs :meth:`serve` for as long as it is open. Subclasses implement
    :meth:`write_frame` (accept audio; may apply back-pressure) and :meth:`on_clear`
    (stop now), and finish every segment exactly once with ``segment.finish(...)``:
    ``interrupted=False`` at the natural end of a flushed segment, ``interrupted=True``
    with the heard position after a clear.
    """

    def __init__(self) -> None:
        self._current: PlaybackSegment | None = None
        self._pending: list[PlaybackSegment] = []
        self._next_id = 0

    @property
    def current_segment(self) -> PlaybackSegment | None:
        """The open segment, if frames were captured since the last flush or clear."""
        return self._current

    @property
    def pending_segments(self) -> Sequence[PlaybackSegment]:
        """Segments opened and not yet finished, oldest first."""
        self._pending = [s for s in self._pending if not s.done()]
        return tuple(self._pending)

    def open_segment(self) -> PlaybackSegment:
        """The open segment, opening one if none is open; synchronous.

        :meth:`capture_frame` may block on back-pressure; a caller that calls this
        first knows the segment its frame lands in even if it is cancelled while the
        frame is being written, so it can wait for that segment to stop.
        """
        seg = self._current
        if seg is None:
            self._next_id += 1
            seg = self._current = PlaybackSegment(self._next_id)
            self._pending.append(seg)
            self.on_segment_opened(seg)
        return seg

    async def capture_frame(self, frame: AudioFrame) -> PlaybackSegment:
        """Queue ``frame`` for playback, opening a segment if none is open."""
        seg = self.open_segment()
        seg.captured += frame.duration
        await self.write_frame(seg, frame)
        return seg

    def flush(self) -> PlaybackSegment | None:
        """Close the open segment and return it (None if nothing was captured)."""
        seg, self._current = self._current, None
        if seg is not None:
            seg.flushed = True
            self.on_segment_flushed(seg)
        return seg

    def clear_buffer(self) -> None:
        """Stop playback now and drop queued audio.

        Every unfinished segment then finishes with ``interrupted=True`` and the
        position actually heard (at once, or when the sink confirms). Safe to call
        twice or with nothing pending.
        """
        if self._current is not None:
            self._current.flushed = True
            self._current = None
        pending = self.pending_segments
        if pending:
            self.on_clear(pending)

    def playback_position(self, segment: PlaybackSegment) -> float:
        """Best estimate of how much of ``segment`` was heard so far."""
        return segment.reported_position

    # -- for subclasses -------------------------------------------------------
    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        raise NotImplementedError

    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        """Called when a segment opens."""

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        """Called when a segment is closed by :meth:`flush`."""

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        raise NotImplementedError

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work of the sink; the session runs it while it is open."""
        task_status.started()
        await trio.sleep_forever()


@dataclass
class PlayoutRecord:
    """What a :class:`RealtimeAudioSink` did with one segment (times on trio's clock)."""

    segment_id: int
    started_at: float
    stopped_at: float | None = None
    position: float | None = None
    interrupted: bool = False
    confirmed: bool = False
    clear_requested_at: float | None = None


@dataclass
class _Track:
    """Playback schedule of one segment on the sink's timeline."""

    segment: PlaybackSegment
    record: PlayoutRecord
    frames: list[tuple[float, float]] = field(default_factory=list)  # (start, end)
    stop_at: float | None = None  # when playback ends (natural end or clear)
    interrupted: bool = False
    deaf: bool = False  # a clear was ignored: play on, never confirm


class RealtimeAudioSink(AudioOutput):
    """A reference sink that plays audio in real time on trio's clock.

    Under ``trio.testing.MockClock`` it plays in virtual time, so tests of 2-second
    graces take microseconds. ``clear_delay`` models how fast the sink confirms a
    clear: 0 stops and confirms inside :meth:`clear_buffer` (a local device); 0.15
    keeps playing 150 ms and then confirms (an avatar behind an RPC); ``math.inf``
    ignores the clear and never confirms (a deaf sink: the audio plays out and the
    interrupted segment is never finished by the sink). ``buffer`` is how far ahead
    of playback ``capture_frame`` accepts audio before it blocks.

    :attr:`records` says what was played: per segment, when it started and stopped,
    the position heard, whether it was interrupted and whether it confirmed.
    """

    def __init__(self, clear_delay: float = 0.0, *, buffer: float = 0.2) -> None:
        if clear_delay < 0 or math.isnan(clear_delay):
            raise ValueError(f"clear_delay must be >= 0 (math.inf: never), got {clear_delay}")
        if buffer <= 0:
            raise ValueError(f"buffer must be positive, got {buffer}")
        super().__init__()
        self.clear_delay = clear_delay
        self.buffer = buffer
        self.records: list[PlayoutRecord] = []
        self.clear_calls = 0
        self._tracks: dict[int, _Track] = {}
        self._busy_until = -math.inf
        self._wake = trio.Event()
        self._cleared = trio.Event()
        self._serving = False

    # -- queries --------------------------------------------------------------
    def playback_position(self, segment: PlaybackSegment) -> float:
        track = self._tracks.get(segment.id)
        if track is None or segment.done():
            return segment.reported_position
        return self._position(track, trio.current_time())

    def is_playing(self) -> bool:
        """True while some audio is audible right now."""
        now = trio.current_time()
        return any(
            s <= now < min(e, t.stop_at if t.stop_at is not None else math.inf)
            for t in self._tracks.values()
            for s, e in t.frames
        )

    @staticmethod
    def _position(track: _Track, t: float) -> float:
        return sum(max(0.0, min(t, e) - s) for s, e in track.frames if s < t)

    # -- AudioOutput hooks ----------------------------------------------------
    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        now = trio.current_time()
        record = PlayoutRecord(segment.id, started_at=max(now, self._busy_until))
        self.records.append(record)
        self._tracks[segment.id] = _Track(segment, record)

    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        track = self._tracks[segment.id]
        now = trio.current_time()
        start = max(now, self._busy_until)
        if not track.frames:
            track.record.started_at = start
        self._busy_until = start + frame.duration
        track.frames.append((start, self._busy_until))
        self._wake.set()
        ahead = self._busy_until - now - self.buffer
        if ahead > 0:
            with trio.move_on_at(self._busy_until - self.buffer):
                await self._cleared.wait()  # a clear releases blocked writers at once
        else:
            await trio.lowlevel.checkpoint()

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        track = self._tracks[segment.id]
        if track.stop_at is None:
            track.stop_at = track.frames[-1][1] if track.frames else trio.current_time()
        self._wake.set()

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        self.clear_calls += 1
        now = trio.current_time()
        stop = now + self.clear_delay
        for seg in segments:
            track = self._tracks.get(seg.id)
            if track is None or track.interrupted or track.deaf:
                continue  # unknown, or a clear is already in flight
            track.record.clear_requested_at = now
            natural_end = track.frames[-1][1] if track.frames else now
            if math.isinf(self.clear_delay):
                track.deaf = True
                track.stop_at = natural_end
                continue
            if natural_end <= stop and track.stop_at is not None:
                continue  # it ends on its own before the clear takes effect
            track.interrupted = True
            track.stop_at = stop
            track.frames = [(s, min(e, stop)) for s, e in track.frames if s < stop]
            track.record.started_at = min(track.record.started_at, stop)
        self._busy_until = min(self._busy_until, stop)
        self._cleared.set()
        self._cleared = trio.Event()
        if self.clear_delay == 0:
            self._fire_due(now)  # stops and confirms now; serve() has nothing new to do
        else:
            self._wake.set()

    # -- playback -------------------------------------------------------------
    def _fire_due(self, now: float) -> None:
        for seg_id, track in list(self._tracks.items()):
            if track.stop_at is None or track.stop_at > now:
                continue
            del self._tracks[seg_id]
            position = self._position(track, track.stop_at)
            rec = track.record
            rec.stopped_at, rec.position, rec.interrupted = track.stop_at, position, track.interrupted
            if track.deaf:
                logger.debug("deaf sink: segment %s played out, never confirmed", seg_id)
                track.segment.report_position(position)
                continue
            rec.confirmed = track.segment.finish(position, interrupted=track.interrupted)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if self._serving:
            raise RuntimeError("this sink is already being served by another session")
        self._serving = True
        try:
            task_status.started()
            while True:
                self._fire_due(trio.current_time())
                deadline = min(
                    (t.stop_at for t in self._tracks.values() if t.stop_at is not None),
                    default=math.inf,
                )
                self._wake = trio.Event()
                with trio.move_on_at(deadline):
                    await self._wake.wait()
        finally:
            self._serving = False
