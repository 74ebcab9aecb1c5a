"""A Python client of trio_playout.web's protocol that plays a browser (tests and benchmark).

:class:`Player` receives the agent's audio and "plays" it on trio's clock like the
page's player: it reports ``started``, ``progress`` every ``progress_every`` s,
``finished`` at the end of a flushed segment, ``cleared`` (after ``clear_delay`` s,
during which it plays on, like an avatar) and ``paused``/``resumed``. It can be
made deaf: ``confirm_clear=False`` stops on a clear but never says so,
``report=False`` never reports anything. :class:`Mic` sends 16-bit PCM in paced
frames (silence, or given audio at given times). Everything runs under
``MockClock`` as well as in real time.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url


@dataclass
class PlayedSegment:
    number: int
    rate: int
    received: float = 0.0  # seconds
    played: float = 0.0
    flushed: bool = False
    started: bool = False
    done: str | None = None  # "finished" / "cleared" / "dropped"
    data: bytearray = field(default_factory=bytearray)


@dataclass
class Player:
    """The player side of one connection (see the module)."""

    clear_delay: float = 0.0
    confirm_clear: bool = True
    report: bool = True
    progress_every: float = 0.1
    tick: float = 0.01
    keep_audio: bool = False
    segments: dict[int, PlayedSegment] = field(default_factory=dict)
    order: list[int] = field(default_factory=list)
    paused: bool = False
    events: list[dict[str, Any]] = field(default_factory=list)
    controls: list[tuple[str, float]] = field(default_factory=list)  # (type, trio time received)
    sent: list[dict[str, Any]] = field(default_factory=list)
    underruns: float = 0.0  # seconds the player waited for audio mid-segment
    close_code: int | None = None

    def __post_init__(self) -> None:
        self._ws: WebSocketConnection | None = None
        self._current: PlayedSegment | None = None
        self._clear_at: float | None = None
        self._last = 0.0
        self._next_progress = 0.0
        self._deferred: list[str] = []
        self.changed = trio.Event()

    # -- reports ---------------------------------------------------------------------------
    async def _send(self, kind: str, **fields: Any) -> None:
        message = {"type": kind, **fields}
        self.sent.append(message)
        if self.report and self._ws is not None:
            with suppress(ConnectionClosed):
                await self._ws.send_message(json.dumps(message))

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    def unfinished(self) -> list[PlayedSegment]:
        return [self.segments[n] for n in self.order if self.segments[n].done is None]

    # -- receiving -------------------------------------------------------------------------
    async def handle(self, message: str | bytes) -> None:
        now = trio.current_time()
        if isinstance(message, bytes):
            seg = self._current
            assert seg is not None, "audio before any segment"
            seg.received += len(message) / 2 / seg.rate
            if self.keep_audio:
                seg.data += message
            self._changed()
            return
        data = json.loads(message)
        kind = data["type"]
        if kind == "event":
            self.events.append(data)
        elif kind == "segment":
            seg = PlayedSegment(data["segment"], data["sample_rate"])
            self.segments[seg.number] = seg
            self.order.append(seg.number)
            self._current = seg
        elif kind == "flush":
            self.segments[data["segment"]].flushed = True
        elif kind in ("clear", "pause", "resume"):
            self.controls.append((kind, now))
            if kind != "clear" and self._clear_at is not None:
                self._deferred.append(kind)  # a slow player acts in order: after the clear
            elif kind == "clear":
                self._clear_at = now + self.clear_delay if self.clear_delay < math.inf else math.inf
                if self.clear_delay == 0:
                    await self._do_clear()
            elif kind == "pause":
                await self._pause(now)
            else:
                await self._resume(now)
        self._changed()

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def _pause(self, now: float) -> None:
        self.advance(now)
        self.paused = True
        playing = self.unfinished()
        await self._send("paused", segment=playing[0].number if playing else None,
                         position=playing[0].played if playing else 0.0)

    async def _resume(self, now: float) -> None:
        self.advance(now)
        self.paused = False
        await self._send("resumed")

    async def _do_clear(self) -> None:
        now = trio.current_time()
        self.advance(now)
        self._clear_at = None
        for seg in self.unfinished():
            seg.done = "cleared"
            if self.confirm_clear:
                await self._send("cleared", segment=seg.number, position=seg.played)
        deferred, self._deferred = self._deferred, []
        for kind in deferred:
            await (self._pause(now) if kind == "pause" else self._resume(now))
        self._changed()

    # -- playing ---------------------------------------------------------------------------
    def advance(self, now: float) -> list[PlayedSegment]:
        """Play from the last tick to ``now``; returns the segments that finished."""
        dt, self._last = now - self._last, now
        finished: list[PlayedSegment] = []
        deaf = self._clear_at is not None and math.isinf(self._clear_at) and not self.confirm_clear
        if self.paused or deaf:
            return finished
        while dt > 1e-12:
            playing = self.unfinished()
            if not playing:
                break
            seg = playing[0]
            step = min(dt, seg.received - seg.played)
            if step > 0:
                seg.started = True
                seg.played += step
                dt -= step
            if seg.flushed and seg.played >= seg.received - 1e-9:
                seg.done = "finished"
                finished.append(seg)
                continue
            if step <= 0:
                if seg.started:
                    self.underruns += dt
                break
        return finished

    async def play(self) -> None:
        """The playback loop: ticks every ``tick`` s until cancelled."""
        self._last = trio.current_time()
        announced: set[int] = set()
        while True:
            await trio.sleep(self.tick)
            now = trio.current_time()
            if self._clear_at is not None and now >= self._clear_at:
                await self._do_clear()
            finished = self.advance(now)
            for seg in self.segments.values():
                if seg.started and seg.number not in announced:
                    announced.add(seg.number)
                    await self._send("started", segment=seg.number)
            for seg in finished:
                await self._send("finished", segment=seg.number, position=seg.played)
            if now >= self._next_progress:
                self._next_progress = now + self.progress_every
                playing = self.unfinished()
                if playing and playing[0].started and not self.paused:
                    await self._send("progress", segment=playing[0].number, position=playing[0].played)


@dataclass
class Mic:
    """Paced microphone frames: silence, with ``audio`` (``(at, pcm bytes)``) placed in it."""

    sample_rate: int = 16000
    frame: float = 0.02
    audio: Sequence[tuple[float, bytes]] = ()
    sent_frames: int = 0

    def chunk(self, index: int) -> bytes:
        n = round(self.frame * self.sample_rate)
        a, b = index * n, (index + 1) * n
        out = bytearray(2 * n)
        for at, pcm in self.audio:
            start = round(at * self.sample_rate)
            end = start + len(pcm) // 2
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                out[2 * (lo - a):2 * (hi - a)] = pcm[2 * (lo - start):2 * (hi - start)]
        return bytes(out)

    async def run(self, ws: WebSocketConnection) -> None:
        t0 = trio.current_time()
        i = 0
        while True:
            await trio.sleep_until(t0 + (i + 1) * self.frame)
            try:
                await ws.send_message(self.chunk(i))
            except ConnectionClosed:
                return
            self.sent_frames += 1
            i += 1


@dataclass
class Client:
    ws: WebSocketConnection
    player: Player
    mic: Mic | None

    @property
    def close_code(self) -> int | None:
        reason = self.ws.closed
        return reason.code if reason is not None else None

    async def wait_for(self, predicate: Any, limit: float = 30.0) -> None:
        """Wait (on trio's clock) until ``predicate()`` holds; TooSlowError after ``limit``."""
        with trio.fail_after(limit):
            while not predicate():
                await self.player.changed.wait()


@asynccontextmanager
async def connect(url: str, *, player: Player | None = None, mic: Mic | None = None,
                  hello: bool = True, sample_rate: int = 16000,
                  extra_headers: list[tuple[bytes, bytes]] | None = None) -> AsyncIterator[Client]:
    """Open a websocket to ``url``, say hello, and run the player (and mic) until the block ends."""
    player = player or Player()
    async with open_websocket_url(url, extra_headers=extra_headers, max_message_size=4 * 2**20) as ws, \
            trio.open_nursery() as nursery:
        player._ws = ws
        if hello:
            await ws.send_message(json.dumps({"type": "hello", "protocol": 1, "sample_rate": sample_rate}))

        async def receive() -> None:
            try:
                while True:
                    await player.handle(await ws.get_message())
            except ConnectionClosed as exc:
                player.close_code = exc.reason.code if exc.reason else None
                player.changed.set()

        nursery.start_soon(receive)
        nursery.start_soon(player.play)
        if mic is not None:
            nursery.start_soon(mic.run, ws)
        try:
            yield Client(ws, player, mic)
        finally:
            nursery.cancel_scope.cancel()


# -- running a server in a test ---------------------------------------------------------------

@dataclass
class Served:
    """A :class:`~trio_playout.web.WebServer` on 127.0.0.1 (port 0) and the conversations it ran."""

    server: Any
    conversations: list[Any] = field(default_factory=list)
    arrived: trio.Event = field(default_factory=trio.Event)

    def add(self, conversation: Any) -> None:
        self.conversations.append(conversation)
        self.arrived.set()
        self.arrived = trio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.port}/ws"

    async def leftover_tasks(self) -> int:
        """Tasks anywhere in the server's task tree besides its listener loops: one per
        connection still being handled, and everything those started (counted once every
        task is blocked, so a handler that is returning is not counted)."""
        assert self.server.nursery is not None
        await trio.testing.wait_all_tasks_blocked()

        def walk(nursery: trio.Nursery) -> list[trio.lowlevel.Task]:
            tasks = list(nursery.child_tasks)
            for task in nursery.child_tasks:
                for child in task.child_nurseries:
                    tasks += walk(child)
            return tasks

        listeners = ("serve_listeners", "_serve_one_listener")
        return sum(1 for t in walk(self.server.nursery) if not t.name.endswith(listeners))

    async def conversation(self, index: int = -1, limit: float = 10.0) -> Any:
        """The ``index``-th conversation once its session is open."""
        with trio.fail_after(limit):
            while not self.conversations or (index >= 0 and len(self.conversations) <= index):
                await self.arrived.wait()
        conv = self.conversations[index]
        with trio.fail_after(limit):
            await conv.started.wait()
        return conv


async def serve(nursery: trio.Nursery, factory: Any, options: Any = None) -> Served:
    from trio_playout.web import WebServer

    served = Served(None)
    served.server = WebServer(factory, options, on_conversation=served.add)
    await nursery.start(served.server.serve, "127.0.0.1", 0)
    return served


# -- a raw websocket client, for what a well-behaved library would never send ----------------

async def raw_websocket(port: int, *, target: str = "/ws", headers: Sequence[tuple[str, str]] = ()
                        ) -> trio.SocketStream:
    """Open ``target`` with a hand-written upgrade request; returns the stream after the 101."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    head = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
            *(f"{k}: {v}" for k, v in headers)]
    await stream.send_all(("\r\n".join(head) + "\r\n\r\n").encode())
    response = b""
    while b"\r\n\r\n" not in response:
        data = await stream.receive_some(4096)
        if not data:
            raise ConnectionError(f"closed during the handshake: {response!r}")
        response += data
    assert response.startswith(b"HTTP/1.1 101"), response
    return stream


def frame_header(opcode: int, length: int, *, fin: bool = True) -> bytes:
    """A client frame header with a zero mask (the payload goes as it is)."""
    first = (0x80 if fin else 0) | opcode
    if length < 126:
        head = bytes([first, 0x80 | length])
    elif length < 2**16:
        head = bytes([first, 0x80 | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + length.to_bytes(8, "big")
    return head + b"\0\0\0\0"


async def read_close_code(stream: trio.SocketStream) -> int | None:
    """Read server frames until its close frame; its code (None if the TCP closed first)."""
    buf = b""
    while True:
        while len(buf) >= 2:
            length = buf[1] & 0x7F
            at = 2
            if length == 126:
                length, at = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                length, at = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < at + length:
                break
            opcode, payload, buf = buf[0] & 0x0F, buf[at:at + length], buf[at + length:]
            if opcode == 0x8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:
            return None
        if not data:
            return None
        buf += data
