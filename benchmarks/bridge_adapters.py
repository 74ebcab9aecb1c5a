"""What ``bridge.llm`` adds to livekit's own OpenAI plugin: first token and interrupt.

``python -m benchmarks.bridge_adapters [-n 300]`` (needs the ``bridge`` extra,
``livekit-plugins-openai`` and ``h11``). Real clock. Each configuration runs in its own
process, against the project's OpenAI-compatible test server (``tests/openai_server.py``,
h11 on trio) on the loopback interface, in that process's trio run:

* ``raw``: a hand-written HTTP/1.1 request on a trio socket (h11, keep-alive), parsed
  up to the first content delta: the floor any client pays.
* ``plugin``: livekit's ``openai.LLM.chat()`` driven from an asyncio task on the bridge
  loop, no adapter: what livekit's plugin (openai SDK, httpx, livekit's stream tasks)
  costs on trio-asyncio.
* ``adapter``: ``bridge.llm(openai.LLM(...)).stream(request)`` iterated from trio: the
  plugin plus the adapter (the pump task, the memory channel, the mapping).

Metrics, warm-up discarded, N per process, ``--rounds`` processes per configuration
run in turn: **ttft**, request start to the first text delta in the caller's hands;
**close**, the caller closing the stream after its first text delta to the server
seeing the client's end of the connection (the server reads the socket while it
streams). The adapter's own overhead is ``adapter - plugin``; on a shared machine the
difference of two p50s of a few ms is noisy, so the adapter run also reports
**handoff**: from the pump task holding the first text to the trio caller having it,
the part of the path only the adapter adds (besides building livekit's ChatContext).
Times are trio's clock (which is also the bridge loop's ``loop.time()``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from benchmarks.env import environment
from benchmarks.stats import Summary, format_ns, summarize

CONFIGS = ("raw", "plugin", "adapter")
_TESTS = Path(__file__).resolve().parents[1] / "tests"
TEXT = "word " * 400  # streams for seconds unless closed


def _server() -> Any:
    """The test server module, loaded from its file (putting tests/ on sys.path would let
    tests/bridge shadow the bridge package)."""
    import importlib.util

    module = sys.modules.get("openai_server")
    if module is None:
        spec = importlib.util.spec_from_file_location("openai_server", _TESTS / "openai_server.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["openai_server"] = module
        spec.loader.exec_module(module)
    return module


async def _raw_first_token(port: int, body: bytes, t0: float) -> tuple[float, trio.SocketStream]:
    """One request on a fresh trio socket, read up to the first text delta."""
    import h11

    stream = await trio.open_tcp_stream("127.0.0.1", port)
    h = h11.Connection(h11.CLIENT)
    request: list[Any] = [h11.Request(method="POST", target="/v1/chat/completions", headers=[
        ("host", "127.0.0.1"), ("content-type", "application/json"),
        ("content-length", str(len(body)))]), h11.Data(data=body), h11.EndOfMessage()]
    for part in request:
        await stream.send_all(h.send(part) or b"")
    buffer = b""
    while True:
        event: Any = h.next_event()
        if event is h11.NEED_DATA:
            h.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Data):
            buffer += bytes(event.data)
            if b'"content": "w' in buffer:  # the first text delta
                return trio.current_time() - t0, stream
        elif isinstance(event, h11.EndOfMessage):
            raise RuntimeError("the stream ended before a text delta")


async def _run(config: str, n: int, warmup: int) -> dict[str, list[float]]:
    from livekit.plugins import openai

    import bridge
    import trio_playout as tp

    srv = _server()
    out: dict[str, list[float]] = {"ttft": [], "close": [], "handoff": []}
    async with bridge.open_loop() as loop, trio.open_nursery() as nursery:
        server = srv.OpenAIServer()
        await nursery.start(server.serve)
        server.plan("/v1/chat/completions", *[srv.Chat(text=TEXT, piece=5, delay=0.001)
                                              for _ in range(n + warmup)])
        lk = openai.LLM(model="bench", base_url=server.base_url, api_key="bench")
        adapted = bridge.llm(lk)
        pump_got: list[float] = []
        if config == "adapter":  # when the pump task first holds text (the adapter's handoff starts)
            from bridge import _adapters

            mapping = _adapters.from_chat_chunk

            def noting(chunk: Any) -> Any:
                if chunk.delta and chunk.delta.content and not pump_got:
                    pump_got.append(trio.current_time())
                return mapping(chunk)

            _adapters.from_chat_chunk = noting
        request = tp.LLMRequest(history=[tp.ChatMessage("user", "hello")], tools=[])
        body = json.dumps({"model": "bench", "stream": True,
                           "messages": [{"role": "user", "content": "hello"}]}).encode()

        async def one() -> tuple[float, float | None]:
            before = len(server.responses)
            t0 = trio.current_time()
            closer: Callable[[], Awaitable[None]]
            if config == "raw":
                ttft, stream = await _raw_first_token(server.port, body, t0)
                closer = stream.aclose
            elif config == "plugin":
                async def first() -> tuple[float, Any]:
                    chat = lk.chat(chat_ctx=_ctx(), tools=[])
                    async for chunk in chat:
                        if chunk.delta and chunk.delta.content:
                            return trio.current_time() - t0, chat
                    raise RuntimeError("no text delta")
                ttft, chat = await bridge.aio(first)()
                closer = bridge.aio(chat.aclose)
            else:
                pump_got.clear()
                agen = adapted.stream(request)
                async for chunk in agen:
                    if isinstance(chunk, tp.TextDelta) and chunk.text:
                        break
                got = trio.current_time()
                ttft = got - t0
                handoff.append(got - pump_got[0])
                closer = agen.aclose
            log = server.responses[before]
            asked = trio.current_time()
            await closer()
            await server.wait_for(lambda: log.client_closed_at is not None or log.finished)
            return ttft, (log.client_closed_at - asked if log.client_closed_at is not None else None)

        handoff: list[float] = []
        for i in range(n + warmup):
            ttft, closed = await one()
            if i < warmup:
                handoff.clear()
            else:
                out["ttft"].append(ttft * 1e9)
                if closed is not None:
                    out["close"].append(closed * 1e9)
        out["handoff"] = [h * 1e9 for h in handoff]
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        out["pending_tasks"] = [float(len(pending))]
        nursery.cancel_scope.cancel()
    return out


def _ctx() -> Any:
    from livekit.agents import llm as lk_llm

    return lk_llm.ChatContext([lk_llm.ChatMessage(role="user", content=["hello"])])


def _row(name: str, metric: str, s: Summary | None, base: Summary | None) -> str:
    if s is None:
        return f"{name:8} {metric:6} -"
    extra = f"  x{s.p50 / base.p50:.2f} p50 vs raw" if base is not None and base.p50 > 0 else ""
    return (f"{name:8} {metric:6} N={s.n:<4} p50 {format_ns(s.p50):>9}  p99 {format_ns(s.p99):>9}  "
            f"max {format_ns(s.max):>9}{extra}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3,
                        help="processes per configuration, run in turn (raw, plugin, adapter, raw...)")
    parser.add_argument("--config", choices=CONFIGS, help=argparse.SUPPRESS)  # one process
    args = parser.parse_args(argv)
    if args.config:
        print(json.dumps(trio.run(_run, args.config, args.n, args.warmup)))
        return
    results: dict[str, dict[str, list[float]]] = {c: {} for c in CONFIGS}
    for _ in range(args.rounds):  # in turn, so a slow spell of the machine hits all three
        for config in CONFIGS:
            done = subprocess.run([sys.executable, "-m", "benchmarks.bridge_adapters", "--config", config,
                                   "-n", str(args.n), "--warmup", str(args.warmup)],
                                  capture_output=True, text=True, check=True)
            for key, values in json.loads(done.stdout.strip().splitlines()[-1]).items():
                results[config].setdefault(key, []).extend(values)
    env = environment()
    print(f"# bridge.llm vs livekit's OpenAI plugin vs raw HTTP ({env['date_utc']}, "
          f"python {env['python']}, {env['cpu_model']}, {env['cpu_usable']} CPUs)")
    for metric in ("ttft", "close"):
        base = summarize(results["raw"][metric])
        for config in CONFIGS:
            print(_row(config, metric, summarize(results[config][metric]), base))
    plugin, adapter = summarize(results["plugin"]["ttft"]), summarize(results["adapter"]["ttft"])
    if plugin is not None and adapter is not None:
        overhead = format_ns(adapter.p50 - plugin.p50)
        print(f"adapter's own ttft overhead (p50 adapter - p50 plugin): {overhead}")
    print(_row("adapter", "handoff", summarize(results["adapter"]["handoff"]), None),
          "(the pump holds the first text -> the trio caller has it)")
    print("pending asyncio tasks after the runs:",
          {c: int(sum(results[c]["pending_tasks"])) for c in CONFIGS})


if __name__ == "__main__":
    main()
