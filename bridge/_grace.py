"""A bound on how long a sink may take to confirm ``clear_buffer()``.

livekit waits, with no limit, for the sink to report the interrupted
``playback_finished`` after ``clear_buffer()``; only its 5 s watchdog ends the wait, and
the watchdog drops the step's assistant message and tool records (upstream #5359, and
the "deaf sink" probes). :func:`with_sink_grace` puts a wrapper above the sink that
waits ``grace`` seconds for that confirmation and then finishes the segments itself,
with a WARNING log line. The speech then ends normally and its history is written.

What history records when the sink never tells
-----------------------------------------------
A sink that never confirms says nothing about where its audio stopped: one that obeyed
the clear and lost the confirmation looks exactly like a deaf one that ignored the
clear and plays on. The bridge takes the rule of the trio-native core
(``SpeechHandle.sink_timed_out``): **what the sink had been given counts as heard**.
No sink can play audio it was not given, and one that ignores a clear plays what it
holds, so history may claim words nobody heard but never omits words that played. A
sink that buffers little (a room's audio source, ``trio_playout.RealtimeAudioSink``,
0.2 s) is thus recorded almost exactly; one that takes a whole reply at once and then
never confirms is recorded as having played all of it. A sink that confirms, even
late within the grace, is recorded where it says it stopped.

In livekit's terms, when the grace runs out, the segments finish at the position where
the given audio ends (time spent paused, seen on its way to the sink, counts):

* as played out (``interrupted=False``) if the sink still holds audio it cannot have
  played yet, is not paused, and had been given the whole segment before the clear (a
  deaf sink that took the whole reply): that is what the rule assumes will happen, and
  so livekit's synchronizer writes the segment's whole text. The assistant message is
  still marked interrupted (livekit takes that from the speech);
* as interrupted otherwise. If the interrupt cut the segment's audio short (livekit
  flushes and clears in the same step then), the words of audio never produced are
  not claimed; but audio the sink holds and had no time to play when the grace ran out
  is not in the transcript either (the synchronizer places words as the audio plays,
  and had not got there), so such a sink is recorded with less than it was given.

The transcript under livekit's ``TranscriptSynchronizer``
---------------------------------------------------------
The synchronizer (built by ``RoomIO``, or by hand with this wrapper as its
``next_in_chain_audio``) ignores the position of an interrupted segment: history gets
the words it had paced out when the finish arrived. Left alone, it paces on through
the whole grace, and once the segment's audio input has ended it paces the reply's
whole text over the little audio that was given: a sink that stopped after 3 words
was recorded with the whole reply. So, when the wrapper sits under a synchronizer
(directly, or below wrappers that forward its events), a clear also tells the
synchronizer to stop pacing words at the moment the given audio ends; the words it
had paced by then are those of the given audio, as if the sink had confirmed there
(give or take the one word already on its way). A confirmation that comes earlier
ends the segment as usual. The synchronizer's internals this uses are in
:mod:`bridge._lk`; without them (another livekit version) the transcript is
livekit's own.

This module needs only livekit (no trio, no trio_asyncio): it works on stock asyncio
too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from livekit import rtc
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities, PlaybackFinishedEvent

from . import _lk

__all__ = ["GraceAudioOutput", "GraceExpiry", "with_sink_grace"]

logger = logging.getLogger("bridge")


@dataclass(frozen=True)
class GraceExpiry:
    """One time the grace ran out.

    ``at``: loop time; ``segments``: how many it finished; ``position``: seconds taken as
    heard (what the sink had been given); ``played_out``: the sink still held audio it
    could not have played yet, so the segments were finished as played out.
    """

    at: float
    segments: int
    position: float
    played_out: bool = False


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
        self._freeze_timer: asyncio.TimerHandle | None = None
        self._transcript: Any = None  # the synchronizer segment to freeze, if any
        # the unconfirmed audio: when it started, how much was given, time spent paused
        self._seg_start: float | None = None
        self._pushed = 0.0
        self._paused_for = 0.0
        self._paused_at: float | None = None
        # whole: flushed in an earlier callback than the clear, so the producer had ended
        # it (livekit flushes and clears in one go when an interrupt cuts the audio short)
        self._flush_gen = 0
        self._flush_settled = False
        self._whole_at_clear = False

    @property
    def _next(self) -> AudioOutput:
        assert self.next_in_chain is not None
        return self.next_in_chain

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if self._seg_start is None:
            self._seg_start = self._now()
            self._pushed = self._paused_for = 0.0
        self._pushed += frame.duration
        self._flush_settled = False
        await self._next.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        self._next.flush()
        self._flush_gen += 1
        asyncio.get_running_loop().call_soon(self._settle_flush, self._flush_gen)

    def _settle_flush(self, gen: int) -> None:
        if gen == self._flush_gen:
            self._flush_settled = True

    def pause(self) -> None:
        super().pause()
        if self._paused_at is None:
            self._paused_at = self._now()

    def resume(self) -> None:
        super().resume()
        if self._paused_at is not None:
            self._paused_for += self._now() - self._paused_at
            self._paused_at = None

    def clear_buffer(self) -> None:
        loop = asyncio.get_running_loop()
        self._next.clear_buffer()
        if self._pending_playback_count > 0 and self._timer is None:
            self._timer = loop.call_later(self.grace, self._expire)
            self._whole_at_clear = self._flush_settled
            self._transcript = _lk.transcript_segment_above(self)
            if self._transcript is not None:
                # no word past the end of the audio the sink was given (see module doc)
                self._freeze_timer = loop.call_at(self._given_until(loop.time()), self._freeze)

    def _given_until(self, now: float) -> float:
        """Loop time by which the audio given so far has played out, at the latest."""
        start = self._seg_start if self._seg_start is not None else now
        paused = self._paused_for + (now - self._paused_at if self._paused_at is not None else 0.0)
        return start + self._pushed + paused

    def _freeze(self) -> None:
        self._freeze_timer = None
        if self._transcript is not None:
            _lk.freeze_transcript(self._transcript)

    def _forward_next_playback_finished(self, ev: PlaybackFinishedEvent) -> None:
        super()._forward_next_playback_finished(ev)
        self._segment_done()

    def _segment_done(self) -> None:
        if self._pending_playback_count == 0:
            self._seg_start = None
            self._transcript = None
            for timer in (self._timer, self._freeze_timer):
                if timer is not None:
                    timer.cancel()
            self._timer = self._freeze_timer = None

    def _expire(self) -> None:
        self._timer = None
        owed = self._pending_playback_count
        if owed <= 0:
            return
        now = self._now()
        position = self._pushed
        # it holds audio it cannot have played yet (and is not paused): by the rule it
        # plays on; if it had the whole segment, the segment is as good as played out
        holds_more = self._given_until(now) > now and self._paused_at is None
        played_out = holds_more and self._whole_at_clear
        if self._freeze_timer is not None:
            self._freeze_timer.cancel()
            self._freeze_timer = None
            if not played_out:
                self._freeze()
        self.expiries.append(GraceExpiry(at=now, segments=owed, position=position, played_out=played_out))
        logger.warning(
            "audio sink %s did not confirm clear_buffer() within %.3gs; finishing %d "
            "segment(s) as %s, taking the %.3fs of audio it was given as heard",
            self._next.label,
            self.grace,
            owed,
            "played out" if played_out else "interrupted",
            position,
        )
        for _ in range(owed):
            self.on_playback_finished(playback_position=position, interrupted=not played_out)
        self._segment_done()


def with_sink_grace(sink: AudioOutput, grace: float = 2.0) -> GraceAudioOutput:
    """Wrap ``sink`` so an unconfirmed ``clear_buffer()`` ends after ``grace`` seconds.

    Put it under livekit's ``TranscriptSynchronizer``, so an interrupted message holds
    only the words of the audio the sink was given (module docstring): pass it as
    ``next_in_chain_audio`` when you build the synchronizer, or set it as the session's
    audio output before ``session.start()`` with the room's own audio output off (an
    avatar or other remote sink): ``RoomIO`` then builds its synchronizer on it. When
    the grace runs out, what the sink had been given counts as heard (the core's rule,
    see the module docstring). A
    confirmation that arrives after the grace is dropped by livekit's segment
    accounting (a warning), or, if a new segment started meanwhile, counts for that
    segment: a late sink can end the next segment early; it can no longer hang it.
    ``expiries`` records each time the grace ran out.
    """
    return GraceAudioOutput(sink, grace=grace)
