"""A bound on how long a sink may take to confirm ``clear_buffer()``.

livekit waits, with no limit, for the sink to report the interrupted
``playback_finished`` after ``clear_buffer()``; only its 5 s watchdog ends the wait, and
the watchdog drops the step's assistant message and tool records (upstream #5359, and
the "deaf sink" probes). :func:`with_sink_grace` puts a wrapper above the sink that
waits ``grace`` seconds for that confirmation and then finishes the segments itself,
as interrupted, at the position heard so far, with a WARNING log line. The speech then
ends normally and its history is written.

This module needs only livekit (no trio, no trio_asyncio): it works on stock asyncio
too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities, PlaybackFinishedEvent

__all__ = ["GraceAudioOutput", "GraceExpiry", "with_sink_grace"]

logger = logging.getLogger("bridge")


@dataclass(frozen=True)
class GraceExpiry:
    """One time the grace ran out: when (loop time) and how many segments it finished."""

    at: float
    segments: int
    position: float


class GraceAudioOutput(AudioOutput):
    """``AudioOutput`` wrapper; see :func:`with_sink_grace`."""

    def __init__(self, next_in_chain: AudioOutput, *, grace: float) -> None:
        super().__init__(
            label=f"SinkGrace({next_in_chain.label})",
            capabilities=AudioOutputCapabilities(pause=next_in_chain.can_pause),
            next_in_chain=next_in_chain,
            sample_rate=next_in_chain.sample_rate,
        )
        if grace < 0:
            raise ValueError("grace must be >= 0")
        self.grace = grace
        self.expiries: list[GraceExpiry] = []
        self._timer: asyncio.TimerHandle | None = None
        self._seg_start: float | None = None
        self._pushed = 0.0
        self._cleared_at: float | None = None

    @property
    def _next(self) -> AudioOutput:
        assert self.next_in_chain is not None
        return self.next_in_chain

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._seg_start is None:
            self._seg_start = asyncio.get_running_loop().time()
            self._pushed = 0.0
        self._pushed += frame.duration
        await self._next.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        self._next.flush()

    def clear_buffer(self) -> None:
        loop = asyncio.get_running_loop()
        self._cleared_at = loop.time()
        self._next.clear_buffer()
        if self._pending_playback_count > 0 and self._timer is None:
            self._timer = loop.call_later(self.grace, self._expire)

    def _forward_next_playback_finished(self, ev: PlaybackFinishedEvent) -> None:
        super()._forward_next_playback_finished(ev)
        self._segment_done()

    def _segment_done(self) -> None:
        if self._pending_playback_count == 0:
            self._seg_start = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _expire(self) -> None:
        self._timer = None
        owed = self._pending_playback_count
        if owed <= 0:
            return
        now = asyncio.get_running_loop().time()
        start = self._seg_start if self._seg_start is not None else now
        cleared = self._cleared_at if self._cleared_at is not None else now
        position = max(0.0, min(self._pushed, cleared - start))
        self.expiries.append(GraceExpiry(at=now, segments=owed, position=position))
        logger.warning(
            "audio sink %s did not confirm clear_buffer() within %.3gs; finishing %d "
            "segment(s) as interrupted at %.3fs",
            self._next.label,
            self.grace,
            owed,
            position,
        )
        for _ in range(owed):
            self.on_playback_finished(playback_position=position, interrupted=True)
        self._segment_done()


def with_sink_grace(sink: AudioOutput, grace: float = 2.0) -> GraceAudioOutput:
    """Wrap ``sink`` so an unconfirmed ``clear_buffer()`` ends after ``grace`` seconds.

    Use it as the session's audio output, or as the ``next_in_chain_audio`` of livekit's
    ``TranscriptSynchronizer``. A confirmation that arrives after the grace is dropped
    by livekit's segment accounting (a warning), or, if a new segment started
    meanwhile, counts for that segment: a late sink can end the next segment early; it
    can no longer hang it. ``expiries`` records each time the grace ran out.
    """
    return GraceAudioOutput(sink, grace=grace)
