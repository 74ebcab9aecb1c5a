"""The browser protocol's rules as plain function calls (no event loop, no socket)."""

from __future__ import annotations

import json
import math

import pytest

from trio_playout._web_protocol import (
    CLOSE_BAD_DATA,
    CLOSE_FLOOD,
    CLOSE_INVALID,
    CLOSE_TOO_BIG,
    Cleared,
    Finished,
    Hello,
    Paused,
    Progress,
    ProtocolError,
    RateLimit,
    Resumed,
    Started,
    check_origin,
    check_pcm,
    check_token,
    is_loopback,
    parse_client_text,
    server_message,
    split_target,
    static_name,
)
from trio_playout._web_sink import Outbox, OutItem

HELLO = {"type": "hello", "protocol": 1, "sample_rate": 16000}


def parse(message: object, *, expect_hello: bool = False) -> object:
    return parse_client_text(json.dumps(message), expect_hello=expect_hello)


def code_of(text: str, *, expect_hello: bool = False) -> int:
    with pytest.raises(ProtocolError) as info:
        parse_client_text(text, expect_hello=expect_hello)
    assert len(info.value.reason.encode()) <= 123  # fits a close frame
    return info.value.code


def test_hello_is_required_first_and_only_once() -> None:
    assert parse(HELLO, expect_hello=True) == Hello(1, 16000)
    assert parse({**HELLO, "sample_rate": 48000, "extra": [1]}, expect_hello=True) == Hello(1, 48000)
    assert code_of(json.dumps({"type": "started", "segment": 1}), expect_hello=True) == CLOSE_INVALID
    assert code_of(json.dumps(HELLO)) == CLOSE_INVALID


@pytest.mark.parametrize("hello", [
    {**HELLO, "protocol": 2}, {**HELLO, "protocol": True}, {**HELLO, "protocol": "1"},
    {"type": "hello", "sample_rate": 16000}, {**HELLO, "sample_rate": 7999}, {**HELLO, "sample_rate": 48001},
    {**HELLO, "sample_rate": 16000.0}, {**HELLO, "sample_rate": True}, {**HELLO, "sample_rate": None},
])
def test_bad_hellos(hello: dict[str, object]) -> None:
    assert code_of(json.dumps(hello), expect_hello=True) == CLOSE_INVALID


def test_player_reports() -> None:
    assert parse({"type": "started", "segment": 3}) == Started(3)
    assert parse({"type": "progress", "segment": 3, "position": 1.25}) == Progress(3, 1.25)
    assert parse({"type": "finished", "segment": 3, "position": 2}) == Finished(3, 2.0)
    assert parse({"type": "cleared", "segment": 3, "position": 0}) == Cleared(3, 0.0)
    assert parse({"type": "paused", "segment": None, "position": 0}) == Paused(None, 0.0)
    assert parse({"type": "paused", "position": 0.5}) == Paused(None, 0.5)
    assert parse({"type": "paused", "segment": 2, "position": 0.5}) == Paused(2, 0.5)
    assert parse({"type": "resumed"}) == Resumed()
    assert parse({"type": "resumed", "newer_field": 1}) == Resumed()  # unknown fields are ignored


@pytest.mark.parametrize("text", [
    "", "{", "nope", "[]", "1", "null", '"hello"', '{"type": 1}', '{"kind": "started"}',
    '{"type": "dance"}', '{"type": "started"}', '{"type": "started", "segment": 0}',
    '{"type": "started", "segment": -1}', '{"type": "started", "segment": 1.5}',
    '{"type": "started", "segment": true}', '{"type": "started", "segment": "1"}',
    '{"type": "progress", "segment": 1}', '{"type": "progress", "segment": 1, "position": -0.1}',
    '{"type": "progress", "segment": 1, "position": NaN}',
    '{"type": "progress", "segment": 1, "position": Infinity}',
    '{"type": "progress", "segment": 1, "position": 1e300}',
    '{"type": "cleared", "segment": 1, "position": "1"}',
    '{"type": "finished", "segment": 1, "position": false}',
    '{"type": "paused", "segment": 0, "position": 1}',
    "[" * 100000 + "]" * 100000,
])
def test_invalid_text_is_1007_or_1009(text: str) -> None:
    assert code_of(text) in (CLOSE_INVALID, CLOSE_TOO_BIG)


def test_text_size_limit() -> None:
    assert code_of(json.dumps({"type": "resumed", "pad": "x" * 5000})) == CLOSE_TOO_BIG
    assert code_of("[" * 100000) == CLOSE_TOO_BIG


def test_pcm_rules() -> None:
    hello = Hello(1, 16000)
    check_pcm(b"", hello)
    check_pcm(bytes(640), hello)
    check_pcm(bytes(32000), hello)  # exactly one second
    for data, hello_, code in [(bytes(2), None, CLOSE_BAD_DATA), (bytes(3), hello, CLOSE_INVALID),
                               (bytes(32002), hello, CLOSE_TOO_BIG),
                               (bytes(16002), Hello(1, 8000), CLOSE_TOO_BIG)]:
        with pytest.raises(ProtocolError) as info:
            check_pcm(data, hello_)
        assert info.value.code == code


def test_origin_rules() -> None:
    assert check_origin("http://127.0.0.1:8000", "127.0.0.1:8000")
    assert check_origin("https://Voice.Example.com", "voice.example.com")
    assert not check_origin("http://127.0.0.1:8001", "127.0.0.1:8000")  # another port is another site
    assert not check_origin("http://evil.example", "127.0.0.1:8000")
    assert not check_origin("null", "127.0.0.1:8000")  # a sandboxed or file:// page
    assert not check_origin("file://", "127.0.0.1:8000")
    assert not check_origin("http://127.0.0.1:8000", None)
    assert not check_origin("http://127.0.0.1:8000/x", "127.0.0.1:8000")
    assert check_origin(None, "127.0.0.1:8000")  # not a browser
    assert not check_origin(None, "127.0.0.1:8000", allow_missing=False)
    assert check_origin("https://lb.example", "10.0.0.5:8000", extra=frozenset({"https://lb.example"}))


def test_token_rules() -> None:
    assert check_token(None, {})
    assert check_token("s3cret", {"token": "s3cret"})
    assert not check_token("s3cret", {})
    assert not check_token("s3cret", {"token": "s3cre"})
    assert not check_token("s3cret", {"token": ""})
    assert split_target("/ws?token=a%20b&x=1&token=c") == ("/ws", {"token": "a b", "x": "1"})


def test_loopback_and_static_names() -> None:
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.2", "example.com", ""))
    assert static_name("/static/app.js") == "app.js"
    assert static_name("/static/player-worklet.js") == "player-worklet.js"
    assert static_name("/static/app.css") == "app.css"
    for bad in ("/static/../x.js", "/static/a/b.js", "/static/.hidden.js", "/static/app.py", "/static/",
                "/app.js", "/static/..js", "/static/x.js/", "/static/%2e%2e.js", "/static/a\\b.js"):
        assert static_name(bad) is None, bad


def test_server_messages_are_compact_json() -> None:
    assert server_message("segment", segment=1, sample_rate=22050) == (
        '{"type":"segment","segment":1,"sample_rate":22050}')
    assert json.loads(server_message("clear")) == {"type": "clear"}


# -- the outbox's ordering rules (synchronous parts) ----------------------------------------

def kinds(outbox: Outbox) -> list[tuple[str, int | None]]:
    return [(i.kind, i.segment) for i in outbox._items]


def test_outbox_controls_jump_audio_but_not_each_other() -> None:
    box = Outbox()
    box.put(OutItem("seg", "segment", 1))
    box.put(OutItem(b"aa", "audio", 1, seconds=0.5))
    box.put(OutItem(b"bb", "audio", 1, seconds=0.5))
    box.put_control(OutItem("pause", "control"))
    box.put_control(OutItem("resume", "control"))
    assert [i.payload for i in box._items] == ["pause", "resume", "seg", b"aa", b"bb"]
    assert box.audio_seconds == pytest.approx(1.0)


def test_outbox_purge_drops_unsent_audio_of_cleared_segments_only() -> None:
    box = Outbox()
    box.put(OutItem("seg1", "segment", 1))
    box.put(OutItem(b"a", "audio", 1, seconds=0.25))
    box.put(OutItem("ev", "event"))
    box.put(OutItem("seg2", "segment", 2))
    box.put(OutItem(b"b", "audio", 2, seconds=0.25))
    box.put(OutItem("flush2", "flush", 2))
    assert box.purge({2}) == {2}
    assert kinds(box) == [("segment", 1), ("audio", 1), ("event", None)]
    assert box.audio_seconds == pytest.approx(0.25)
    assert box.purge({1, 3}) == {1}
    assert kinds(box) == [("event", None)]
    assert box.audio_seconds == 0


def test_outbox_tagged_events_replace_their_unsent_predecessor_and_text_is_bounded() -> None:
    box = Outbox(max_text=100)
    box.put(OutItem("h1", "event", tag="history"))
    box.put(OutItem("x", "event"))
    box.put(OutItem("h2", "event", tag="history"))
    assert [i.payload for i in box._items] == ["x", "h2"]
    assert not box.overflowed
    box.put(OutItem("y" * 100, "event"))
    assert box.overflowed
    assert not math.isnan(box.audio_seconds)


def test_rate_limit_is_a_bucket_of_messages_and_audio_against_the_clock() -> None:
    limit = RateLimit(100.0, max_messages=3, burst_messages=3, burst=2.0)
    for t in (100.0, 100.1, 100.2):
        limit.message(t)  # the burst; 0.2 s refilled 0.6 of a message
    with pytest.raises(ProtocolError) as info:
        limit.message(100.2)
    assert info.value.code == CLOSE_FLOOD
    steady = RateLimit(0.0, max_messages=250, burst_messages=10)
    for k in range(1, 10000):  # the sustained rate never trips it
        steady.message(k / 250)
    audio = RateLimit(0.0, burst=2.0)
    audio.pcm(0.0, 1.0)
    audio.pcm(0.0, 1.0)  # 2 s ahead of the clock: the burst allowance
    with pytest.raises(ProtocolError) as info:
        audio.pcm(0.0, 0.02)
    assert info.value.code == CLOSE_FLOOD
    steady = RateLimit(0.0, burst=0.1)
    for k in range(1, 1000):  # real-time pace never trips it
        steady.pcm(k * 0.02, 0.02)


@pytest.mark.parametrize("stall", [2.0, 5.0, 8.0, 30.0])
def test_rate_limit_lets_a_page_catch_up_after_its_uplink_stalled(stall: float) -> None:
    """A page sends 20 ms microphone frames and a progress report every 0.1 s (60 a
    second); its uplink stalls for ``stall`` s and then delivers the backlog at once
    (review 2, finding 3: a 1 s window closed it after a 4-5 s stall)."""
    limit = RateLimit(0.0)
    t = 0.0
    for k in range(60):  # one normal second
        t = k / 60
        limit.message(t)
        limit.pcm(t, 0.02 if k % 6 else 0.0)
    arrival = t + stall
    backlog = round(stall * 60)
    for _ in range(backlog):
        limit.message(arrival)
        limit.pcm(arrival, 0.02 * 50 / 60)
    for k in range(1, 600):  # and it goes on at its pace
        limit.message(arrival + k / 60)


def test_rate_limit_closes_a_flood_once_its_burst_is_spent() -> None:
    limit = RateLimit(0.0, max_messages=250, burst_messages=2000)
    with pytest.raises(ProtocolError) as info:
        for k in range(1, 100000):
            limit.message(k * 1e-5)  # 100000 a second
    assert info.value.code == CLOSE_FLOOD
    assert k < 2100


def test_turn_options_from_the_query() -> None:
    from trio_playout._web_agent import turn_options

    assert turn_options({}, False).pause_on_speech_start is False
    assert turn_options({}, True).pause_on_speech_start is True
    assert turn_options({"pause_on_speech_start": "1"}, False).pause_on_speech_start is True
    assert turn_options({"pause_on_speech_start": "true"}, False).pause_on_speech_start is True
    assert turn_options({"pause_on_speech_start": "0"}, True).pause_on_speech_start is False
    assert turn_options({"pause_on_speech_start": "maybe"}, True).pause_on_speech_start is True


def test_upgrade_heads() -> None:
    from trio_playout._web_protocol import check_upgrade

    good = {"host": "127.0.0.1:8000", "upgrade": "websocket", "connection": "keep-alive, Upgrade",
            "sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert check_upgrade(good) is None
    assert check_upgrade({**good, "upgrade": "WebSocket"}) is None
    assert check_upgrade({**good, "content-length": "0"}) is None
    changes: list[tuple[dict[str, str | None], int]] = [
                           ({"upgrade": "h2c"}, 426), ({"connection": "keep-alive"}, 400),
                           ({"sec-websocket-version": "8"}, 426), ({"sec-websocket-version": None}, 400),
                           ({"sec-websocket-key": None}, 400), ({"sec-websocket-key": "c2hvcnQ="}, 400),
                           ({"sec-websocket-key": "not base64!"}, 400), ({"host": None}, 400),
                           ({"content-length": "5"}, 400), ({"transfer-encoding": "chunked"}, 400)]
    for change, status in changes:
        head = {k: v for k, v in {**good, **change}.items() if v is not None}
        refused = check_upgrade(head)
        assert refused is not None and refused[0] == status, change


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes([first, 0x80 | n])
    elif n < 2**16:
        head = bytes([first, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([first, 0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\1\2\3\4" + payload


def test_frame_meter_counts_frames_split_anywhere() -> None:
    from trio_playout._web_protocol import FrameMeter

    wire = (client_frame(0x1, b'{"type":"hello"}') + client_frame(0x2, bytes(640)) + client_frame(0x9, b"p")
            + client_frame(0x2, bytes(70000)) + client_frame(0x1, b"{", fin=False) + client_frame(0x0, b"}"))
    for step in (1, 3, 7, 1000, len(wire)):
        meter = FrameMeter(RateLimit(0.0), max_frame=96000)
        for i in range(0, len(wire), step):
            meter.feed(0.0, wire[i:i + step])
        assert meter.frames == 6, step


def test_frame_meter_closes_floods_and_oversized_frames() -> None:
    from trio_playout._web_protocol import FrameMeter

    def code(wire: bytes, **kw: int) -> int:
        meter = FrameMeter(RateLimit(0.0, burst_messages=kw.pop("burst", 2000)), max_frame=96000, **kw)
        with pytest.raises(ProtocolError) as info:
            meter.feed(0.0, wire)
        return info.value.code

    assert code(client_frame(0x9, b"p") * 2001) == CLOSE_FLOOD  # pings are counted
    assert code(client_frame(0x2, fin=False) + client_frame(0x0, fin=False) * 64) == CLOSE_FLOOD
    assert code(bytes([0x82, 0xFF]) + (2**63 - 1).to_bytes(8, "big") + b"\0\0\0\0") == CLOSE_TOO_BIG
    assert code(client_frame(0x2, bytes(1000)) * 10, byte_burst=5000) == CLOSE_FLOOD
    page = FrameMeter(RateLimit(0.0), max_frame=96000)
    frame = client_frame(0x2, bytes(2 * 48000 // 50))  # 20 ms at 48 kHz, 50 a second for 100 s
    for k in range(5000):
        page.feed(k * 0.02, frame)
    assert page.frames == 5000


def test_loopback_host_names() -> None:
    from trio_playout._web_protocol import check_host, loopback_hosts

    hosts = loopback_hosts("127.0.0.1", 8000, frozenset({"https://voice.example.com", "null"}))
    for ok in ("127.0.0.1:8000", "localhost:8000", "[::1]:8000", "LocalHost:8000", "voice.example.com"):
        assert check_host(ok, hosts), ok
    for bad in ("evil.example:8000", "127.0.0.1", "127.0.0.1:8001", "", None, "localhost"):
        assert not check_host(bad, hosts), bad
    assert check_host("anything", None)
    assert check_host("127.0.0.2:81", loopback_hosts("127.0.0.2", 81))
    assert check_host("[::1]:81", loopback_hosts("::1", 81))
    assert check_host("localhost", loopback_hosts("127.0.0.1", 80))
