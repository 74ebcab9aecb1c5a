"""trio_playout.web against hostile and broken clients, each with a healthy conversation alongside.

Every test checks the close code the bad client gets, that a healthy conversation
running at the same time completes with the right history, and that nothing is
left running in the server's nursery afterwards. Virtual time, real sockets.
"""

from __future__ import annotations

import contextlib
import json
import os
import tracemalloc
from collections.abc import Awaitable, Callable

import pytest
import trio

# In CI (CI=true) the web extra is installed: a missing trio-websocket fails, never skips.
if os.environ.get("CI") == "true":
    import trio_websocket  # noqa: F401
else:
    pytest.importorskip("trio_websocket")

from trio_websocket import ConnectionClosed, open_websocket_url

from trio_playout.testing import FakeTTS, ScriptedLLM, ScriptedSTT, ScriptedVAD
from trio_playout.web import Agent, ConversationInfo, ServerOptions, WebServer

from .web_client import (
    Mic,
    Player,
    Served,
    connect,
    frame_header,
    raw_websocket,
    read_close_code,
    serve,
)

GREETING = "hello there this is the healthy conversation"  # 7 words, 2.33 s


def factory(info: ConversationInfo) -> Agent:
    # the healthy conversation's greeting is short; any other connection gets a long one
    return Agent(llm=ScriptedLLM([]), tts=FakeTTS(), vad=ScriptedVAD(), stt=ScriptedSTT(),
                 greeting=GREETING if info.number == 1 else " ".join(["long"] * 600))


async def healthy(served: Served, ready: trio.Event | None = None) -> None:
    """A conversation that must go on: its greeting plays whole, history says so."""
    async with connect(served.url, mic=Mic()) as client:
        if ready is not None:
            ready.set()
        await client.wait_for(lambda: any(m["type"] == "finished" for m in client.player.sent))
        await client.wait_for(lambda: client.player.events_named("history"))
        assert client.player.events_named("history")[-1]["items"] == [
            {"role": "assistant", "text": GREETING, "interrupted": False}]


async def alongside(bad: Callable[[Served], Awaitable[None]], options: ServerOptions | None = None
                    ) -> Served:
    """Run ``bad`` while a healthy conversation runs; then check nothing is left."""
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, factory, options)
        async with trio.open_nursery() as both:
            ready = trio.Event()
            both.start_soon(healthy, served, ready)
            await ready.wait()
            await bad(served)
        with trio.fail_after(10):
            await served.server.wait_until(lambda: not served.server.connections)
        assert not served.server.conversations
        assert await served.leftover_tasks() == 0
        nursery.cancel_scope.cancel()
    return served


async def close_code_of(url: str, *messages: str | bytes, headers: list[tuple[bytes, bytes]] | None = None
                        ) -> int | None:
    """Send ``messages`` and return the code the server closes with."""
    async with open_websocket_url(url, extra_headers=headers) as ws:
        try:
            for message in messages:
                await ws.send_message(message)
            with trio.fail_after(20):
                while True:
                    await ws.get_message()
        except ConnectionClosed as exc:
            return int(exc.reason.code) if exc.reason else None
    return None


HELLO = json.dumps({"type": "hello", "protocol": 1, "sample_rate": 16000})


@pytest.mark.parametrize(("messages", "code"), [
    ((b"\0\0",), 1003),  # binary before hello
    ((HELLO, b"\0\0\0"), 1007),  # odd-length PCM
    ((HELLO, bytes(2 * 16000 + 2)), 1009),  # more than one second of PCM
    (("{not json",), 1007),
    (("[1, 2]",), 1007),
    ((json.dumps({"type": "started", "segment": 1}),), 1007),  # no hello first
    ((HELLO, "{nope"), 1007),
    ((HELLO, json.dumps({"type": "dance"})), 1007),
    ((HELLO, HELLO), 1007),
    ((HELLO, json.dumps({"type": "progress", "segment": 1, "position": -1})), 1007),
    ((HELLO, json.dumps({"type": "cleared", "segment": "one", "position": 1})), 1007),
    ((json.dumps({"type": "hello", "protocol": 2, "sample_rate": 16000}),), 1007),
    ((json.dumps({"type": "hello", "protocol": 1, "sample_rate": 4000}),), 1007),
    ((HELLO, json.dumps({"type": "resumed", "pad": "x" * 5000})), 1009),
])
async def test_malformed_messages_close_with_their_code(autojump_clock: trio.abc.Clock,
                                                        messages: tuple[str | bytes, ...], code: int) -> None:
    async def bad(served: Served) -> None:
        assert await close_code_of(served.url, *messages) == code

    served = await alongside(bad)
    assert served.server.closes[code] == 1


async def test_a_10_mb_frame_is_cut_off_at_the_limit_without_buffering_it(autojump_clock: trio.abc.Clock
                                                                          ) -> None:
    async def bad(served: Served) -> None:
        stream = await raw_websocket(served.server.port)
        hello = HELLO.encode()
        await stream.send_all(frame_header(0x1, len(hello)) + hello)
        chunk = bytes(64 * 1024)
        tracemalloc.start()
        try:
            await stream.send_all(frame_header(0x2, 10 * 2**20))
            sent = 0
            with trio.move_on_after(5):
                try:
                    while sent < 10 * 2**20:
                        await stream.send_all(chunk)
                        sent += len(chunk)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            code = await read_close_code(stream)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            await stream.aclose()
        assert code == 1009
        assert peak < 3 * 2**20  # the server never held the 10 MB (it stops at 96 kB)

    await alongside(bad)


async def test_a_client_that_never_says_hello_is_closed_4408(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        start = trio.current_time()
        assert await close_code_of(served.url) == 4408
        assert 3.0 <= trio.current_time() - start < 3.5

    await alongside(bad, ServerOptions(hello_timeout=3.0))


async def test_a_slow_request_head_is_dropped(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", served.server.port)
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
        with trio.fail_after(10):
            assert await stream.receive_some(100) == b""
        await stream.aclose()

    await alongside(bad, ServerOptions(request_timeout=2.0))


async def test_token_and_origin_are_enforced_with_1008(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        url = served.url
        port = served.server.port
        assert await close_code_of(url, HELLO) == 1008  # no token
        assert await close_code_of(url + "?token=wrong", HELLO) == 1008
        evil = [(b"Origin", b"http://evil.example")]
        assert await close_code_of(url + "?token=s3cret", HELLO, headers=evil) == 1008
        # the page's own origin (and the extra one) with the token may talk
        for origin in (f"http://127.0.0.1:{port}", "https://voice.example.com"):
            async with connect(url + "?token=s3cret", extra_headers=[(b"Origin", origin.encode())]) as client:
                await client.wait_for(lambda c=client: c.player.segments)

    # (not `alongside`: its healthy conversation has no token)
    served_options = ServerOptions(token="s3cret", origins=frozenset({"https://voice.example.com"}))
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, factory, served_options)
        await bad(served)
        with trio.fail_after(10):
            await served.server.wait_until(lambda: not served.server.connections)
        assert served.server.closes[1008] == 3
        assert await served.leftover_tasks() == 0
        nursery.cancel_scope.cancel()


async def test_200_connections_at_once_the_rest_get_1013_and_one_conversation_goes_on(
        autojump_clock: trio.abc.Clock) -> None:
    codes: list[int | None] = []
    greeted = 0

    async def one(url: str, hold: trio.Event) -> None:
        nonlocal greeted
        try:
            async with connect(url) as client:
                with trio.move_on_after(30):
                    await client.wait_for(lambda: client.player.segments or client.player.close_code)
                if client.player.segments:
                    greeted += 1
                    await hold.wait()
                codes.append(client.player.close_code)
        except ConnectionClosed as exc:
            codes.append(int(exc.reason.code) if exc.reason else None)

    async def bad(served: Served) -> None:
        hold = trio.Event()
        async with trio.open_nursery() as crowd:
            for _ in range(200):
                crowd.start_soon(one, served.url, hold)
            with trio.fail_after(30):
                await served.server.wait_until(lambda: served.server.closes[1013] == 185)
                await served.server.wait_until(lambda: served.server.connections <= 16)
            assert len(served.server.conversations) <= 16
            hold.set()
        assert greeted == 15  # max_conversations (16), one of them the healthy conversation
        assert codes.count(1013) == 185

    served = await alongside(bad)
    assert served.server.closes[1013] == 185


async def test_max_connections_closes_extra_tcp_connections(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        streams = [await trio.open_tcp_stream("127.0.0.1", served.server.port) for _ in range(3)]
        with trio.fail_after(10):
            assert await streams[-1].receive_some(10) == b""  # the 4th connection (healthy is 1st)
        assert served.server.refused >= 1
        for s in streams:
            await s.aclose()

    await alongside(bad, ServerOptions(max_connections=3))


async def test_a_client_dropped_mid_speech_leaves_nothing_running(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        async with connect(served.url, mic=Mic()) as client:
            await client.wait_for(lambda: any(m["type"] == "progress" for m in client.player.sent))
            before = len(served.server.conversations)
            await client.ws._stream.aclose()
        with trio.fail_after(5):
            await served.server.wait_until(lambda: len(served.server.conversations) < before)

    served = await alongside(bad)
    assert served.server.closes[1006] == 1


async def test_an_agent_that_cannot_be_built_closes_1011(autojump_clock: trio.abc.Clock) -> None:
    def broken(info: ConversationInfo) -> Agent:
        raise RuntimeError("no model")

    async with trio.open_nursery() as nursery:
        served = await serve(nursery, broken)
        assert await close_code_of(served.url, HELLO) == 1011
        nursery.cancel_scope.cancel()


async def test_http_routes(autojump_clock: trio.abc.Clock) -> None:
    async def get(port: int, request: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        out = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                out += data
        await stream.aclose()
        return out

    async def bad(served: Served) -> None:
        port = served.server.port
        host = f"Host: 127.0.0.1:{port}".encode()
        page = await get(port, b"GET / HTTP/1.1\r\n" + host + b"\r\n\r\n")
        assert page.startswith(b"HTTP/1.1 200") and b"text/html" in page
        for target in (b"/static/../web.py", b"/static/..%2fweb.py", b"/static/x/../../web.py",
                       b"/etc/passwd", b"/static/none.js", b"/static/app.py"):
            assert (await get(port, b"GET " + target + b" HTTP/1.1\r\n" + host + b"\r\n\r\n")).startswith(
                b"HTTP/1.1 404"), target
        assert (await get(port, b"POST / HTTP/1.1\r\n" + host + b"\r\nContent-Length: 0\r\n\r\n")).startswith(
            b"HTTP/1.1 405")
        assert (await get(port, b"GET /ws HTTP/1.1\r\n" + host + b"\r\n\r\n")).startswith(b"HTTP/1.1 426")
        assert (await get(port, b"\x16\x03\x01garbage\r\n\r\n")).startswith(b"HTTP/1.1 400")

    await alongside(bad)


def test_non_loopback_without_token_is_refused() -> None:
    from trio_playout._web_cli import main

    assert main(["--host", "0.0.0.0"]) == 2

    async def run() -> None:
        with pytest.raises(ValueError, match="without a token"):
            await WebServer(factory).serve("0.0.0.0", 0)

    trio.run(run)


async def test_flooding_and_audio_faster_than_real_time_close_4429(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        resumed = json.dumps({"type": "resumed"})
        assert await close_code_of(served.url, HELLO, *[resumed] * 2500) == 4429  # burst 2000
        second = bytes(2 * 16000)
        assert await close_code_of(served.url, HELLO, second, second, second) == 4429

    served = await alongside(bad)
    assert served.server.closes[4429] == 2


async def test_a_silent_client_after_hello_is_closed_4410(autojump_clock: trio.abc.Clock) -> None:
    async def bad(served: Served) -> None:
        start = trio.current_time()
        assert await close_code_of(served.url, HELLO) == 4410
        assert 10.0 <= trio.current_time() - start < 11.0

    await alongside(bad, ServerOptions(idle_timeout=10.0))


async def test_server_shutdown_closes_conversations_1001_and_leaves_nothing(autojump_clock: trio.abc.Clock
                                                                           ) -> None:
    codes: list[int | None] = []
    async with trio.open_nursery() as outer:
        server_scope = trio.CancelScope()

        async def run_server(task_status: trio.TaskStatus[Served] = trio.TASK_STATUS_IGNORED) -> None:
            with server_scope:
                async with trio.open_nursery() as nursery:
                    task_status.started(await serve(nursery, factory))

        served = await outer.start(run_server)

        async def client() -> None:
            async with connect(served.url, mic=Mic()) as c:
                await c.wait_for(lambda: c.player.close_code is not None)
                codes.append(c.player.close_code)

        outer.start_soon(client)
        conv = await served.conversation()
        await trio.sleep(1.0)  # mid-greeting
        server_scope.cancel()
    assert codes == [1001]
    assert conv.close_code == 1001
    assert conv.finished.is_set()


async def test_audio_is_counted_from_the_handshake_not_from_the_session(autojump_clock: trio.abc.Clock
                                                                        ) -> None:
    """A client whose hello came late may send the audio it recorded meanwhile."""
    async def bad(served: Served) -> None:
        async with connect(served.url, hello=False) as client:
            await trio.sleep(3.0)
            await client.ws.send_message(HELLO)
            await served.conversation(1)
            for _ in range(4):  # 4 s of audio at once: 3 s late + the 2 s burst allowance
                await client.ws.send_message(bytes(2 * 16000))
            await trio.sleep(1.0)
            assert client.player.close_code is None
        assert served.server.closes[4429] == 0

    await alongside(bad)


async def test_a_client_that_stops_reading_is_closed_4409(autojump_clock: trio.abc.Clock) -> None:
    """It says hello, its receive buffer is 4 kB and it never reads: the agent's audio
    backs up, a send waits over send_timeout, and the connection is closed."""
    import socket

    async def bad(served: Served) -> None:
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await sock.connect(("127.0.0.1", served.server.port))
        stream = trio.SocketStream(sock)
        port = served.server.port
        head = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await stream.send_all(head.encode())
        await stream.receive_some(200)  # the 101 (and maybe a little more); then never again
        hello = HELLO.encode()
        await stream.send_all(frame_header(0x1, len(hello)) + hello)
        with trio.fail_after(600):
            await served.server.wait_until(lambda: served.server.closes[4409] == 1)
        await stream.aclose()

    await alongside(bad, ServerOptions(send_timeout=2.0))


# -- handshakes the websocket layer would refuse (review 2, finding 1) -------------------------

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BAD_UPGRADES = [
    (["Upgrade: websocket", "Connection: Upgrade"], 400),  # no key, no version
    (["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 8"],
     426),
    (["Upgrade: websocket", f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13"], 400),  # no Connection
    (["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: c2hvcnQ=",
      "Sec-WebSocket-Version: 13"], 400),  # a key that is not 16 bytes
    (["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13",
      "Content-Length: 5"], 400),  # a body that never comes
    (["Upgrade: h2c", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}", "Sec-WebSocket-Version: 13"], 426),
]


async def test_refused_upgrades_are_answered_and_give_back_their_slots(autojump_clock: trio.abc.Clock
                                                                        ) -> None:
    """Each bad upgrade is answered at once and its connection ends; after as many of
    them as there are conversation slots, a conversation still starts (the healthy one
    alongside holds a slot too)."""
    async def bad(served: Served) -> None:
        port = served.server.port
        for _ in range(3):
            for lines, status in BAD_UPGRADES:
                stream = await trio.open_tcp_stream("127.0.0.1", port)
                head = "\r\n".join(["GET /ws HTTP/1.1", f"Host: 127.0.0.1:{port}", *lines]) + "\r\n\r\n"
                await stream.send_all(head.encode())
                answer = b""
                with trio.fail_after(10):
                    while data := await stream.receive_some(4096):
                        answer += data
                assert answer.startswith(f"HTTP/1.1 {status} ".encode()), (lines, answer)
                await stream.aclose()
        with trio.fail_after(10):
            await served.server.wait_until(lambda: served.server.connections == 1)  # the healthy one
        assert await served.leftover_tasks() > 0  # (the healthy conversation's)
        assert await close_code_of(served.url, HELLO, json.dumps({"type": "dance"})) == 1007

    await alongside(bad, ServerOptions(max_conversations=2))


async def test_a_first_message_pipelined_with_the_upgrade_head_is_kept(autojump_clock: trio.abc.Clock
                                                                       ) -> None:
    async def bad(served: Served) -> None:
        port = served.server.port
        hello = HELLO.encode()
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        head = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await stream.send_all(head.encode() + frame_header(0x1, len(hello)) + hello)
        received = b""
        with trio.fail_after(2):  # the hello timeout is 5 s
            while b'"type":"session"' not in received:
                data = await stream.receive_some(65536)
                assert data, received
                received += data
        await stream.aclose()

    await alongside(bad, ServerOptions(hello_timeout=5.0))


async def test_a_page_whose_uplink_stalled_catches_up_without_being_closed(autojump_clock: trio.abc.Clock
                                                                          ) -> None:
    """20 ms frames, then nothing for 8 s (TCP holds it back), then the 8 s backlog at
    once and on at the normal pace: audio never ran ahead of real time (review 2,
    finding 3: the 1 s message window closed it with 4429)."""
    async def bad(served: Served) -> None:
        async with connect(served.url) as client:
            frame = bytes(640)
            for _ in range(50):
                await client.ws.send_message(frame)
                await trio.sleep(0.02)
            await trio.sleep(8.0)
            for _ in range(400):
                await client.ws.send_message(frame)
            for _ in range(100):
                await client.ws.send_message(frame)
                await trio.sleep(0.02)
            assert client.player.close_code is None
        assert served.server.closes[4429] == 0

    await alongside(bad)


# -- frames the websocket layer handles on its own (review 2, finding 2) -------------------------

@pytest.mark.parametrize("flood", ["ping", "empty continuations", "pings before hello"])
async def test_ping_and_continuation_floods_close_4429(autojump_clock: trio.abc.Clock, flood: str) -> None:
    """trio-websocket answers pings and gathers fragments itself, so these never reach
    the conversation as messages: the frame meter under it counts them."""
    async def bad(served: Served) -> None:
        stream = await raw_websocket(served.server.port)
        if flood != "pings before hello":
            hello = HELLO.encode()
            await stream.send_all(frame_header(0x1, len(hello)) + hello)
        if flood == "empty continuations":
            blob = frame_header(0x2, 0, fin=False) + frame_header(0x0, 0, fin=False) * 5000
        else:
            blob = (frame_header(0x9, 1) + b"p") * 5000
        with trio.move_on_after(5), contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.send_all(blob)
        with trio.fail_after(10):
            code = await read_close_code(stream)
        await stream.aclose()
        assert code == 4429

    served = await alongside(bad)
    assert served.server.closes[4429] == 1


async def test_a_frame_over_the_message_limit_is_refused_from_its_header(autojump_clock: trio.abc.Clock
                                                                        ) -> None:
    async def bad(served: Served) -> None:
        stream = await raw_websocket(served.server.port)
        hello = HELLO.encode()
        await stream.send_all(frame_header(0x1, len(hello)) + hello + frame_header(0x2, 2**63 - 1))
        with trio.fail_after(10):
            assert await read_close_code(stream) == 1009  # no payload ever came
        await stream.aclose()

    await alongside(bad)


async def test_dns_rebinding_another_host_name_is_refused_421(autojump_clock: trio.abc.Clock) -> None:
    """On loopback the server answers only for its own names (and the --origin hosts):
    a rebound evil.example sends a Host and an Origin that agree (review 2, finding 4)."""
    async def get(port: int, request: bytes) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        await stream.send_all(request)
        out = b""
        with trio.fail_after(10):
            while data := await stream.receive_some(65536):
                out += data
        await stream.aclose()
        return out

    async def bad(served: Served) -> None:
        port = served.server.port
        for host in (f"evil.example:{port}", "evil.example", "127.0.0.1", f"127.0.0.1:{port + 1}", ""):
            page = await get(port, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert page.startswith(b"HTTP/1.1 421") or (not host and page.startswith(b"HTTP/1.1 400")), host
        upgrade = (f"GET /ws HTTP/1.1\r\nHost: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                   "Sec-WebSocket-Version: 13\r\n\r\n")
        assert (await get(port, upgrade.encode())).startswith(b"HTTP/1.1 421")
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "voice.example.com",
                     f"LOCALHOST:{port}"):
            page = await get(port, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            assert page.startswith(b"HTTP/1.1 200"), host
        origin = [(b"Origin", f"http://localhost:{port}".encode())]
        async with connect(served.url.replace("127.0.0.1", "localhost"), extra_headers=origin) as client:
            await client.wait_for(lambda: client.player.segments)

    await alongside(bad, ServerOptions(origins=frozenset({"https://voice.example.com"})))


@pytest.mark.parametrize("lie", ["cleared", "finished"])
async def test_a_player_ending_a_segment_on_its_own_is_closed_1007(autojump_clock: trio.abc.Clock,
                                                                   lie: str) -> None:
    """A cleared no clear asked for, a finished before the flush (review 2, finding 6)."""
    async def bad(served: Served) -> None:
        async with connect(served.url, player=Player(report=False)) as client:
            await client.wait_for(lambda: client.player.segments)
            conv = served.conversations[-1]
            await client.ws.send_message(json.dumps({"type": lie, "segment": 1, "position": 80000}))
            await client.wait_for(lambda: client.player.close_code is not None)
            assert client.player.close_code == 1007
        with trio.fail_after(10):
            await conv.finished.wait()
        # nothing was reported played: nothing (certainly not the 600 words) was heard
        assert [m.text for m in conv.history if getattr(m, "role", None) == "assistant" and m.text] == []

    served = await alongside(bad)
    assert served.server.closes[1007] == 1


async def test_a_connection_reset_right_after_its_head_is_no_error(autojump_clock: trio.abc.Clock,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    """The head arrives, then a RST: the peer's address is gone by the time the server
    asks for it (review 2, finding 8: an OSError traceback logged per connection)."""
    import socket
    import struct

    async def bad(served: Served) -> None:
        port = served.server.port
        head = (f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        for _ in range(20):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(head)
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            await stream.aclose()

    with caplog.at_level("ERROR", logger="trio_playout.web"):
        await alongside(bad)
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == []


def test_ctrl_c_stops_the_cli_quietly_with_status_0() -> None:
    """Review 2, finding 9: on Python 3.11 Ctrl-C printed an ExceptionGroup traceback and
    exited 1 (trio's nursery wraps the KeyboardInterrupt)."""
    import signal
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "trio_playout.web", "--port", "0", "--silent-tts"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server is listening once it printed its URL
        if not line.startswith("talk to it:"):
            proc.kill()
            pytest.skip(f"the offline agent did not start: {proc.communicate(timeout=30)[1][-300:]}")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err


async def test_a_websocket_without_microphone_audio_gives_its_slot_back(autojump_clock: trio.abc.Clock
                                                                         ) -> None:
    """Reports keep the idle timeout away, but an agent that listens needs audio: no
    microphone frame for mic_timeout closes 4410 (the healthy one streams and goes on)."""
    async def bad(served: Served) -> None:
        start = trio.current_time()
        async with connect(served.url) as client:
            while client.player.close_code is None and trio.current_time() - start < 30:
                with contextlib.suppress(ConnectionClosed):
                    await client.ws.send_message(json.dumps({"type": "resumed"}))
                await trio.sleep(1.0)
            assert client.player.close_code == 4410
            assert client.ws.closed is not None and client.ws.closed.reason == "no microphone audio for 5 s"
        assert 5.0 <= trio.current_time() - start < 7.0

    served = await alongside(bad, ServerOptions(mic_timeout=5.0))
    assert served.server.closes[4410] == 1
