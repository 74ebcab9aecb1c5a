"""What ``trio_playout.openai`` adds on the wire path: time to first token and interrupt -> close.

``python -m benchmarks.openai_overhead [-n N]`` (needs the ``openai`` extra). Real clock.
The OpenAI-compatible server of the tests (``tests/openai_server.py``) runs in its
own process on the loopback interface, so its work does not share the client's
core. Three clients take turns, request by request, so drift hits them alike:

* **raw**: one h11 connection on a trio socket, kept alive; the request bytes are
  prepared once; the time to first token is when the first SSE event with text
  has arrived (parsed by hand). The floor: what the socket and server cost.
* **sdk**: ``openai.AsyncOpenAI`` (``max_retries=0``) on trio, ``stream=True``; the
  first chunk with content.
* **adapter**: :class:`~trio_playout.openai.OpenAILLM`; the first
  :class:`~trio_playout.TextDelta`. adapter - sdk is our own overhead (history
  mapping, timeouts, retry wrapper, the extra generator layers).

Interrupt -> closed: each client reads a long, paced reply (a chunk every 5 ms);
after the 5th text chunk the reading task is cancelled (a cancel scope, as a
session's interrupt does) at ``t0 = perf_counter()``; the server notes on the same
system-wide monotonic clock when its socket read returns end-of-file (its watcher
task reads the socket all through the response). closed - t0 is the latency. For
raw the socket is closed directly.

Numbers are wall-clock microseconds: N, min, p50, p90, p99, max, and each client's
p50/p99 over raw's. The environment is printed first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from .env import environment
from .stats import Summary, summarize

ROOT = Path(__file__).resolve().parent.parent


class RawClient:
    """A kept-alive HTTP/1.1 connection speaking just enough to stream one SSE reply."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stream: trio.SocketStream | None = None

    async def connect(self) -> trio.SocketStream:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        return self.stream

    @staticmethod
    def request(path: str, body: dict[str, Any]) -> bytes:
        data = json.dumps(body).encode()
        return (f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
                f"content-length: {len(data)}\r\n\r\n").encode() + data

    async def first_token(self, request: bytes) -> float:
        """Send, return perf_counter() at the first text event, then read to the end."""
        stream = await self.connect()
        await stream.send_all(request)
        buffer = b""
        first: float | None = None
        while not buffer.endswith(b"0\r\n\r\n"):  # the last chunk of a chunked body
            data = await stream.receive_some(65536)
            if not data:
                raise ConnectionError("server closed")
            buffer += data
            if first is None and b'"content": "' in buffer.split(b'"content": ""', 1)[-1]:
                first = time.perf_counter()
        assert first is not None
        return first

    async def read_until_text_events(self, request: bytes, events: int) -> None:
        stream = await self.connect()
        await stream.send_all(request)
        buffer = b""
        while buffer.count(b'"content": "') - buffer.count(b'"content": ""') < events:
            buffer += await stream.receive_some(65536)

    async def close(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


async def http_get_json(port: int, path: str) -> Any:
    async with await trio.open_tcp_stream("127.0.0.1", port) as stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


async def close_time(port: int, index: int) -> float:
    """When the server saw response ``index`` closed by the client (perf_counter)."""
    with trio.fail_after(5):
        while True:
            log = await http_get_json(port, "/v1/_log")
            if len(log) > index and log[index]["closed_perf"] is not None:
                return float(log[index]["closed_perf"])
            await trio.sleep(0.001)


async def measure(n: int, port: int) -> dict[str, dict[str, list[float]]]:
    import openai

    from trio_playout import LLMRequest, TextDelta
    from trio_playout._history import ChatMessage
    from trio_playout.openai import OpenAILLM

    base_url = f"http://127.0.0.1:{port}/v1"
    raw = RawClient(port)
    sdk = openai.AsyncOpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=30.0)
    llm = OpenAILLM("bench", base_url=base_url, timeout=30.0)
    messages = [{"role": "user", "content": "hi"}]
    short = {"model": "bench", "messages": messages, "stream": True}
    slow_extra = {"x_repeat": 200, "x_delay": 0.005}
    request = LLMRequest([ChatMessage("user", "hi")], [])
    short_raw = RawClient.request("/v1/chat/completions", short)
    slow_raw = RawClient.request("/v1/chat/completions", {**short, **slow_extra})
    create: Any = sdk.chat.completions.create

    async def ttft_raw() -> float:
        t0 = time.perf_counter()
        return await raw.first_token(short_raw) - t0

    async def ttft_sdk() -> float:
        t0 = time.perf_counter()
        first = None
        async with await create(model="bench", messages=messages, stream=True) as stream:
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].delta.content:
                    first = time.perf_counter()
        assert first is not None
        return first - t0

    async def ttft_adapter() -> float:
        t0 = time.perf_counter()
        first = None
        async for chunk in llm.stream(request):
            if first is None and isinstance(chunk, TextDelta):
                first = time.perf_counter()
        assert first is not None
        return first - t0

    async def cut(read: Callable[[trio.Event], Awaitable[None]], index: int, is_raw: bool) -> float:
        """Start ``read``; once it saw 5 text chunks, cancel it; closed-at-server minus the cancel."""
        fifth = trio.Event()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, fifth)
            await fifth.wait()
            t0 = time.perf_counter()
            nursery.cancel_scope.cancel()
        if is_raw:
            await raw.close()
        return await close_time(port, index) - t0

    async def read_raw(fifth: trio.Event) -> None:
        await raw.read_until_text_events(slow_raw, 5)
        fifth.set()
        await trio.sleep_forever()  # the reply goes on; the cut closes the socket

    async def read_sdk(fifth: trio.Event) -> None:
        seen = 0
        async with await create(model="bench", messages=messages, stream=True, extra_body=slow_extra) as s:
            async for chunk in s:
                if chunk.choices and chunk.choices[0].delta.content:
                    seen += 1
                    if seen == 5:
                        fifth.set()

    slow = OpenAILLM("bench", client=sdk, extra={"extra_body": slow_extra})

    async def read_adapter(fifth: trio.Event) -> None:
        seen = 0
        async for chunk in slow.stream(request):
            if isinstance(chunk, TextDelta):
                seen += 1
                if seen == 5:
                    fifth.set()

    out: dict[str, dict[str, list[float]]] = {"ttft": {}, "close": {}}
    ttft = {"raw": ttft_raw, "sdk": ttft_sdk, "adapter": ttft_adapter}
    warm = 20
    for i in range(n + warm):
        for name, fn in ttft.items():
            value = await fn()
            if i >= warm:
                out["ttft"].setdefault(name, []).append(value)
    index = 3 * (n + warm)  # the server's streamed responses so far
    for _ in range(n):
        for name, read in (("raw", read_raw), ("sdk", read_sdk), ("adapter", read_adapter)):
            out["close"].setdefault(name, []).append(await cut(read, index, name == "raw"))
            index += 1
    await raw.close()
    await sdk.close()
    await llm.aclose()
    return out


def row(name: str, s: Summary | None, base: Summary | None) -> str:
    if s is None:
        return f"{name:8} (no samples)"
    us = [f"{v * 1e6:9.0f}" for v in (s.min, s.p50, s.p90, s.p99, s.max)]
    ratios = "" if base is None else f"   x{s.p50 / base.p50:5.2f} p50  x{s.p99 / base.p99:5.2f} p99"
    return f"{name:8} {s.n:5d} " + " ".join(us) + ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=300, help="measured rounds per client (default 300)")
    args = parser.parse_args()
    print(json.dumps(environment(), indent=1))
    server = subprocess.Popen([sys.executable, str(ROOT / "tests" / "openai_server.py"), "0", "65536"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        results = trio.run(measure, args.n, port)
    finally:
        server.terminate()
        server.wait(5)
    for what, title in (("ttft", "time to first token (us)"),
                        ("close", "interrupt -> closed at the server (us)")):
        print(f"\n{title}\n{'client':8} {'N':>5} {'min':>9} {'p50':>9} {'p90':>9} {'p99':>9} {'max':>9}")
        base = summarize(results[what]["raw"])
        for name, values in results[what].items():
            s = summarize(values)
            print(row(name, s, None if name == "raw" else base))
    sdk, ada = summarize(results["ttft"]["sdk"]), summarize(results["ttft"]["adapter"])
    if sdk is not None and ada is not None:
        print(f"\nadapter's own overhead on time to first token (adapter - sdk): "
              f"p50 {(ada.p50 - sdk.p50) * 1e6:.0f} us, p99 {(ada.p99 - sdk.p99) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
