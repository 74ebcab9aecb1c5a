"""A small OpenAI-compatible HTTP server on the loopback interface, for the tests.

It speaks HTTP/1.1 through h11 on trio, so the adapters are tested over a real
socket with the real SDK, never a mock. Three endpoints:

* ``POST /v1/chat/completions`` with ``stream: true``: server-sent events carrying
  text and tool-call deltas. Text and arguments are cut every ``piece`` characters
  (mid-word, mid-key), parallel tool calls interleave their argument deltas, and the
  bytes go out in writes of ``write_size`` bytes, so an event (and a UTF-8 character)
  can be split across TCP writes.
* ``POST /v1/audio/speech`` (``response_format: pcm``): 24 kHz s16le, a tone lasting
  ``seconds_per_char`` per input character, in writes of an odd number of bytes.
* ``POST /v1/audio/transcriptions``: a multipart WAV upload, checked with ``wave``
  and answered with JSON ``{"text": ...}``.

What each endpoint answers comes from a plan (a deque of :class:`Chat`, :class:`Raw`,
:class:`Speech`, :class:`Transcribe` or :class:`Status` per path); an empty plan
gives a default answer. A planned answer can end in a fault after ``fault_after``
events: ``"reset"`` (TCP RST), ``"malformed"`` (a line that is not JSON), ``"stall"``
(nothing more, forever) or ``"error_event"`` (an SSE error object).

Every request is recorded (:attr:`requests`), and every streamed response too
(:attr:`responses`): how many events it sent, whether it finished, and whether and
when the client closed the connection first, which a watcher task learns by reading
the socket while the response streams.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import sys
import time
import wave
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, Literal

import h11
import trio

Fault = Literal["reset", "malformed", "stall", "error_event"]
SAMPLE_RATE = 24000


@dataclass
class Chat:
    text: str = ""
    tool_calls: Sequence[tuple[str, str]] = ()  # (name, arguments as JSON text, valid or not)
    piece: int = 3
    delay: float = 0.0  # between events
    fault: Fault | None = None
    fault_after: int = 0  # events sent before the fault


@dataclass
class Raw:
    """Chat-completion events exactly as given: each payload is sent as one ``data:`` line
    (JSON-encoded; a payload of type ``bytes`` as it is), then ``[DONE]``. For chunks
    of a shape the API does not promise (``"choices": null``, deltas without ``index``)."""

    events: Sequence[Any]
    fault: Fault | None = None
    fault_after: int = 0


def chunk(delta: dict[str, Any] | None = None, *, choices: Any = ..., model: str = "m") -> dict[str, Any]:
    """One chat-completion chunk with ``delta`` in choice 0 (or ``choices`` as given)."""
    if choices is ...:
        choices = [{"index": 0, "delta": delta or {}, "finish_reason": None}]
    return {"id": "chatcmpl-raw", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": choices}


@dataclass
class Speech:
    seconds_per_char: float = 0.05
    chunk_delay: float = 0.0
    fault: Fault | None = None
    fault_after: int = 0  # chunks sent before the fault


@dataclass
class Transcribe:
    text: str
    delay: float = 0.0


@dataclass
class Status:
    code: int
    retry_after: str | None = None
    message: str = "planned failure"


@dataclass
class Recorded:
    path: str
    body: Any  # parsed JSON, or for transcriptions a dict of form fields and the WAV facts
    at: float
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class ResponseLog:
    path: str
    started: float
    events: int = 0
    finished: bool = False
    client_closed_at: float | None = None
    closed_perf: float | None = None  # the same moment on time.perf_counter() (system-wide monotonic)


class _Disconnected(Exception):
    pass


@dataclass
class OpenAIServer:
    piece: int = 3
    write_size: int = 7
    port: int = 0
    requests: list[Recorded] = field(default_factory=list)
    responses: list[ResponseLog] = field(default_factory=list)
    plans: dict[str, deque[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._changed = trio.lowlevel.ParkingLot()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def plan(self, path: str, *answers: Any) -> None:
        self.plans.setdefault(path, deque()).extend(answers)

    def bodies(self, path: str) -> list[Any]:
        return [r.body for r in self.requests if r.path == path]

    async def wait_for(self, predicate: Any) -> None:
        """Wait until ``predicate()`` holds (checked after every change the server sees)."""
        while not predicate():
            await self._changed.park()

    def _touch(self) -> None:
        self._changed.unpark_all()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._connection, listeners)

    # -- HTTP plumbing -----------------------------------------------------------------
    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                request, body = await self._read_request(conn, stream)
                if request is None:
                    return
                await self._dispatch(conn, stream, request, body)
                if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (_Disconnected, trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            with trio.CancelScope(shield=True):
                await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream
                            ) -> tuple[h11.Request | None, bytes]:
        request: h11.Request | None = None
        body = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)  # b"" marks the end
                continue
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                return request, body
            elif isinstance(event, h11.ConnectionClosed):
                return None, b""

    async def _send(self, conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
        data = conn.send(event)
        if data:
            await stream.send_all(data)

    async def _json(self, conn: h11.Connection, stream: trio.SocketStream, code: int, payload: Any,
                    headers: Sequence[tuple[str, str]] = ()) -> None:
        body = json.dumps(payload).encode()
        await self._send(conn, stream, h11.Response(status_code=code, headers=[
            ("content-type", "application/json"), ("content-length", str(len(body))), *headers]))
        await self._send(conn, stream, h11.Data(data=body))
        await self._send(conn, stream, h11.EndOfMessage())

    async def _dispatch(self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request,
                        body: bytes) -> None:
        path = request.target.decode().split("?")[0]
        headers = {k.decode().lower(): v.decode() for k, v in request.headers}
        if path.endswith("/audio/transcriptions"):
            parsed: Any = _parse_form(headers.get("content-type", ""), body)
        else:
            parsed = json.loads(body) if body else None
        self.requests.append(Recorded(path, parsed, trio.current_time(), headers))
        self._touch()
        plan = self.plans.get(path)
        answer = plan.popleft() if plan else None
        if isinstance(answer, Status):
            extra = [("retry-after", answer.retry_after)] if answer.retry_after is not None else []
            await self._json(conn, stream, answer.code, {"error": {
                "message": answer.message, "type": "server_error", "code": None}}, extra)
            return
        if path.endswith("/chat/completions") and isinstance(answer, Raw):
            await self._stream(conn, stream, path, _raw_events(answer), "text/event-stream", answer,
                               self.write_size)
        elif path.endswith("/chat/completions"):
            chat = answer or self._default_chat(parsed)
            await self._stream(conn, stream, path, self._chat_events(parsed, chat), "text/event-stream", chat,
                               self.write_size)
        elif path.endswith("/audio/speech"):
            speech = answer or Speech()
            await self._stream(conn, stream, path, _tone(parsed["input"], speech), "audio/pcm", speech,
                               1 << 20)
        elif path.endswith("/audio/transcriptions"):
            t = answer or Transcribe("hello")
            await trio.sleep(t.delay)
            await self._json(conn, stream, 200, {"text": t.text})
        elif path.endswith("/_log"):  # for a benchmark in another process
            await self._json(conn, stream, 200, [
                {"path": r.path, "events": r.events, "finished": r.finished, "closed_perf": r.closed_perf}
                for r in self.responses])
        else:
            await self._json(conn, stream, 404, {"error": {"message": f"no route {path}"}})

    async def _stream(self, conn: h11.Connection, stream: trio.SocketStream, path: str,
                      chunks: AsyncIterator[bytes], content_type: str, plan: Chat | Speech | Raw,
                      write_size: int) -> None:
        log = ResponseLog(path, trio.current_time())
        self.responses.append(log)
        await self._send(conn, stream, h11.Response(status_code=200, headers=[
            ("content-type", content_type), ("cache-control", "no-cache")]))
        disconnected = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal disconnected
                try:
                    data = await stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                if not data:  # the client closed its end (no request can come mid-response)
                    log.closed_perf = time.perf_counter()
                    log.client_closed_at = trio.current_time()
                    disconnected = True
                    self._touch()
                    nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            try:
                async for data in chunks:
                    if plan.fault is not None and log.events >= plan.fault_after:
                        await self._fault(conn, stream, plan.fault)
                    for i in range(0, len(data), write_size):
                        await self._send(conn, stream, h11.Data(data=data[i:i + write_size]))
                    log.events += 1
                    self._touch()
                if plan.fault is not None:
                    await self._fault(conn, stream, plan.fault)
                await self._send(conn, stream, h11.EndOfMessage())
                log.finished = True
                self._touch()
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.client_closed_at = log.client_closed_at or trio.current_time()
                disconnected = True
                self._touch()
            except _Disconnected:  # we reset it on purpose
                disconnected = True
            nursery.cancel_scope.cancel()
        if disconnected:
            raise _Disconnected

    async def _fault(self, conn: h11.Connection, stream: trio.SocketStream, fault: Fault) -> None:
        if fault == "reset":
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            stream.socket.close()
            raise _Disconnected
        if fault == "stall":
            await trio.sleep_forever()
        line = b"data: {\"id\": \"broken\", \"choices\": [\n\n" if fault == "malformed" else (
            b'data: {"error": {"message": "planned error event", "type": "server_error"}}\n\n')
        await self._send(conn, stream, h11.Data(data=line))

    # -- chat completions -------------------------------------------------------------------
    @staticmethod
    def _default_chat(body: Any) -> Chat:
        """Echo the user; ``x_repeat`` and ``x_delay`` in the body make a long, paced reply."""
        users = [m for m in body["messages"] if m["role"] == "user"]
        said = users[-1]["content"] if users else "nothing"
        text = f"You said: {said}. " * int(body.get("x_repeat", 1))
        return Chat(text=text.rstrip(), piece=8, delay=float(body.get("x_delay", 0.0)))

    async def _chat_events(self, body: Any, chat: Chat) -> AsyncIterator[bytes]:
        model = body.get("model", "test")
        base = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model}

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            payload = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
            return b"data: " + json.dumps(payload, ensure_ascii=False).encode() + b"\n\n"

        yield event({"role": "assistant", "content": ""})
        for i in range(0, len(chat.text), chat.piece):
            await trio.sleep(chat.delay)
            yield event({"content": chat.text[i:i + chat.piece]})
        pieces = [[args[i:i + chat.piece] for i in range(0, len(args), chat.piece)] or [""]
                  for _, args in chat.tool_calls]
        for index, (name, _) in enumerate(chat.tool_calls):
            yield event({"tool_calls": [{"index": index, "id": f"call_{index}_{len(self.requests)}",
                                         "type": "function", "function": {"name": name, "arguments": ""}}]})
        for step in range(max((len(p) for p in pieces), default=0)):  # interleaved by index
            for index, parts in enumerate(pieces):
                if step < len(parts):
                    await trio.sleep(chat.delay)
                    yield event({"tool_calls": [{"index": index, "function": {"arguments": parts[step]}}]})
        yield event({}, "tool_calls" if chat.tool_calls else "stop")
        yield b"data: [DONE]\n\n"


async def _raw_events(raw: Raw) -> AsyncIterator[bytes]:
    for payload in raw.events:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        yield b"data: " + data + b"\n\n"
    yield b"data: [DONE]\n\n"


async def _tone(text: str, speech: Speech) -> AsyncIterator[bytes]:
    samples = max(1, round(len(text) * speech.seconds_per_char * SAMPLE_RATE))
    pcm = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * n / SAMPLE_RATE)))
                   for n in range(samples))
    size = 4801  # odd: samples straddle the chunks
    for i in range(0, len(pcm), size):
        if i:
            await trio.sleep(speech.chunk_delay)
        yield pcm[i:i + size]


def _parse_form(content_type: str, body: bytes) -> dict[str, Any]:
    """Multipart form fields; the WAV file becomes its facts (rate, channels, seconds, peak)."""
    boundary = content_type.split("boundary=")[1].strip('"').encode()
    fields: dict[str, Any] = {}
    for part in body.split(b"--" + boundary)[1:]:
        if part.startswith(b"--"):
            break
        head, _, value = part.strip(b"\r\n").partition(b"\r\n\r\n")
        disposition = next(line for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-disposition"))
        name = disposition.split(b'name="')[1].split(b'"')[0].decode()
        if b"filename=" in disposition:
            with wave.open(BytesIO(value)) as w:
                frames = w.readframes(w.getnframes())
                samples = struct.unpack(f"<{len(frames) // 2}h", frames)
                fields[name] = {"rate": w.getframerate(), "channels": w.getnchannels(),
                                "width": w.getsampwidth(), "seconds": w.getnframes() / w.getframerate(),
                                "peak": max((abs(s) for s in samples), default=0)}
        else:
            fields[name] = value.decode()
    return fields


async def _main(port: int, write_size: int) -> None:
    server = OpenAIServer(write_size=write_size, port=port)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        print(server.port, flush=True)  # the parent reads the port from the first line


if __name__ == "__main__":  # python tests/openai_server.py [port] [write_size]
    trio.run(_main, int(sys.argv[1]) if len(sys.argv) > 1 else 0,
             int(sys.argv[2]) if len(sys.argv) > 2 else 1 << 16)
