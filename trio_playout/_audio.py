"""The audio-sink contract, with segments as objects (the reference sink is in ``_realtime_sink``).

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
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from ._exceptions import PauseNotSupported

__all__ = ["AudioFrame", "AudioOutput", "PauseNotSupported", "PlaybackResult", "PlaybackSegment"]

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
        reply back, in a session without ``audio_input``. A session that hears the
        user owns the pause state: it pauses and resumes for the user's voice and
        lifts any other pause before a reply's first frame. Raises
        :class:`PauseNotSupported`, changing nothing, if the sink cannot pause (see
        :attr:`can_pause`).
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

    def expected_end(self) -> float | None:
        """The trio time by which the audio given so far ends if it plays from now on
        without a pause, or None if the sink cannot tell.

        The session gives a sink that never reports a natural end until then plus
        ``sink_grace`` (plus any time paused after this call). A sink that applies
        back-pressure should say it: without it, the bound counts all the audio's
        length again from its last write, which for a paced sink is about twice it.
        """
        return None

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
