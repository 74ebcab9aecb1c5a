"""The browser's player as a sink: :class:`WebSocketOutput` and the connection's :class:`Outbox`.

The sink never touches the socket. Its hooks (which the session calls
synchronously) put messages into the connection's :class:`Outbox`, in order; one
writer task per connection sends them. The player's reports (``started``,
``progress``, ``finished``, ``cleared``, ``paused``, ``resumed``) come back through
:meth:`WebSocketOutput.handle_report`, and only they finish a segment: "done"
means the browser said its audio stopped (DESIGN 3.4). A player that never says
so is bounded by the session's ``sink_grace``, as for any sink.

A clear drops what the outbox still holds for the cleared segments (it never
reaches the player); a segment none of whose audio was sent finishes at once at
position 0. Pause and resume jump ahead of queued audio (never ahead of another
control message), so they act as fast as the socket allows.
"""

from __future__ import annotations

import array
import logging
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import trio

from ._audio import AudioFrame, AudioOutput, PlaybackSegment
from ._web_protocol import (
    CLOSE_INVALID,
    Cleared,
    ClientMessage,
    Finished,
    Paused,
    Progress,
    ProtocolError,
    Resumed,
    Started,
    server_message,
)

__all__ = ["Outbox", "OutboxOverflow", "WebSocketOutput"]

logger = logging.getLogger("trio_playout.web")

_EPS = 1e-6  # seconds: clock arithmetic must not keep a writer spinning at its deadline


class OutboxOverflow(Exception):
    """The client stopped reading: more unsent text piled up than the outbox allows."""


@dataclass
class OutItem:
    """One message waiting to be sent."""

    payload: str | bytes
    kind: str  # "audio", "segment", "flush", "control", "event"
    segment: int | None = None
    seconds: float = 0.0  # audio length
    on_pop: Callable[[], None] | None = None  # the writer took it (it will reach the player)
    on_wire: Callable[[float], None] | None = None  # sent (trio time)
    tag: str | None = None  # events with a tag replace an unsent one with the same tag


class Outbox:
    """What one connection will send, in order; drained by one writer task.

    ``max_text`` bounds the unsent text (UI events): past it the client is not
    reading, and :meth:`get` raises :class:`OutboxOverflow`. Unsent audio is bounded
    by the sink's back-pressure.
    """

    def __init__(self, *, max_text: int = 256 * 1024) -> None:
        self._items: deque[OutItem] = deque()
        self._wake = trio.Event()
        self.max_text = max_text
        self.text_bytes = 0
        self.audio_seconds = 0.0
        self.overflowed = False
        self.closed = False
        self.on_audio_taken: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def _added(self, item: OutItem) -> None:
        if isinstance(item.payload, str):
            self.text_bytes += len(item.payload)
            if self.text_bytes > self.max_text:
                self.overflowed = True
        self.audio_seconds += item.seconds
        self._wake.set()

    def _removed(self, item: OutItem) -> None:
        if isinstance(item.payload, str):
            self.text_bytes -= len(item.payload)
        self.audio_seconds = max(0.0, self.audio_seconds - item.seconds)

    def put(self, item: OutItem) -> None:
        """Queue ``item`` last; an event with a ``tag`` replaces its unsent predecessor."""
        if self.closed:
            return
        if item.tag is not None:
            for i, old in enumerate(self._items):
                if old.tag == item.tag:
                    self._removed(old)
                    del self._items[i]
                    break
        self._items.append(item)
        self._added(item)

    def put_control(self, item: OutItem) -> None:
        """Queue a pause/resume/clear ahead of queued audio, but after earlier control messages."""
        if self.closed:
            return
        at = 0
        for i, old in enumerate(self._items):
            if old.kind == "control":
                at = i + 1
        self._items.insert(at, item)
        self._added(item)

    def purge(self, segments: set[int]) -> set[int]:
        """Drop every unsent item of ``segments``; returns those whose header was dropped."""
        headers: set[int] = set()
        kept: deque[OutItem] = deque()
        for item in self._items:
            if item.segment in segments and item.kind in ("audio", "segment", "flush"):
                if item.kind == "segment":
                    headers.add(item.segment)
                self._removed(item)
            else:
                kept.append(item)
        self._items = kept
        return headers

    def close(self) -> None:
        self.closed = True
        self._items.clear()
        self.text_bytes, self.audio_seconds = 0, 0.0
        self._wake.set()

    async def get(self) -> OutItem:
        """The next item to send; waits for one. Raises :class:`OutboxOverflow` (see above)
        and ``trio.EndOfChannel`` once closed."""
        while True:
            if self.overflowed:
                raise OutboxOverflow(f"over {self.max_text} bytes of unsent messages")
            if self.closed:
                raise trio.EndOfChannel
            if self._items:
                item = self._items.popleft()
                self._removed(item)
                if item.on_pop is not None:
                    item.on_pop()
                if item.seconds and self.on_audio_taken is not None:
                    self.on_audio_taken()
                return item
            self._wake = trio.Event()
            await self._wake.wait()


@dataclass
class _Seg:
    segment: PlaybackSegment
    rate: int | None = None  # set by the first frame, when the header is queued
    announced: bool = False  # the header reached the writer: the player knows it
    flushed: bool = False
    clear_sent: bool = False  # a clear for it is queued (or sent)
    sent: float = 0.0  # seconds of its audio the writer took: all the player can have played
    flush_sent: bool = False  # the writer took its flush: only now may the player finish it
    clear_delivered: bool = False  # the writer took a clear for it: only now may it be cleared
    report_sink_at: float | None = None  # sink clock of its last position report


@dataclass
class Report:
    """One player report the sink acted on (trio time)."""

    at: float
    message: ClientMessage
    counted: bool = False  # it finished a segment


def _mono(frame: AudioFrame) -> bytes:
    if frame.num_channels == 1:
        return frame.data
    samples = array.array("h")
    samples.frombytes(frame.data)
    if sys.byteorder == "big":
        samples.byteswap()
    n = frame.num_channels
    out = array.array("h", (sum(samples[i:i + n]) // n for i in range(0, len(samples), n)))
    if sys.byteorder == "big":
        out.byteswap()
    return out.tobytes()


@dataclass
class _Controls:
    """Hooks a conversation sets to time pauses and clears (barge-in timelines)."""

    decided: Callable[[str], None] | None = None  # "pause"/"clear" asked for (sync, in the hook)
    on_wire: Callable[[str, float], None] | None = None
    confirmed: Callable[[str, float], None] | None = None
    history: list[tuple[str, float]] = field(default_factory=list)


class WebSocketOutput(AudioOutput):
    """The agent's audio out to a browser's player over the connection's :class:`Outbox`.

    ``lead`` (seconds) bounds how far the audio sent runs ahead of the position the
    player reported, so the player holds little and our outbox holds at most
    ``lead`` of unsent audio. Reports lag (they come every so often), so the audio
    may also run ``lead`` ahead of trio's clock since it was sent (real-time pace):
    a player that reports late, or never, still gets its audio in time, and cannot
    wedge a speech. Frames with several channels are averaged to mono; one segment
    keeps one sample rate (a change raises ``ValueError``).

    :meth:`handle_report` takes the player's reports. :meth:`disconnect` (the
    connection is gone) finishes every segment unconfirmed at its last reported
    position: no report can come any more.
    """

    def __init__(self, outbox: Outbox, *, lead: float = 0.8) -> None:
        if not (lead > 0 and math.isfinite(lead)):
            raise ValueError(f"lead must be a finite number of seconds > 0, got {lead!r}")
        super().__init__()
        self.outbox = outbox
        outbox.on_audio_taken = self._signal
        self.lead = lead
        self.controls = _Controls()
        self.reports: deque[Report] = deque(maxlen=256)
        self.connected = True
        self._segs: dict[int, _Seg] = {}
        self._busy_until = -math.inf  # sink clock (trio time minus paused time): end of sent audio
        self._changed = trio.Event()

    @property
    def can_pause(self) -> bool:
        return True

    # -- clock and back-pressure ------------------------------------------------------
    def _sink_now(self) -> float:
        return trio.current_time() - self.paused_time

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def unplayed(self) -> float:
        """Seconds of audio given to the player (or queued for it) it has not reported playing."""
        by_reports = sum(s.segment.captured - s.segment.reported_position
                         for s in self._segs.values() if s.rate is not None and not s.segment.done())
        by_clock = max(0.0, self._busy_until - self._sink_now())
        return min(by_reports, by_clock)

    def expected_end(self) -> float | None:
        """When the audio sent so far ends if the page plays it from now on without a
        pause: a page that never reports is given until then plus ``sink_grace``."""
        if not math.isfinite(self._busy_until):
            return None
        end = self._busy_until
        live = [s for s in self._live() if s.rate is not None]
        reported_at = live[0].report_sink_at if live else None
        if reported_at is not None:  # the player said where it is: trust it
            first = live[0]
            rest = first.segment.captured - first.segment.reported_position
            rest += sum(s.segment.captured for s in live[1:])
            end = max(end, reported_at + rest)
        return end + self.paused_time

    def playing(self) -> bool:
        """Whether the player holds audio of an unfinished segment (it was announced to it)."""
        return any(s.announced and not s.segment.done() for s in self._segs.values())

    def _live(self) -> list[_Seg]:
        for seg_id in [i for i, s in self._segs.items() if s.segment.done()]:
            del self._segs[seg_id]
        return list(self._segs.values())

    # -- AudioOutput hooks -------------------------------------------------------------
    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        self._live()
        self._segs[segment.id] = _Seg(segment)
        if not self.connected:
            segment.abandon(0.0)

    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        st = self._segs.get(segment.id)
        if st is None or segment.done() or not self.connected:
            await trio.lowlevel.checkpoint()
            return
        if st.rate is None:
            st.rate = frame.sample_rate

            def announced(st: _Seg = st) -> None:
                st.announced = True

            header = server_message("segment", segment=segment.id, sample_rate=frame.sample_rate)
            self.outbox.put(OutItem(header, "segment", segment.id, on_pop=announced))
        elif frame.sample_rate != st.rate:
            raise ValueError(f"segment {segment.id} is at {st.rate} Hz; a frame at {frame.sample_rate} Hz "
                             "must start a new segment (flush first)")
        def taken(st: _Seg = st, seconds: float = frame.duration) -> None:
            st.sent += seconds

        self.outbox.put(OutItem(_mono(frame), "audio", segment.id, seconds=frame.duration, on_pop=taken))
        now = self._sink_now()
        self._busy_until = max(now, self._busy_until) + frame.duration
        # Back-pressure: at most `lead` beyond the player's reports (or the clock).
        waited = False
        while self.connected and not segment.done():
            queued = self.outbox.audio_seconds > self.lead + _EPS
            if not queued and self.unplayed() <= self.lead + _EPS:
                break
            deadline = math.inf  # a report, the writer, a clear, pause or resume wakes us
            if not queued and not self.paused:
                deadline = self._busy_until - self.lead + self.paused_time
            waited = True
            with trio.move_on_at(deadline):
                await self._changed.wait()
        if not waited:
            await trio.lowlevel.checkpoint()

    def on_segment_flushed(self, segment: PlaybackSegment) -> None:
        st = self._segs.get(segment.id)
        if st is None or segment.done():
            return
        st.flushed = True
        if st.rate is None:
            segment.finish(0.0, interrupted=False)  # no audio: nothing for the player to play
            return
        def taken(st: _Seg = st) -> None:
            st.flush_sent = True

        flush = server_message("flush", segment=segment.id)
        self.outbox.put(OutItem(flush, "flush", segment.id, on_pop=taken))

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        ids = {s.id for s in segments}
        dropped_headers = self.outbox.purge(ids)
        cleared: list[_Seg] = []
        for seg in segments:
            st = self._segs.get(seg.id)
            if st is None or seg.done():
                continue
            if not self.connected:
                seg.abandon(seg.reported_position)
                continue
            if st.rate is None or seg.id in dropped_headers:
                seg.finish(0.0, interrupted=True)  # none of it reached the player
                continue
            st.clear_sent = True
            cleared.append(st)
        self._busy_until = self._sink_now()
        if cleared:
            def taken() -> None:
                for st in cleared:
                    st.clear_delivered = True

            self._control("clear", on_pop=taken)
        self._signal()

    def on_pause(self) -> None:
        self._control("pause")
        self._signal()

    def on_resume(self) -> None:
        self._control("resume")
        self._signal()

    def _control(self, kind: str, on_pop: Callable[[], None] | None = None) -> None:
        controls = self.controls
        controls.history.append((kind, trio.current_time()))
        del controls.history[:-32]
        if controls.decided is not None:
            controls.decided(kind)

        def wire(t: float, kind: str = kind) -> None:
            if controls.on_wire is not None:
                controls.on_wire(kind, t)

        self.outbox.put_control(OutItem(server_message(kind), "control", on_pop=on_pop, on_wire=wire))

    # -- the player's side ---------------------------------------------------------------
    def handle_report(self, message: ClientMessage) -> None:
        """Act on one report of the player (reports about unknown or finished segments are
        stale, and ignored). A position is believed up to the audio sent of its segment;
        :class:`ProtocolError` (1007) for a ``cleared`` no clear was sent for, or a
        ``finished`` before the segment's flush was sent: a player that claims those
        would end a speech early or overstate what the user heard."""
        now = trio.current_time()
        report = Report(now, message)
        self.reports.append(report)
        if isinstance(message, Paused):
            st = self._segs.get(message.segment) if message.segment is not None else None
            if st is not None:
                st.segment.report_position(min(message.position, st.sent))
            self._confirmed("pause", now)
        elif isinstance(message, Resumed):
            self._confirmed("resume", now)
        elif isinstance(message, (Progress, Finished, Cleared, Started)):
            st = self._segs.get(message.segment)
            if st is None or not st.announced or st.segment.done():
                logger.debug("stale or unknown report %r", message)
                return
            if isinstance(message, Started):
                return
            segment = st.segment
            position = min(message.position, st.sent)
            if isinstance(message, Cleared):
                if not st.clear_delivered:
                    raise ProtocolError(CLOSE_INVALID, f"cleared segment {segment.id}, but no clear was sent")
                report.counted = segment.finish(position, interrupted=True)
                if report.counted and not any(s.clear_sent for s in self._live()):
                    self._confirmed("clear", now)
            elif isinstance(message, Finished):
                if not st.flush_sent:
                    raise ProtocolError(CLOSE_INVALID, f"finished segment {segment.id} before its flush")
                report.counted = segment.finish(position, interrupted=False)
                if report.counted and st.clear_sent and not any(s.clear_sent for s in self._live()):
                    self._confirmed("clear", now)
            else:
                segment.report_position(position)
                st.report_sink_at = self._sink_now()
        self._signal()

    def _confirmed(self, kind: str, now: float) -> None:
        if self.controls.confirmed is not None:
            self.controls.confirmed(kind, now)

    def disconnect(self) -> None:
        """The connection is gone: finish every segment, unconfirmed, at its last report."""
        self.connected = False
        for st in self._live():
            st.segment.abandon(st.segment.reported_position)
        self._signal()
