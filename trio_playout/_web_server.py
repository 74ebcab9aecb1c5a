"""The HTTP front of :mod:`trio_playout.web`: h11 for the page, trio-websocket for ``/ws``.

Each TCP connection gets one task. Its request head is read with h11 (bounded in
size and time); ``GET /`` and ``GET /static/<name>`` are answered from the page's
directory (an allow-list: the files present there, by a fixed name pattern) and the
connection is closed; ``GET /ws`` with an upgrade is handed to trio-websocket, the
bytes already read replayed in front of the stream, and becomes one
:class:`~._web_conversation.Conversation`. A websocket that fails the token or
origin check, or comes when ``max_conversations`` are running, is accepted and
closed at once with 1008 or 1013, so a browser sees why (a refused handshake shows
only as 1006 there). On a loopback address only this machine's names for it (and
the hosts of the extra origins) are answered as ``Host`` (421 otherwise): DNS
rebinding would otherwise bring a foreign page in with a Host and an Origin that agree.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h11
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_server_stream

from ._web_conversation import AgentFactory, BargeIn, Conversation, ConversationInfo, _close
from ._web_protocol import (
    CLOSE_POLICY,
    CLOSE_SERVER_ERROR,
    CLOSE_TRY_LATER,
    MAX_RATE,
    MAX_TEXT_MESSAGE,
    FrameMeter,
    ProtocolError,
    RateLimit,
    check_host,
    check_origin,
    check_token,
    check_upgrade,
    is_loopback,
    loopback_hosts,
    max_pcm_bytes,
    split_target,
    static_name,
)

__all__ = ["ServerOptions", "WebServer"]

logger = logging.getLogger("trio_playout.web")

PAGE_DIR = Path(__file__).with_name("data") / "web"
MAX_HEAD = 16 * 1024  # bytes of one request head
MAX_MESSAGE = max(max_pcm_bytes(MAX_RATE), MAX_TEXT_MESSAGE)  # bytes of one client message
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
_PLACEHOLDER = (b"<!doctype html><meta charset=utf-8><title>trio-playout</title>"
                b"<p>The page is not installed; the websocket is at /ws.</p>")


@dataclass(frozen=True)
class ServerOptions:
    """Limits and checks of a :class:`WebServer` (see :mod:`trio_playout.web`).

    ``token``: required as ``?token=`` on ``/ws`` (always required when binding a
    non-loopback address). ``origins``: exact ``Origin`` values allowed besides the
    server's own host (e.g. a load balancer's public URL); ``allow_no_origin``: a
    client without ``Origin`` (not a browser) may connect. ``max_conversations``
    running at once (more get 1013); ``max_connections`` open TCP connections of any
    kind (more are closed unanswered). ``hello_timeout``, ``request_timeout`` (the
    HTTP request head), ``send_timeout`` (one message to a client that does not
    read), ``idle_timeout`` (nothing received at all) and ``mic_timeout`` (no
    microphone audio, for an agent with a VAD or an STT: a page streams its
    microphone all along, so a websocket that does not holds a conversation slot and
    its STT for nothing; None: no limit) in seconds; ``max_messages``
    a client may send per second on average (microphone frames and reports together)
    and ``burst_messages`` at once (a network stall's backlog: 30 s of a page).
    ``lead``: seconds of agent audio sent beyond the player's reports;
    ``mic_buffer``: seconds of microphone audio queued for the session.
    """

    token: str | None = None
    origins: frozenset[str] = frozenset()
    allow_no_origin: bool = True
    max_conversations: int = 16
    max_connections: int = 512
    hello_timeout: float = 10.0
    request_timeout: float = 10.0
    send_timeout: float = 10.0
    lead: float = 0.8
    mic_buffer: float = 2.0
    idle_timeout: float = 300.0
    mic_timeout: float | None = 60.0
    max_messages: int = 250
    burst_messages: int = 2000
    page_dir: Path = PAGE_DIR

    def __post_init__(self) -> None:
        for name in ("hello_timeout", "request_timeout", "send_timeout", "lead", "mic_buffer",
                     "idle_timeout", "mic_timeout"):
            value = getattr(self, name)
            if value is None and name == "mic_timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
        for name in ("max_conversations", "max_connections", "max_messages", "burst_messages"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.token is not None and not self.token:
            raise ValueError("token must not be empty")


class _Replay(trio.abc.Stream):
    """The websocket's stream: first the request head already read (for trio-websocket's
    handshake), then nothing until :attr:`opened` is set (the 101 is sent), then the
    bytes read after the head (``tail``: frames a client sent along with its head) and
    the connection's own bytes. wsproto's server drops bytes it receives before the
    handshake completes, so the wait keeps a pipelined first message.

    Past the head every byte goes through :attr:`meter` (frames counted before
    trio-websocket sees them); when it refuses them they are not passed on,
    :attr:`on_violation` is told, and reading stops (the conversation closes with the
    code while the client's bytes wait in TCP).
    """

    def __init__(self, inner: trio.abc.Stream, head: bytes, tail: bytes = b"") -> None:
        self.inner = inner
        self.head = head
        self.tail = tail
        self.opened = trio.Event()
        self.meter: FrameMeter | None = None
        self.violation: ProtocolError | None = None
        self.on_violation: Callable[[ProtocolError], None] | None = None

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self.head:
            n = len(self.head) if max_bytes is None else max_bytes
            out, self.head = self.head[:n], self.head[n:]
            await trio.lowlevel.checkpoint()
            return out
        await self.opened.wait()
        data: bytes | bytearray
        if self.tail:
            n = len(self.tail) if max_bytes is None else max_bytes
            data, self.tail = self.tail[:n], self.tail[n:]
            await trio.lowlevel.checkpoint()
        else:
            data = await self.inner.receive_some(max_bytes)
        if data and self.meter is not None and self.violation is None:
            try:
                self.meter.feed(trio.current_time(), data)
            except ProtocolError as exc:
                self.violation = exc
                if self.on_violation is not None:
                    self.on_violation(exc)
        if self.violation is not None:
            await trio.sleep_forever()  # read nothing more (cancelled when the connection ends)
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


class WebServer:
    """Serves the page and one conversation per websocket (see :mod:`trio_playout.web`).

    ``factory`` makes each conversation's :class:`~._web_conversation.Agent`.
    ``on_conversation`` (optional) is told of each conversation as it starts (tests
    keep them to look at their sessions). Counters: :attr:`closes` (close codes
    sent or seen), :attr:`refused` (connections closed unanswered),
    :attr:`barge_ins` (the last 10000 barge-in timelines).
    """

    def __init__(self, factory: AgentFactory, options: ServerOptions | None = None, *,
                 on_conversation: Callable[[Conversation], None] | None = None) -> None:
        self.factory = factory
        self.options = options or ServerOptions()
        self.on_conversation = on_conversation
        self.port: int | None = None
        self.connections = 0
        self.conversations: dict[int, Conversation] = {}
        self.closes: Counter[int] = Counter()
        self.refused = 0
        self.barge_ins: deque[BargeIn] = deque(maxlen=10000)
        self.nursery: trio.Nursery | None = None
        self._numbers = itertools.count(1)
        self._changed = trio.Event()
        self._hosts: frozenset[str] | None = None  # on loopback: the Host values answered

    def _signal(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds, checked each time a connection or a
        conversation starts or ends (e.g. ``lambda: not server.connections``)."""
        while not predicate():
            await self._changed.wait()

    # -- running -----------------------------------------------------------------------
    async def serve(self, host: str = "127.0.0.1", port: int = 8000, *,
                    task_status: trio.TaskStatus[WebServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on ``host:port`` (0: any free port, see :attr:`port`) until cancelled.

        Raises ``ValueError`` for a non-loopback ``host`` without a token.
        """
        if not is_loopback(host) and self.options.token is None:
            raise ValueError(f"refusing to listen on {host!r} without a token: anyone who can reach it "
                             "could talk to the agent (and use its models); pass --token, or bind 127.0.0.1")
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.port = listeners[0].socket.getsockname()[1]
        if is_loopback(host):
            self._hosts = loopback_hosts(host, self.port, self.options.origins)
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def _handle(self, stream: trio.SocketStream) -> None:
        if self.connections >= self.options.max_connections:
            self.refused += 1
            await trio.aclose_forcefully(stream)
            return
        self.connections += 1
        self._signal()
        try:
            await self._http(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except Exception:
            logger.exception("connection failed")
        finally:
            try:
                await trio.aclose_forcefully(stream)
            finally:
                # last, with no checkpoint after it: a waiter on "no connections" finds
                # this task gone
                self.connections -= 1
                self._signal()

    async def _http(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        raw = bytearray()
        request: h11.Request | None = None
        with trio.move_on_after(self.options.request_timeout):
            while request is None:
                data = await stream.receive_some(MAX_HEAD)
                if not data:
                    return
                raw += data
                conn.receive_data(bytes(data))
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    await _respond(stream, conn, 400, b"bad request\n")
                    return
                if isinstance(event, h11.Request):
                    request = event
                elif len(raw) > MAX_HEAD:
                    return
        if request is None:
            return  # too slow: drop it
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        path, query = split_target(request.target.decode("latin-1"))
        if not check_host(headers.get("host"), self._hosts):
            await _respond(stream, conn, 421, b"this server answers only for its own host names\n")
        elif request.method != b"GET":
            await _respond(stream, conn, 405, b"only GET\n", [("Allow", "GET")])
        elif path == "/ws":
            refused = check_upgrade(headers)
            if refused is not None:
                status, text = refused
                extra = [("Upgrade", "websocket"), ("Sec-WebSocket-Version", "13")] if status == 426 else []
                await _respond(stream, conn, status, text.encode() + b"\n",
                               [("Content-Type", "text/plain"), *extra])
                return
            try:
                remote = f"{stream.socket.getpeername()}"
            except OSError:
                return  # reset already: nobody to talk to
            tail = conn.trailing_data[0]
            head = bytes(raw[:len(raw) - len(tail)])
            await self._websocket(_Replay(stream, head, bytes(tail)), headers, query, remote)
        else:
            await self._page(stream, conn, path)

    async def _page(self, stream: trio.SocketStream, conn: h11.Connection, path: str) -> None:
        name = "index.html" if path in ("/", "/index.html") else static_name(path)
        if name is None:
            await _respond(stream, conn, 404, b"not found\n")
            return
        file = self.options.page_dir / name
        try:
            allowed = name in {p.name for p in self.options.page_dir.iterdir() if p.is_file()}
            body = await trio.Path(file).read_bytes() if allowed else None
        except OSError:
            body = None
        if body is None:
            if name != "index.html":
                await _respond(stream, conn, 404, b"not found\n")
                return
            body = _PLACEHOLDER
        await _respond(stream, conn, 200, body, [("Content-Type", _TYPES[file.suffix])])

    async def _websocket(self, stream: _Replay, headers: dict[str, str], query: dict[str, str],
                         remote: str) -> None:
        """The handshake (bounded by ``request_timeout``: trio-websocket has no timeout of
        its own), then one conversation; it counts against ``max_conversations`` only
        once the handshake is done."""
        async with trio.open_nursery() as ws_nursery:
            try:
                ws: WebSocketConnection | None = None
                with trio.move_on_after(self.options.request_timeout):
                    request = await wrap_server_stream(
                        ws_nursery, stream, message_queue_size=4,
                        max_message_size=MAX_MESSAGE,
                        receive_buffer_size=64 * 1024)
                    with contextlib.suppress(ConnectionClosed):  # gone before the 101 left
                        ws = await request.accept()
                if ws is None:
                    return  # the client did not complete the handshake in time, or left
                opts = self.options
                limit = RateLimit(trio.current_time(), max_messages=opts.max_messages,
                                  burst_messages=opts.burst_messages)
                stream.meter = FrameMeter(limit, max_frame=MAX_MESSAGE)
                stream.opened.set()
                await self._conversation(ws, stream, limit, headers, query, remote)
            finally:
                ws_nursery.cancel_scope.cancel()

    async def _conversation(self, ws: WebSocketConnection, stream: _Replay, limit: RateLimit,
                            headers: dict[str, str], query: dict[str, str], remote: str) -> None:
        opts = self.options
        refuse: tuple[int, str] | None = None
        if not check_token(opts.token, query):
            refuse = (CLOSE_POLICY, "bad or missing token")
        elif not check_origin(headers.get("origin"), headers.get("host"),
                              allow_missing=opts.allow_no_origin, extra=opts.origins):
            refuse = (CLOSE_POLICY, "origin not allowed")
        elif len(self.conversations) >= opts.max_conversations:
            refuse = (CLOSE_TRY_LATER, "too many conversations; try again later")
        number = next(self._numbers)
        conversation = Conversation(number, remote, query={k: v for k, v in query.items() if k != "token"})
        if refuse is None:
            self.conversations[number] = conversation  # counted from the handshake on
            self._signal()

        def violated(exc: ProtocolError) -> None:
            conversation.end(exc.code, exc.reason)

        stream.on_violation = violated
        if stream.violation is not None:
            violated(stream.violation)
        try:
            if refuse is not None:
                conversation.end(*refuse)
                await _close(ws, *refuse)
            else:
                await self._converse(ws, conversation, limit)
        finally:
            self.conversations.pop(number, None)
            if conversation.close_code is not None:
                self.closes[conversation.close_code] += 1
            conversation.finished.set()
            self._signal()

    async def _converse(self, ws: WebSocketConnection, conversation: Conversation, limit: RateLimit
                        ) -> None:
        opts = self.options
        hello = await conversation.read_hello(ws, opts.hello_timeout)
        if hello is None:
            assert conversation.close_code is not None
            await _close(ws, conversation.close_code, conversation.close_reason)
            return
        try:
            agent = self.factory(ConversationInfo(conversation.number, hello, conversation.remote,
                                                  conversation.query))
        except Exception:
            logger.exception("the agent factory failed")
            conversation.end(CLOSE_SERVER_ERROR, "could not start the agent")
            await _close(ws, CLOSE_SERVER_ERROR, "could not start the agent")
            return
        if self.on_conversation is not None:
            self.on_conversation(conversation)
        await conversation.run(ws, agent, lead=opts.lead, mic_buffer=opts.mic_buffer,
                               send_timeout=opts.send_timeout, idle_timeout=opts.idle_timeout,
                               mic_timeout=opts.mic_timeout,
                               limit=limit, on_barge_in=self.barge_ins.append)


async def _respond(stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes,
                   headers: list[tuple[str, str]] | None = None) -> None:
    head = [("Content-Length", str(len(body))), ("Connection", "close"), ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"), *(headers or [("Content-Type", "text/plain")])]
    try:
        data = conn.send(h11.Response(status_code=status, headers=head))
        data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        return
    with trio.move_on_after(10):
        await stream.send_all(data)
