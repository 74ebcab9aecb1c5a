"""The audio-sink contract, with segments as objects, and a reference sink.

livekit-agents counts segments: every ``AudioOutput`` layer keeps
``segments_count`` and ``finished_count`` and a waiter compares them. One lost or
duplicated ``playback_finished`` shifts every later comparison and wedges the next
speech. Here ``capture_frame`` opens a :class:`PlaybackSegment`, ``flush`` closes
it and returns it, and each segment finishes exactly once. A late or duplicated
finish is dropped on *that* segment and cannot touch another one.

A sink that can pause (``can_pause``) stops at once on :meth:`AudioOutput.pause`
and continues from exactly the same sample on :meth:`AudioOutput.resume`; that is
what lets a session take back a false interruption (the user coughed) without
losing or repeating a word.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import trio

from ._exceptions import PlayoutError

__all__ = ["AudioFrame", "AudioOutput", "PauseNotSupported", "PlaybackResult", "PlaybackSegment",
           "PlayoutRecord", "RealtimeAudioSink"]

logger = logging.getLogger("trio_playout.audio")


class PauseNotSupported(PlayoutError, NotImplementedError):
    """``pause()`` was called on a sink whose ``can_pause`` is False.

    Nothing was changed. Check :attr:`AudioOutput.can_pause` first and interrupt the
    speech instead, as livekit does for sinks that cannot pause (avatars). It is a
    ``NotImplementedError``, hence also a ``RuntimeError``.
    """


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

    A sink that can pause says so with ``can_pause`` (a class attribute or a
    property) and implements :meth:`on_pause` and :meth:`on_resume`; this class keeps
    the :attr:`paused` flag and makes :meth:`pause` and :meth:`resume` idempotent.
    """

    def __init__(self) -> None:
        self._current: PlaybackSegment | None = None
        self._pending: list[PlaybackSegment] = []
        self._next_id = 0
        self._paused = False
        self._paused_since = 0.0  # trio time of the current pause
        self._paused_before = 0.0  # seconds spent in earlier pauses

    @property
    def can_pause(self) -> bool:
        """Whether :meth:`pause` works. False here: a sink that can pause overrides it.

        A session asks a sink to pause only if this is True; otherwise it interrupts
        the speech (livekit's avatars cannot pause either).
        """
        return False

    @property
    def paused(self) -> bool:
        """True between :meth:`pause` and the next :meth:`resume` or :meth:`clear_buffer`."""
        return self._paused

    @property
    def paused_time(self) -> float:
        """Seconds this sink has spent paused so far (trio's clock), the current pause included.

        A caller that bounds a wait by the length of the audio (a sink that never
        reports the end must not wedge it) extends that bound by the growth of this
        value, so a long pause is not mistaken for a dead sink.
        """
        if self._paused:
            return self._paused_before + trio.current_time() - self._paused_since
        return self._paused_before

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
        """Queue ``frame`` for playback, opening a segment if none is open.

        Audio captured while the sink is paused is queued and plays after
        :meth:`resume` (back-pressure still applies, so a writer may block).
        """
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
        position actually heard (at once, or when the sink confirms); a segment
        cleared while paused finishes at its paused position. Safe to call twice or
        with nothing pending.

        A clear always leaves the sink **un-paused**: the paused audio was dropped,
        so nothing of it is left to resume, and the next speech must not start
        paused unless the caller pauses again. (livekit's sinks keep the paused
        flag and rely on the session to call ``resume()`` afterwards.)
        """
        if self._current is not None:
            self._current.flushed = True
            self._current = None
        pending = self.pending_segments
        if pending:
            self.on_clear(pending)
        if self._paused:
            self.on_resume()  # the cleared audio is gone; what comes next may play
            self._unpause()

    def pause(self) -> None:
        """Stop playback at once and freeze the playback position; idempotent.

        Nothing new starts until :meth:`resume` (or a :meth:`clear_buffer`), also
        when nothing is playing yet: pausing before a reply's first frame holds that
        reply back. Raises :class:`PauseNotSupported`, changing nothing, if the sink
        cannot pause (see :attr:`can_pause`).
        """
        if self._paused:
            return
        if not self.can_pause:
            raise PauseNotSupported(f"{type(self).__name__} cannot pause (can_pause is False); "
                                    "interrupt the speech instead")
        self.on_pause()
        self._paused, self._paused_since = True, trio.current_time()

    def resume(self) -> None:
        """Continue from exactly the paused position; idempotent.

        Nothing is skipped and nothing is played twice. A no-op on a sink that is
        not paused, including one that cannot pause.
        """
        if not self._paused:
            return
        self.on_resume()
        self._unpause()

    def _unpause(self) -> None:
        self._paused_before += trio.current_time() - self._paused_since
        self._paused = False

    def playback_position(self, segment: PlaybackSegment) -> float:
        """Best estimate of how much of ``segment`` was heard so far.

        It does not move while the sink is paused, so it is also the paused position.
        """
        return segment.reported_position

    # -- for subclasses -------------------------------------------------------
    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        raise NotImplementedError

    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        """Called when a segment opens."""

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        """Called when a segment is closed by :meth:`flush`."""

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        """Stop now and drop queued audio.

        If the sink is paused, :attr:`paused` is still True during this call; the
        cleared audio must never play again. :meth:`on_resume` follows at once.
        """
        raise NotImplementedError

    def on_pause(self) -> None:
        """Stop playback now, keeping the position (only called if ``can_pause``).

        Called while :attr:`paused` is still False; if it raises, the sink stays
        un-paused.
        """
        raise NotImplementedError

    def on_resume(self) -> None:
        """Continue playback from where :meth:`on_pause` stopped it.

        Called while :attr:`paused` is still True, also right after :meth:`on_clear`
        when a paused sink is cleared.
        """
        raise NotImplementedError

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Background work of the sink; the session runs it while it is open."""
        task_status.started()
        await trio.sleep_forever()


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
        self._changed = trio.Event()  # blocked writers: a clear, pause or resume
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
        self._changed.set()
        self._changed = trio.Event()

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
                await self._changed.wait()
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
        self._signal()
        if self.clear_delay == 0:
            self._fire_due(now)  # stops and confirms now; serve() has nothing new to do

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
