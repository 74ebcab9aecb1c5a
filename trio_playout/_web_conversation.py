"""One websocket, one conversation: hello, a session, the microphone in, the player's reports.

:class:`Conversation` runs everything one connection needs in one nursery: a reader
(the client's messages: microphone PCM into a bounded :class:`MicInput`, reports into
the sink), a writer (the :class:`~._web_sink.Outbox`, in order), the session, and
the UI events. Nothing is shared with other connections but the agent factory.

The end, whatever causes it (the client closed or vanished, it broke the protocol,
the server shuts down): the sink is disconnected first (its segments finish at the
last reported position, since no report can come any more), the microphone ends,
the socket is closed with the code (bounded), and the session closes (bounded by
its own rules). Then the nursery is cancelled: no task outlives the connection.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection

import trio_playout as tp

from ._step import _aclosing
from ._web_protocol import (
    CLOSE_IDLE,
    CLOSE_NO_HELLO,
    CLOSE_SERVER_ERROR,
    CLOSE_TOO_SLOW,
    PROTOCOL_VERSION,
    Hello,
    ProtocolError,
    RateLimit,
    check_pcm,
    parse_client_text,
    server_message,
)
from ._web_sink import Outbox, OutboxOverflow, OutItem, WebSocketOutput

__all__ = ["Agent", "AgentFactory", "BargeIn", "Conversation", "ConversationInfo", "MicInput"]

logger = logging.getLogger("trio_playout.web")

HISTORY_ITEMS = 50  # the newest items sent to the page
HISTORY_TEXT = 2000  # characters per item


@dataclass(frozen=True)
class ConversationInfo:
    """What the agent factory knows about a new conversation: its number, the client's
    hello and address, and the websocket URL's query parameters (``token`` removed),
    e.g. ``pause_on_speech_start=1`` from the page's toggle."""

    number: int
    hello: Hello
    remote: str
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Agent:
    """The parts of one conversation's session, made by the server's agent factory.

    ``greeting`` is said when the conversation starts (None: silent). ``aclose``, if
    given, is awaited after the session closed (e.g. an OpenAI client to close).
    """

    llm: tp.LLM
    tts: tp.TTS
    vad: tp.VAD | None = None
    stt: tp.STT | None = None
    turn: tp.TurnOptions | None = None
    tools: Sequence[tp.FunctionTool] = ()
    greeting: str | None = "Hello! Press the button and talk to me."
    sink_grace: float = 2.0
    close_timeout: float = 5.0
    aclose: Callable[[], Any] | None = None


AgentFactory = Callable[[ConversationInfo], Agent]


class MicInput:
    """The client's microphone as the session's ``audio_input``: a bounded queue.

    Holds at most ``max_seconds`` of audio; a frame that does not fit is dropped and
    counted (:attr:`dropped_seconds`), so a session that falls behind never blocks
    the reader (the player's reports share the socket with the microphone). It
    remembers when each delivered frame arrived, to time barge-ins from the first
    PCM frame of the user's speech.
    """

    def __init__(self, max_seconds: float = 2.0) -> None:
        self.max_seconds = max_seconds
        self.queued_seconds = 0.0
        self.received_seconds = 0.0
        self.dropped_seconds = 0.0
        self.delivered_seconds = 0.0  # audio time of the stream the session reads
        self.last_arrival = -math.inf  # trio time the newest delivered frame arrived
        self._frames: deque[tuple[tp.AudioFrame, float]] = deque()
        self._arrivals: deque[tuple[float, float]] = deque(maxlen=1024)  # (audio end, arrival)
        self._wake = trio.Event()
        self._closed = False

    def put(self, frame: tp.AudioFrame) -> None:
        self.received_seconds += frame.duration
        if self._closed:
            return
        if self.queued_seconds + frame.duration > self.max_seconds:
            if not self.dropped_seconds:
                logger.warning("the session is not keeping up with the microphone: dropping audio")
            self.dropped_seconds += frame.duration
            return
        self.queued_seconds += frame.duration
        self._frames.append((frame, trio.current_time()))
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    def arrival_of(self, audio_time: float) -> float | None:
        """When the frame holding ``audio_time`` (seconds of the delivered stream) arrived."""
        for end, arrival in self._arrivals:
            if end > audio_time:
                return arrival
        return None

    def __aiter__(self) -> AsyncIterator[tp.AudioFrame]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[tp.AudioFrame]:
        while True:
            if self._frames:
                frame, arrival = self._frames.popleft()
                self.queued_seconds -= frame.duration
                self.delivered_seconds += frame.duration
                self.last_arrival = arrival
                self._arrivals.append((self.delivered_seconds, arrival))
                yield frame
            elif self._closed:
                return
            else:
                self._wake = trio.Event()
                await self._wake.wait()


@dataclass
class BargeIn:
    """The timeline of one barge-in, in trio time (server side).

    ``onset_at``: the first PCM frame of the user's speech arrived (by the VAD's
    start of speech, minus the speech it had already counted). ``decided_at``: the
    session asked the sink to pause or clear (``decided_frame_at``: the newest
    microphone frame then, the one that made the decision). ``sent_at``: the
    pause/clear left in full on the socket. ``stopped_at``: the player confirmed.
    """

    onset_at: float
    action: str | None = None
    decided_at: float | None = None
    decided_frame_at: float | None = None
    sent_at: float | None = None
    stopped_at: float | None = None

    def as_event(self) -> dict[str, Any]:
        def ms(t: float | None) -> float | None:
            return None if t is None else round(1000 * (t - self.onset_at), 1)

        return {"action": self.action, "onset_ms": 0.0, "decided_ms": ms(self.decided_at),
                "sent_ms": ms(self.sent_at), "stopped_ms": ms(self.stopped_at),
                "server_ms": (None if self.sent_at is None or self.decided_frame_at is None
                              else round(1000 * (self.sent_at - self.decided_frame_at), 3))}


class _ObservedVAD:
    """Passes the VAD's events on, telling the conversation about starts and ends first."""

    def __init__(self, inner: tp.VAD, on_event: Callable[[tp.VADEvent], None]) -> None:
        self.inner = inner
        self.on_event = on_event

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        async with _aclosing(self.inner.stream(frames)) as events:
            async for event in events:
                if event.type is not tp.VADEventType.INFERENCE:
                    self.on_event(event)
                yield event


@dataclass
class Conversation:
    """One connection's conversation (see the module). The server keeps these for as
    long as they run; ``on_conversation`` observers (tests) may keep them longer.

    ``started`` is set once the session is open (``session``, ``output``, ``mic`` and
    the ``greeting`` speech are there), ``finished`` once everything of it ended;
    ``close_code`` says how (sent or received), ``history`` is the session's final
    history, ``barge_ins`` the last 16 barge-in timelines.
    """

    number: int
    remote: str
    query: dict[str, str] = field(default_factory=dict)
    opened_at: float = field(default_factory=trio.current_time)  # the websocket's handshake
    hello: Hello | None = None
    session: tp.Session | None = None
    output: WebSocketOutput | None = None
    mic: MicInput | None = None
    close_code: int | None = None
    close_reason: str = ""
    history: list[tp.ChatItem] = field(default_factory=list)
    barge_ins: list[BargeIn] = field(default_factory=list)
    error: BaseException | None = None
    greeting: tp.SpeechHandle | None = None
    started: trio.Event = field(default_factory=trio.Event)
    finished: trio.Event = field(default_factory=trio.Event)
    _ended: trio.Event = field(default_factory=trio.Event)
    _barge_in: BargeIn | None = None
    _in_flight: BargeIn | None = None  # decided, not yet confirmed, when new speech started
    _hello_scope: trio.CancelScope | None = None

    def end(self, code: int, reason: str) -> None:
        """End the conversation with ``code`` (the first reason given wins)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self._ended.set()
        if self._hello_scope is not None:
            self._hello_scope.cancel()

    # -- hello ------------------------------------------------------------------------
    async def read_hello(self, ws: WebSocketConnection, limit: float) -> Hello | None:
        """The client's hello; None (and the conversation ended with its code) if it did
        not come within ``limit`` seconds, was bad, or the conversation was ended meanwhile."""
        try:
            with trio.move_on_after(limit) as self._hello_scope:
                if self._ended.is_set():
                    self._hello_scope.cancel()
                first = await ws.get_message()
                if isinstance(first, bytes):
                    check_pcm(first, None)  # raises: binary before hello
                    raise AssertionError("unreachable")
                hello = parse_client_text(first, expect_hello=True)
                assert isinstance(hello, Hello)
                self.hello = hello
                return hello
            self.end(CLOSE_NO_HELLO, f"no hello within {limit:g} s")
        except ProtocolError as exc:
            self.end(exc.code, exc.reason)
        except ConnectionClosed as exc:
            self.end(int(exc.reason.code) if exc.reason else 1006, "closed before hello")
        return None

    # -- the whole conversation ------------------------------------------------------------
    async def run(self, ws: WebSocketConnection, agent: Agent, *, lead: float, mic_buffer: float,
                  send_timeout: float, idle_timeout: float = 300.0, mic_timeout: float | None = None,
                  limit: RateLimit | None = None,
                  on_barge_in: Callable[[BargeIn], None] | None = None) -> None:
        """Run the conversation until it ends. ``limit`` counts the client's microphone
        audio against the clock (the server's, whose frame meter also counts every
        frame against its message budget; by default one from the handshake on).
        ``idle_timeout``: nothing received; ``mic_timeout`` (an agent that hears only):
        no microphone audio since the hello or the last frame; both close 4410."""
        assert self.hello is not None
        outbox = Outbox()
        sink = self.output = WebSocketOutput(outbox, lead=lead)
        mic = self.mic = MicInput(mic_buffer)
        self._wire_barge_ins(sink, mic, outbox, on_barge_in)
        vad = _ObservedVAD(agent.vad, self._on_vad) if agent.vad is not None else None
        hears = vad is not None or agent.stt is not None
        if not hears:
            mic.close()  # an agent without ears: the microphone's audio is not kept
        outbox.put(OutItem(server_message(
            "session", conversation=self.number, protocol=PROTOCOL_VERSION, lead=lead,
            pause_on_speech_start=bool(agent.turn and agent.turn.pause_on_speech_start)), "event"))
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer, ws, outbox, send_timeout)
                # Audio is counted against the clock from the handshake: no client can
                # have recorded more since then (a slow start here must not count).
                if limit is None:
                    limit = RateLimit(self.opened_at)
                nursery.start_soon(self._reader, ws, sink, mic, limit, idle_timeout,
                                   mic_timeout if hears else None)
                try:
                    async with tp.open_session(
                            llm=agent.llm, tts=agent.tts, output=sink, tools=agent.tools,
                            sink_grace=agent.sink_grace, close_timeout=agent.close_timeout,
                            audio_input=mic if hears else None,
                            vad=vad, stt=agent.stt, turn=agent.turn) as session:
                        self.session = session
                        nursery.start_soon(self._events, session, outbox)
                        nursery.start_soon(self._history, session, outbox)
                        if agent.greeting:
                            self.greeting = session.say(agent.greeting)
                        self.started.set()
                        try:
                            await self._ended.wait()
                        except trio.Cancelled:
                            self.end(1001, "the server is shutting down")
                            raise
                        finally:
                            sink.disconnect()
                            mic.close()
                            with trio.CancelScope(shield=True):
                                await _close(ws, self.close_code or 1000, self.close_reason)
                finally:
                    if self.session is not None:
                        self.history = list(self.session.history)
                    nursery.cancel_scope.cancel()
        except Exception as exc:
            logger.exception("conversation %d failed", self.number)
            self.error = exc
            self.end(CLOSE_SERVER_ERROR, "server error")
            with trio.CancelScope(shield=True):
                await _close(ws, CLOSE_SERVER_ERROR, "server error")
        finally:
            if agent.aclose is not None:
                with trio.move_on_after(2.0) as scope:
                    scope.shield = True
                    await agent.aclose()

    async def _reader(self, ws: WebSocketConnection, sink: WebSocketOutput, mic: MicInput,
                      limit: RateLimit, idle_timeout: float, mic_timeout: float | None) -> None:
        hello = self.hello
        assert hello is not None
        last_pcm = last = trio.current_time()
        try:
            while True:
                message: str | bytes | None = None
                mic_deadline = math.inf if mic_timeout is None else last_pcm + mic_timeout
                with trio.move_on_at(min(last + idle_timeout, mic_deadline)):
                    message = await ws.get_message()
                if message is None:
                    if trio.current_time() >= mic_deadline:
                        self.end(CLOSE_IDLE, f"no microphone audio for {mic_timeout:g} s")
                    else:
                        self.end(CLOSE_IDLE, f"nothing received for {idle_timeout:g} s")
                    return
                now = last = trio.current_time()
                if isinstance(message, bytes):
                    check_pcm(message, hello)
                    limit.pcm(now, len(message) / 2 / hello.sample_rate)
                    if message:
                        last_pcm = now
                        mic.put(tp.AudioFrame(message, hello.sample_rate))
                else:
                    sink.handle_report(parse_client_text(message, expect_hello=False))
        except ProtocolError as exc:
            self.end(exc.code, exc.reason)
        except ConnectionClosed as exc:
            self.end(int(exc.reason.code) if exc.reason else 1006, "client closed")

    async def _writer(self, ws: WebSocketConnection, outbox: Outbox, send_timeout: float) -> None:
        try:
            while True:
                item = await outbox.get()
                with trio.fail_after(send_timeout):
                    await ws.send_message(item.payload)
                if item.on_wire is not None:
                    item.on_wire(trio.current_time())
        except trio.EndOfChannel:
            pass
        except (OutboxOverflow, trio.TooSlowError):
            self.end(CLOSE_TOO_SLOW, "the client does not read")
        except ConnectionClosed as exc:
            self.end(int(exc.reason.code) if exc.reason else 1006, "connection lost")

    # -- UI events ---------------------------------------------------------------------------
    async def _events(self, session: tp.Session, outbox: Outbox) -> None:
        def event(name: str, **fields: Any) -> None:
            outbox.put(OutItem(server_message("event", event=name, **fields), "event"))

        event("agent_state", state=session.agent_state)
        event("user_state", state=session.user_state)
        async with session.subscribe(buffer=64) as events:
            async for ev in events:
                if isinstance(ev, tp.UserStateChanged):
                    event("user_state", state=ev.new)
                elif isinstance(ev, tp.AgentStateChanged):
                    event("agent_state", state=ev.new)
                elif isinstance(ev, tp.UserInputTranscribed):
                    event("transcript", text=ev.text[:HISTORY_TEXT], final=ev.final)
                elif isinstance(ev, tp.FalseInterruption):
                    event("false_interruption", resumed=ev.resumed, provisional=ev.provisional)

    async def _history(self, session: tp.Session, outbox: Outbox) -> None:
        """Send the history when it changed (polled: the session has no history event)."""
        seen: tuple[int, object] = (0, None)
        while True:
            history = session.history
            now = (len(history), history[-1] if len(history) else None)
            if now != seen:
                seen = now
                items = [{"role": i.role, "text": i.text[:HISTORY_TEXT], "interrupted": i.interrupted}
                         for i in list(history)[-HISTORY_ITEMS:] if isinstance(i, tp.ChatMessage)]
                outbox.put(OutItem(server_message("event", event="history", items=items), "event",
                                   tag="history"))
            await trio.sleep(0.1)

    # -- barge-in timelines ---------------------------------------------------------------------
    def _on_vad(self, event: tp.VADEvent) -> None:
        mic = self.mic
        assert mic is not None
        if event.type is tp.VADEventType.START_OF_SPEECH:
            onset = mic.arrival_of(max(0.0, event.timestamp - event.speech_duration))
            b = self._barge_in
            if b is not None and b.action is not None and b.stopped_at is None:
                # Its pause or clear is still on its way to the player (slow under load):
                # keep it, so the player's confirmation still completes its timeline.
                self._in_flight = b
            self._barge_in = BargeIn(onset if onset is not None else trio.current_time())
        elif event.type is tp.VADEventType.END_OF_SPEECH and self._barge_in is not None and (
                self._barge_in.action is None):
            self._barge_in = None

    def _wire_barge_ins(self, sink: WebSocketOutput, mic: MicInput, outbox: Outbox,
                        on_barge_in: Callable[[BargeIn], None] | None) -> None:
        def decided(kind: str) -> None:
            b = self._barge_in
            if b is not None and b.action is None and kind in ("pause", "clear") and sink.playing():
                b.action, b.decided_at, b.decided_frame_at = kind, trio.current_time(), mic.last_arrival

        def on_wire(kind: str, t: float) -> None:
            for b in (self._in_flight, self._barge_in):  # the older one was sent first
                if b is not None and b.action == kind and b.sent_at is None:
                    b.sent_at = t
                    return

        def confirmed(kind: str, t: float) -> None:
            found = [b for b in (self._in_flight, self._barge_in) if b is not None and b.action == kind
                     and b.sent_at is not None and b.stopped_at is None]
            if not found:
                return
            b = found[0]
            if b is self._in_flight:
                self._in_flight = None
            b.stopped_at = t
            self.barge_ins.append(b)
            del self.barge_ins[:-16]
            outbox.put(OutItem(server_message("event", event="barge_in", **b.as_event()), "event"))
            if on_barge_in is not None:
                on_barge_in(b)

        sink.controls.decided, sink.controls.on_wire, sink.controls.confirmed = decided, on_wire, confirmed


async def _close(ws: WebSocketConnection, code: int, reason: str) -> None:
    """Close the websocket with ``code``, waiting at most 1 s for the client's answer."""
    with trio.move_on_after(1.0):
        with contextlib.suppress(ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError):
            await ws.aclose(code, reason)
