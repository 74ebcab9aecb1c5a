"""The browser protocol of :mod:`trio_playout.web`, as pure functions (no I/O, no event loop).

Everything a client can send is parsed and checked here, and every close code is
decided here, so the rules are tested with plain function calls
(``tests/test_web_protocol.py``) and the server only moves bytes. The protocol
itself is written down in :mod:`trio_playout.web`'s docstring.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import re
from dataclasses import dataclass
from typing import Any, TypeAlias
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CLOSE_BAD_DATA",
    "CLOSE_FLOOD",
    "CLOSE_IDLE",
    "CLOSE_INVALID",
    "CLOSE_NO_HELLO",
    "CLOSE_POLICY",
    "CLOSE_SERVER_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_TOO_SLOW",
    "CLOSE_TRY_LATER",
    "MAX_POSITION",
    "MAX_TEXT_MESSAGE",
    "PROTOCOL_VERSION",
    "Cleared",
    "ClientMessage",
    "Finished",
    "FrameMeter",
    "Hello",
    "Paused",
    "Progress",
    "ProtocolError",
    "RateLimit",
    "Resumed",
    "Started",
    "check_host",
    "check_origin",
    "check_pcm",
    "check_token",
    "check_upgrade",
    "is_loopback",
    "loopback_hosts",
    "max_pcm_bytes",
    "parse_client_text",
    "server_message",
    "split_target",
    "static_name",
]

PROTOCOL_VERSION = 1
MIN_RATE, MAX_RATE = 8000, 48000
MAX_TEXT_MESSAGE = 4096  # bytes of one client text message (a report is < 100)
MAX_POSITION = 24 * 3600.0  # seconds: no segment is a day long

CLOSE_BAD_DATA = 1003  # a data type we do not take (binary before hello)
CLOSE_INVALID = 1007  # invalid payload: bad JSON, unknown type, bad field, bad PCM
CLOSE_POLICY = 1008  # token or origin refused
CLOSE_TOO_BIG = 1009  # a message over the size limit
CLOSE_SERVER_ERROR = 1011  # our fault (the agent could not be built, or failed)
CLOSE_TRY_LATER = 1013  # too many conversations: try again later
CLOSE_NO_HELLO = 4408  # no hello within the hello timeout
CLOSE_TOO_SLOW = 4409  # the client stopped reading what we send (send timeout)
CLOSE_IDLE = 4410  # nothing received for the idle timeout
CLOSE_FLOOD = 4429  # too many messages, or microphone audio faster than real time


class ProtocolError(Exception):
    """A client broke the protocol: close its connection with ``code`` (and ``reason``)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason[:120]  # a close frame's reason must fit in 123 bytes


@dataclass(frozen=True)
class Hello:
    """The first message: protocol version and the rate of the microphone PCM."""

    protocol: int
    sample_rate: int


@dataclass(frozen=True)
class Started:
    """The player began playing ``segment``."""

    segment: int


@dataclass(frozen=True)
class Progress:
    """``position`` seconds of ``segment`` were played so far."""

    segment: int
    position: float


@dataclass(frozen=True)
class Finished:
    """The player played all of flushed ``segment`` (``position`` seconds)."""

    segment: int
    position: float


@dataclass(frozen=True)
class Cleared:
    """A clear stopped ``segment`` after ``position`` seconds really played."""

    segment: int
    position: float


@dataclass(frozen=True)
class Paused:
    """The player paused (at ``position`` of ``segment``; None when nothing played)."""

    segment: int | None
    position: float


@dataclass(frozen=True)
class Resumed:
    """The player resumed after a pause."""


ClientMessage: TypeAlias = Hello | Started | Progress | Finished | Cleared | Paused | Resumed
_SEGMENT_REPORTS: dict[str, type[Progress | Finished | Cleared]] = {
    "progress": Progress, "finished": Finished, "cleared": Cleared}


def _int_field(data: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ProtocolError(CLOSE_INVALID, f"{data.get('type')}: {name} must be an integer in [{lo}, {hi}]")
    return value


def _position(data: dict[str, Any]) -> float:
    value = data.get("position")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and 0 <= value <= MAX_POSITION):
        raise ProtocolError(CLOSE_INVALID,
                            f"{data.get('type')}: position must be seconds in [0, {MAX_POSITION:g}]")
    return float(value)


def parse_client_text(text: str, *, expect_hello: bool) -> ClientMessage:
    """Parse one text message of the client; :class:`ProtocolError` (1007) if it is bad.

    ``expect_hello``: the connection has not said hello yet, so only a hello is
    accepted (and a hello is refused afterwards). Unknown fields are ignored (a
    newer page may send more); unknown types are not.
    """
    if len(text) > MAX_TEXT_MESSAGE:
        raise ProtocolError(CLOSE_TOO_BIG, f"text message over {MAX_TEXT_MESSAGE} characters")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(CLOSE_INVALID, "not JSON") from None
    if not isinstance(data, dict):
        raise ProtocolError(CLOSE_INVALID, "a message must be a JSON object")
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(CLOSE_INVALID, "a message needs a string 'type'")
    if expect_hello:
        if kind != "hello":
            raise ProtocolError(CLOSE_INVALID, f"the first message must be a hello, got {kind[:20]!r}")
        protocol = data.get("protocol")
        if protocol != PROTOCOL_VERSION or isinstance(protocol, bool):
            raise ProtocolError(CLOSE_INVALID, f"unsupported protocol {protocol!r:.20}; this server speaks "
                                               f"{PROTOCOL_VERSION}")
        return Hello(PROTOCOL_VERSION, _int_field(data, "sample_rate", MIN_RATE, MAX_RATE))
    if kind == "hello":
        raise ProtocolError(CLOSE_INVALID, "hello was already said")
    if kind == "started":
        return Started(_int_field(data, "segment", 1, 2**53))
    if kind in _SEGMENT_REPORTS:
        return _SEGMENT_REPORTS[kind](_int_field(data, "segment", 1, 2**53), _position(data))
    if kind == "paused":
        segment = None if data.get("segment") is None else _int_field(data, "segment", 1, 2**53)
        return Paused(segment, _position(data))
    if kind == "resumed":
        return Resumed()
    raise ProtocolError(CLOSE_INVALID, f"unknown message type {kind[:20]!r}")


def max_pcm_bytes(sample_rate: int) -> int:
    """The largest microphone message: one second of 16-bit mono PCM."""
    return 2 * sample_rate


def check_pcm(data: bytes, hello: Hello | None) -> None:
    """Check one binary (microphone) message; :class:`ProtocolError` if it is bad.

    Before the hello a binary message is data we do not take (1003); after it the
    message must hold whole 16-bit samples (1007) and at most one second (1009).
    """
    if hello is None:
        raise ProtocolError(CLOSE_BAD_DATA, "binary data before hello")
    if len(data) > max_pcm_bytes(hello.sample_rate):
        raise ProtocolError(CLOSE_TOO_BIG, "a PCM message holds at most one second")
    if len(data) % 2:
        raise ProtocolError(CLOSE_INVALID, "PCM must be whole 16-bit samples (even length)")


class RateLimit:
    """What one client may send. Messages: a token bucket of ``burst_messages``
    refilled at ``max_messages`` per second, so a page whose uplink stalled (Wi-Fi,
    mobile: TCP holds everything back, then delivers it at once) may catch up on
    ``burst_messages`` of them (30 s of a page's ~60 a second), while a flood is
    closed once its burst is spent. Microphone audio: no faster than real time since
    ``start`` (the handshake), ``burst`` seconds ahead at most (a stall's backlog is
    not ahead: it was recorded while nothing arrived). Pure: give it the time.
    """

    def __init__(self, start: float, *, max_messages: int = 250, burst_messages: int = 2000,
                 burst: float = 2.0) -> None:
        self.start = start
        self.max_messages = max_messages
        self.burst_messages = burst_messages
        self.burst = burst
        self.audio = 0.0
        self._tokens = float(burst_messages)
        self._at = start

    def message(self, now: float, count: int = 1) -> None:
        """``count`` messages arrived at ``now``; :class:`ProtocolError` (4429) past the budget."""
        if now > self._at:
            refill = (now - self._at) * self.max_messages
            self._tokens = min(float(self.burst_messages), self._tokens + refill)
            self._at = now
        self._tokens -= count
        if self._tokens < 0:
            raise ProtocolError(CLOSE_FLOOD, f"more than {self.max_messages} messages a second "
                                             f"(beyond a burst of {self.burst_messages})")

    def pcm(self, now: float, seconds: float) -> None:
        self.audio += seconds
        if self.audio > now - self.start + self.burst:
            raise ProtocolError(CLOSE_FLOOD, "microphone audio faster than real time")


class FrameMeter:
    """Counts a client's websocket frames on the wire, before the websocket layer sees them.

    trio-websocket answers pings and gathers continuation frames on its own: a flood
    of pings or of empty continuations never reaches the conversation as messages,
    yet it costs CPU (starving other conversations) and memory (a list entry per
    fragment). Every frame of any kind takes one message from ``limit``'s bucket
    (a browser never fragments, so for a page frames are messages); a message in
    more than ``max_fragments`` frames, or bytes beyond ``byte_rate`` per second
    (after a burst of ``byte_burst``), close with 4429; a data frame over
    ``max_frame`` bytes with 1009 before its payload is read. Pure: give it the
    time and the bytes as they arrive (:meth:`feed` raises :class:`ProtocolError`).
    """

    def __init__(self, limit: RateLimit, *, max_frame: int, max_fragments: int = 64,
                 byte_rate: int = 256 * 1024, byte_burst: int = 4 * 2**20) -> None:
        self.limit = limit
        self.max_frame = max_frame
        self.max_fragments = max_fragments
        self.byte_rate = byte_rate
        self.byte_burst = byte_burst
        self.frames = 0
        self._bytes = float(byte_burst)
        self._at = limit.start
        self._head = bytearray()
        self._skip = 0  # payload bytes of the current frame still to come
        self._fragments = 0  # frames of the message being sent

    def _header_size(self) -> int:
        if len(self._head) < 2:
            return 2
        length = self._head[1] & 0x7F
        return 2 + (2 if length == 126 else 8 if length == 127 else 0) + (4 if self._head[1] & 0x80 else 0)

    def feed(self, now: float, data: bytes | bytearray | memoryview) -> None:
        if now > self._at:
            self._bytes = min(float(self.byte_burst), self._bytes + (now - self._at) * self.byte_rate)
            self._at = now
        self._bytes -= len(data)
        if self._bytes < 0:
            raise ProtocolError(CLOSE_FLOOD, f"more than {self.byte_rate} bytes a second")
        i, n = 0, len(data)
        while i < n:
            if self._skip:
                k = min(self._skip, n - i)
                self._skip -= k
                i += k
                continue
            want = self._header_size() - len(self._head)
            self._head += data[i:i + want]
            i += min(want, n - i)
            if len(self._head) >= 2 and len(self._head) == self._header_size():
                self._frame(now)

    def _frame(self, now: float) -> None:
        head = self._head
        fin, opcode, length = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
        if length == 126:
            length = int.from_bytes(head[2:4], "big")
        elif length == 127:
            length = int.from_bytes(head[2:10], "big")
        self._head = bytearray()
        self._skip = length
        self.frames += 1
        self.limit.message(now)
        if opcode < 8:  # a data frame (0: continuation)
            if length > self.max_frame:
                raise ProtocolError(CLOSE_TOO_BIG, f"a frame over {self.max_frame} bytes")
            self._fragments = self._fragments + 1 if opcode == 0 else 1
            if self._fragments > self.max_fragments:
                raise ProtocolError(CLOSE_FLOOD, f"a message in more than {self.max_fragments} frames")
            if fin:
                self._fragments = 0


# -- HTTP side ---------------------------------------------------------------------------

_LOOPBACK = re.compile(r"^(127\.\d{1,3}\.\d{1,3}\.\d{1,3}|::1|localhost)$")
_STATIC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\.(js|css|html)$")


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server on this machine."""
    return bool(_LOOPBACK.match(host.strip("[]")))


def loopback_hosts(bind: str, port: int, origins: frozenset[str] = frozenset()) -> frozenset[str]:
    """The ``Host`` values a server bound to loopback answers: this machine's own names
    for ``bind``:``port`` and the hosts of the extra ``origins`` (e.g. a proxy's name).

    Against DNS rebinding: a page on evil.example whose name then resolves to
    127.0.0.1 reaches the server with ``Host: evil.example`` and ``Origin:
    http://evil.example``, which agree, so the origin check alone lets it in.
    """
    bind = bind.strip("[]").lower()
    names = {"127.0.0.1", "localhost", "[::1]", f"[{bind}]" if ":" in bind else bind}
    hosts = {f"{name}:{port}" for name in names}
    if port == 80:
        hosts |= names
    for origin in origins:
        netloc = urlsplit(origin).netloc.lower()
        if netloc:
            hosts.add(netloc)
    return frozenset(hosts)


def check_host(host_header: str | None, allowed: frozenset[str] | None) -> bool:
    """Whether a request's ``Host`` is one of ``allowed`` (None: any host)."""
    return allowed is None or (host_header or "").strip().lower() in allowed


def split_target(target: str) -> tuple[str, dict[str, str]]:
    """The path and the (first value of each) query parameter of a request target."""
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parts.path, query


def check_token(expected: str | None, query: dict[str, str]) -> bool:
    """True when no token is required or ``?token=`` matches (compared in constant time)."""
    if expected is None:
        return True
    given = query.get("token", "")
    return hmac.compare_digest(given.encode(), expected.encode())


def check_origin(origin: str | None, host_header: str | None, *, allow_missing: bool = True,
                 extra: frozenset[str] = frozenset()) -> bool:
    """Whether a websocket's ``Origin`` may open a conversation.

    A browser always sends ``Origin``; it must be ``http(s)://`` + the ``Host`` the
    request was sent to (the page this server served), or one of ``extra`` (exact
    origins, e.g. the load balancer's public name). No ``Origin`` at all is a
    non-browser client (tests, the benchmark, a phone gateway): allowed unless
    ``allow_missing`` is False; the token still applies.
    """
    if origin is None:
        return allow_missing
    if origin in extra:
        return True
    if not host_header:
        return False
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host_header.lower() and (
        parts.path in ("", "/"))


def check_upgrade(headers: dict[str, str]) -> tuple[int, str] | None:
    """Whether a ``GET /ws`` head is a websocket upgrade we can complete: None if so, else
    the HTTP status and text to answer with (400, or 426 for another protocol version).

    Checked before trio-websocket sees the head: a head its handshake refuses would
    leave it waiting forever for a request that never comes (``headers``: lowercase
    names, the last value of each, as wsproto reads them).
    """
    if headers.get("upgrade", "").strip().lower() != "websocket":
        return 426, "Upgrade: websocket only"
    tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    if "upgrade" not in tokens:
        return 400, "Connection: Upgrade is missing"
    version = headers.get("sec-websocket-version")
    if version is None:
        return 400, "Sec-WebSocket-Version is missing"
    if version != "13":
        return 426, "only Sec-WebSocket-Version 13"
    try:
        key = base64.b64decode(headers.get("sec-websocket-key", "").strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 16:
        return 400, "Sec-WebSocket-Key must be 16 bytes in base64"
    try:
        host = headers.get("host", "").encode("latin-1").decode("idna")
    except UnicodeError:
        host = ""
    if not host:
        return 400, "Host is missing or not a host name"
    if headers.get("content-length", "0").strip() != "0" or "transfer-encoding" in headers:
        return 400, "an upgrade request has no body"
    return None


def static_name(path: str) -> str | None:
    """The file a ``/static/<name>`` path asks for, or None (a fixed pattern: no ``/``,
    no ``..``, only .js, .css and .html names; the server also checks its allow-list)."""
    if not path.startswith("/static/"):
        return None
    name = path[len("/static/"):]
    return name if _STATIC.match(name) and ".." not in name else None



def server_message(kind: str, **fields: object) -> str:
    """One text message of the server (compact JSON)."""
    return json.dumps({"type": kind, **fields}, separators=(",", ":"))
