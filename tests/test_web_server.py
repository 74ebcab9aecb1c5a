"""trio_playout.web over real sockets on 127.0.0.1: the browser's player is the sink.

A Python client (tests/web_client.py) plays the browser: it plays the agent's
audio on trio's clock and reports like the page. The agent is made of
trio_playout.testing's fakes, so everything runs in virtual time (client and
server share one trio run; loopback I/O never waits on the clock).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

import pytest
import trio
import trio.testing

# In CI (CI=true) the web extra is installed: a missing trio-websocket fails, never skips.
if os.environ.get("CI") == "true":
    import trio_websocket  # noqa: F401
else:
    pytest.importorskip("trio_websocket")

import trio_playout as tp
from trio_playout.testing import FakeTTS, LLMReply, ScriptedLLM, ScriptedSTT, ScriptedVAD
from trio_playout.web import Agent, ConversationInfo, ServerOptions

from .conftest import assistant_messages
from .web_client import Mic, Player, connect, serve

LONG = " ".join(f"word{i}" for i in range(30))  # 10 s of FakeTTS audio (3 words/s)


def fake_agent(*, greeting: str | None = None, speech: Sequence[tuple[float, float]] = (),
               transcripts: Sequence[tuple[float, str]] = (), replies: Sequence[str] = (),
               sink_grace: float = 2.0, turn: tp.TurnOptions | None = None):  # type: ignore[no-untyped-def]
    def factory(info: ConversationInfo) -> Agent:
        return Agent(llm=ScriptedLLM([LLMReply(r) for r in replies]), tts=FakeTTS(),
                     vad=ScriptedVAD(speech), stt=ScriptedSTT(transcripts), turn=turn,
                     greeting=greeting, sink_grace=sink_grace)
    return factory


def heard_words(position: float, words_per_second: float = 3.0) -> int:
    """FakeTTS word i starts at i / words_per_second: the words begun before ``position``."""
    return math.ceil(position * words_per_second - 1e-6)


def reports(player: Player, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [m for m in player.sent if m["type"] == kind]


async def test_greeting_plays_and_playout_waits_for_the_players_finished(autojump_clock: trio.abc.Clock
                                                                           ) -> None:
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting="one two three four five six"))
        async with connect(served.url, mic=Mic()) as client:
            conv = await served.conversation()
            assert conv.greeting is not None
            await conv.greeting.wait_for_playout()
            done_at = trio.current_time()
            output = conv.output
            finished = [r for r in output.reports if r.counted]
            assert len(finished) == 1 and finished[0].message.position == pytest.approx(2.0, abs=1e-3)
            assert done_at >= finished[0].at  # never before the player said so
            assert reports(client.player, "finished")[0]["segment"] == 1
            assert [(m.text, m.interrupted) for m in assistant_messages(conv.session.history)] == [
                ("one two three four five six", False)]
            # the page is told: states, then the history
            await client.wait_for(lambda: client.player.events_named("history"))
            states = [e["state"] for e in client.player.events_named("agent_state")]
            assert "speaking" in states
            assert client.player.events_named("history")[-1]["items"] == [
                {"role": "assistant", "text": "one two three four five six", "interrupted": False}]
            assert client.player.underruns == 0
        with trio.fail_after(10):
            await conv.finished.wait()
        assert conv.close_code == 1000
        assert await served.leftover_tasks() == 0
        nursery.cancel_scope.cancel()


async def test_slow_player_clear_confirmed_late_heard_text_cut_at_its_report(autojump_clock: trio.abc.Clock
                                                                             ) -> None:
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting=LONG))
        async with connect(served.url, player=Player(clear_delay=0.15)) as client:
            conv = await served.conversation()
            speech = conv.greeting
            await client.wait_for(lambda: any(m["type"] == "progress" and m["position"] > 1.2
                                              for m in client.player.sent))
            interrupted_at = trio.current_time()
            speech.interrupt()
            await speech.wait_for_playout()
            done_at = trio.current_time()
            cleared = reports(client.player, "cleared")
            assert len(cleared) == 1
            report = next(r for r in conv.output.reports if r.counted)
            assert done_at >= report.at >= interrupted_at + 0.15  # after the player's report, never before
            assert done_at - interrupted_at < 0.5
            assert not speech.sink_timed_out
            position = cleared[0]["position"]
            assert 1.2 < position < 2.0
            [message] = assistant_messages(conv.session.history)
            assert message.interrupted
            assert message.text == " ".join(LONG.split()[:heard_words(position)])
            # the player dropped everything: no audio beyond what it played was kept
            assert client.player.unfinished() == []
        nursery.cancel_scope.cancel()


async def test_never_confirming_player_playout_returns_after_sink_grace(autojump_clock: trio.abc.Clock
                                                                       ) -> None:
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting=LONG, sink_grace=1.5))
        async with connect(served.url, player=Player(confirm_clear=False)) as client:
            conv = await served.conversation()
            speech = conv.greeting
            await client.wait_for(lambda: any(m["type"] == "progress" and m["position"] > 1.0
                                              for m in client.player.sent))
            interrupted_at = trio.current_time()
            speech.interrupt()
            await speech.wait_for_playout()
            waited = trio.current_time() - interrupted_at
            assert waited == pytest.approx(1.5, abs=0.02)  # sink_grace, not the audio's length
            assert speech.sink_timed_out
            assert reports(client.player, "cleared") == []
            assert client.player.controls[-1][0] == "clear"
        nursery.cancel_scope.cancel()


async def test_player_that_never_reports_is_paced_by_the_clock_and_bounded(autojump_clock: trio.abc.Clock
                                                                          ) -> None:
    """A player that says nothing at all still gets its audio in time (the lead follows the
    clock), and the speech ends sink_grace after its audio, as for any deaf sink."""
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting="one two three four five six", sink_grace=1.0))
        async with connect(served.url, player=Player(report=False)) as client:
            conv = await served.conversation()
            started = trio.current_time()
            await conv.greeting.wait_for_playout()
            took = trio.current_time() - started
            # the sink's expected_end(): the 2 s of audio sent at real-time pace, then
            # sink_grace (1 s). Without it the session counted the audio's length again
            # from the end of the capture, `lead` (0.8 s) before the end: 4.2 s.
            assert took == pytest.approx(3.0, abs=0.05)
            assert conv.greeting.sink_timed_out
            assert client.player.underruns == 0  # real-time pace kept it fed
            assert client.player.segments[1].received == pytest.approx(2.0, abs=1e-3)
        nursery.cancel_scope.cancel()


async def test_lead_bounds_audio_sent_ahead_of_the_players_reports(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting=LONG), ServerOptions(lead=0.5))
        player = Player()
        async with connect(served.url, player=player) as client:
            conv = await served.conversation()
            worst = 0.0
            while not conv.greeting.done():
                await client.player.changed.wait()
                seg = player.segments.get(1)
                if seg is not None:
                    worst = max(worst, seg.received - seg.played)
            # lead + one frame + the report interval (the player reports every 0.1 s)
            assert 0.3 < worst <= 0.5 + 0.02 + 0.1 + 0.02
            assert player.underruns == 0
        nursery.cancel_scope.cancel()


async def test_barge_in_through_the_mic_pauses_then_words_interrupt(autojump_clock: trio.abc.Clock) -> None:
    # The VAD hears the user from 1.0 s (session time) to 2.0 s; the STT's final comes at 2.2 s.
    factory = fake_agent(greeting=LONG, speech=[(1.0, 2.0)], transcripts=[(2.2, "wait stop")],
                         replies=["okay"])
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, factory)
        async with connect(served.url, player=Player(clear_delay=0.15), mic=Mic()) as client:
            conv = await served.conversation()
            await conv.greeting.wait_for_playout()
            paused = reports(client.player, "paused")
            cleared = reports(client.player, "cleared")
            assert [c for c, _ in client.player.controls][:2] == ["pause", "clear"]
            assert len(paused) == 1 and len(cleared) == 1
            # the clear came while paused: nothing more was played, the heard text ends there
            assert cleared[0]["position"] == pytest.approx(paused[0]["position"], abs=1e-9)
            position = cleared[0]["position"]
            assert 1.2 < position < 1.7
            await client.wait_for(lambda: len(assistant_messages(conv.session.history)) == 2)
            history = [(m.role, m.text, m.interrupted) for m in conv.session.history
                       if isinstance(m, tp.ChatMessage)]
            assert history == [
                ("assistant", " ".join(LONG.split()[:heard_words(position)]), True),
                ("user", "wait stop", False),
                ("assistant", "okay", False)]
            # the page got the barge-in's timeline: onset -> pause on the wire -> confirmed
            await client.wait_for(lambda: client.player.events_named("barge_in"))
            [event] = client.player.events_named("barge_in")
            assert event["action"] == "pause"
            assert 500 <= event["decided_ms"] <= 560  # min_interruption_duration after the onset
            assert event["decided_ms"] <= event["sent_ms"] <= event["stopped_ms"]
            assert 0 <= event["server_ms"] < 50
            assert client.player.events_named("user_state")
            assert [e["text"] for e in client.player.events_named("transcript")] == ["wait stop"]
        nursery.cancel_scope.cancel()


async def test_false_interruption_pauses_and_resumes_the_player(autojump_clock: trio.abc.Clock) -> None:
    factory = fake_agent(greeting=LONG, speech=[(1.0, 1.7)])
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, factory)
        async with connect(served.url, mic=Mic()) as client:
            conv = await served.conversation()
            await conv.greeting.wait_for_playout()
            controls = [c for c, _ in client.player.controls]
            assert controls == ["pause", "resume"]
            (_, paused_at), (_, resumed_at) = client.player.controls
            assert resumed_at - paused_at == pytest.approx(0.2 + 2.0, abs=0.05)  # speech end + timeout
            assert reports(client.player, "resumed")
            assert [(m.text, m.interrupted) for m in assistant_messages(conv.session.history)] == [
                (LONG, False)]
            finished = reports(client.player, "finished")
            assert finished[0]["position"] == pytest.approx(10.0, abs=1e-3)
            await client.wait_for(lambda: client.player.events_named("false_interruption"))
            assert client.player.events_named("false_interruption")[0]["resumed"] is True
        nursery.cancel_scope.cancel()


async def test_client_vanishing_mid_speech_ends_its_session_bounded(autojump_clock: trio.abc.Clock) -> None:
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting=LONG, sink_grace=5.0))
        async with connect(served.url, mic=Mic()) as client:
            conv = await served.conversation()
            await client.wait_for(lambda: any(m["type"] == "progress" and m["position"] > 1.0
                                              for m in client.player.sent))
            # the TCP connection just goes away: no close frame
            vanished_at = trio.current_time()
            await client.ws._stream.aclose()
        with trio.fail_after(10):
            await conv.finished.wait()
        assert trio.current_time() - vanished_at < 1.0  # not sink_grace: no report can come
        assert conv.close_code == 1006
        assert conv.greeting.done() and conv.greeting.sink_timed_out is False
        [message] = assistant_messages(conv.history)
        assert message.interrupted and 1.0 <= len(message.text.split()) / 3 <= 1.5
        assert await served.leftover_tasks() == 0
        assert not served.server.conversations
        nursery.cancel_scope.cancel()


async def test_the_player_reports_rule_the_heard_position_not_the_clock(autojump_clock: trio.abc.Clock
                                                                       ) -> None:
    """A player that lags the clock (it reports less than the clock says was sent) is believed."""
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting=LONG))
        player = Player()
        async with connect(served.url, player=player) as client:
            conv = await served.conversation()
            await client.wait_for(lambda: 1 in player.segments and player.segments[1].played > 0.1)
            player.paused = True  # the page stalls on its own (no pause was sent)
            await trio.sleep(1.0)
            conv.greeting.interrupt()
            await conv.greeting.wait_for_playout()
            position = reports(player, "cleared")[0]["position"]
            assert position < 0.4
            [message] = assistant_messages(conv.session.history)
            assert message.text == " ".join(LONG.split()[:heard_words(position)])
        nursery.cancel_scope.cancel()


async def test_real_silero_hears_espeak_speech_through_the_socket(autojump_clock: trio.abc.Clock) -> None:
    """The whole path with a real VAD: espeak speech sent as mic PCM at 1 s barges in
    (pause ~0.5 s of voice after the first PCM frame of the speech), no words follow,
    and the agent resumes: the page gets pause, resume, and the barge-in's timeline."""
    np = pytest.importorskip("numpy")
    pytest.importorskip("onnxruntime")
    from trio_playout.silero import SileroVAD
    try:
        from trio_playout.espeak import EspeakTTS
        speech = EspeakTTS().render_sync("Hold on, stop, I have a question.", sample_rate=16000)
    except (ImportError, tp.PlayoutError) as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    samples = np.abs(np.frombuffer(speech.data, dtype="<i2").astype(np.float64)) / 32768.0
    onset = 1.0 + float(np.nonzero(samples > 0.01)[0][0]) / 16000

    vad = SileroVAD()

    def factory(info: ConversationInfo) -> Agent:
        return Agent(llm=ScriptedLLM([]), tts=FakeTTS(), vad=vad, greeting=LONG)

    async with trio.open_nursery() as nursery:
        served = await serve(nursery, factory)
        mic = Mic(audio=[(1.0, speech.data)])
        async with connect(served.url, mic=mic) as client:
            conv = await served.conversation()
            await conv.greeting.wait_for_playout()
            assert [c for c, _ in client.player.controls] == ["pause", "resume"]
            paused_at = client.player.controls[0][1]
            assert onset + 0.45 < paused_at < onset + 0.7
            assert [(m.text, m.interrupted) for m in assistant_messages(conv.session.history)] == [
                (LONG, False)]
            await client.wait_for(lambda: client.player.events_named("barge_in"))
            [event] = client.player.events_named("barge_in")
            assert event["action"] == "pause"
            assert 450 <= event["sent_ms"] <= 700
            assert event["server_ms"] < 50
            [barge_in] = conv.barge_ins
            assert barge_in.onset_at == pytest.approx(onset, abs=0.05)
        nursery.cancel_scope.cancel()


async def test_session_message_first_and_the_query_reaches_the_factory(autojump_clock: trio.abc.Clock
                                                                      ) -> None:
    from trio_playout._web_agent import turn_options

    seen: list[ConversationInfo] = []

    def factory(info: ConversationInfo) -> Agent:
        seen.append(info)
        return Agent(llm=ScriptedLLM([]), tts=FakeTTS(), vad=ScriptedVAD(), greeting="hi there",
                     turn=turn_options(info.query, False))

    async with trio.open_nursery() as nursery:
        served = await serve(nursery, factory, ServerOptions(token="t"))
        received: list[str | bytes] = []
        for flag, expected in (("1", True), ("0", False)):
            from trio_websocket import open_websocket_url
            async with open_websocket_url(f"{served.url}?token=t&pause_on_speech_start={flag}") as ws:
                await ws.send_message('{"type":"hello","protocol":1,"sample_rate":16000}')
                received = [await ws.get_message() for _ in range(2)]
            first = json.loads(received[0])
            assert first == {"type": "session", "conversation": len(seen), "protocol": 1, "lead": 0.8,
                             "pause_on_speech_start": expected}
            assert dict(seen[-1].query) == {"pause_on_speech_start": flag}  # no token
        nursery.cancel_scope.cancel()


async def test_reports_are_believed_only_about_what_was_sent(autojump_clock: trio.abc.Clock) -> None:
    """Review 2, finding 6: a player may not end a segment the server never asked it to
    (a cleared without a clear sent, a finished before the flush was sent: 1007), and a
    position counts only up to the audio the writer really took for the socket."""
    from trio_playout._web_protocol import Cleared, Finished, Progress, ProtocolError, Started
    from trio_playout._web_sink import Outbox, WebSocketOutput

    outbox = Outbox()
    sink = WebSocketOutput(outbox, lead=0.8)
    async with tp.open_session(llm=ScriptedLLM([]), tts=FakeTTS(), output=sink) as session:
        speech = session.say(LONG)
        sent = 0.0
        with trio.fail_after(10):
            while sent < 0.4:  # the writer takes 0.4 s of audio; the rest waits in the outbox
                item = await outbox.get()
                sent += item.seconds
        await trio.sleep(0.05)
        [st] = sink._segs.values()
        assert st.segment.captured > sent + 0.3  # queued but never sent
        sink.handle_report(Started(st.segment.id))
        sink.handle_report(Progress(st.segment.id, 80000.0))
        assert st.segment.reported_position == pytest.approx(sent)
        for lie in (Cleared(st.segment.id, 1.0), Finished(st.segment.id, 1.0)):
            with pytest.raises(ProtocolError) as info:
                sink.handle_report(lie)
            assert info.value.code == 1007
        assert not st.segment.done()
        speech.interrupt()
        await trio.testing.wait_all_tasks_blocked()  # the session asked the sink to clear
        with pytest.raises(ProtocolError):  # the clear is queued, not yet sent
            sink.handle_report(Cleared(st.segment.id, 80000.0))
        item = await outbox.get()
        assert item.payload == '{"type":"clear"}'
        sink.handle_report(Cleared(st.segment.id, 80000.0))
        await speech.wait_for_playout()
        assert not speech.sink_timed_out
        [message] = assistant_messages(session.history)
        assert message.interrupted
        assert message.text == " ".join(LONG.split()[:heard_words(sent)])


class _StallingPlayer(Player):
    """Plays like the page, but its output produces nothing for 3 s from 1 s after its
    first tick (main-thread jank, a device switch); it keeps reporting progress."""

    stall_at: float | None = None

    def advance(self, now: float) -> Any:
        if self.stall_at is None and any(s.started for s in self.segments.values()):
            self.stall_at = now + 1.0
        if self.stall_at is not None and self.stall_at <= now < self.stall_at + 3.0:
            self._last = now
            return []
        if self.stall_at is not None and self.stall_at <= self._last < self.stall_at + 3.0 <= now:
            self._last = self.stall_at + 3.0
        return super().advance(now)


async def test_a_player_that_reports_but_lags_is_waited_for(autojump_clock: trio.abc.Clock) -> None:
    """A live player 3 s behind real time (its position frozen, then going on) is not a
    dead one: playout ends on its own `finished`, not sink_grace after the clock's end
    (review: done at 12.0 s with 1 s of the greeting still to play)."""
    async with trio.open_nursery() as nursery:
        served = await serve(nursery, fake_agent(greeting=LONG, sink_grace=2.0))
        player = _StallingPlayer()
        async with connect(served.url, player=player):
            conv = await served.conversation()
            await conv.greeting.wait_for_playout()
            seg = player.segments[1]
            assert seg.done and seg.played == pytest.approx(seg.received, abs=1e-3)
            assert not conv.greeting.sink_timed_out
        nursery.cancel_scope.cancel()


async def test_a_barge_in_confirmed_after_new_speech_started_keeps_its_timeline() -> None:
    """Under load the player's confirmation of a pause can come after the VAD already
    reported the end of that speech and the start of the next (a comma, a breath): the
    pause's timeline is still completed and recorded, and the next speech's own clear
    gets its own timeline."""
    from types import SimpleNamespace

    from trio_playout._web_conversation import Conversation

    conv = Conversation(number=1, remote="test")
    conv.mic = SimpleNamespace(arrival_of=lambda t: 10.0 + t, last_arrival=11.0)  # type: ignore[assignment]
    controls = SimpleNamespace()
    sink = SimpleNamespace(controls=controls, playing=lambda: True)
    sent: list[Any] = []
    seen: list[Any] = []
    conv._wire_barge_ins(sink, conv.mic, SimpleNamespace(put=sent.append), seen.append)  # type: ignore[arg-type]

    def vad(kind: tp.VADEventType, t: float, voiced: float) -> None:
        conv._on_vad(tp.VADEvent(kind, t, voiced, 0.0, 1.0))

    vad(tp.VADEventType.START_OF_SPEECH, 1.0, 0.05)
    controls.decided("pause")
    controls.on_wire("pause", 20.0)
    vad(tp.VADEventType.END_OF_SPEECH, 1.6, 0.5)
    vad(tp.VADEventType.START_OF_SPEECH, 1.8, 0.05)  # before the player confirmed the pause
    controls.confirmed("pause", 20.2)
    assert [(b.action, b.onset_at, b.sent_at, b.stopped_at) for b in conv.barge_ins] == [
        ("pause", pytest.approx(10.95), 20.0, 20.2)]
    controls.decided("clear")  # the words of the new speech interrupt
    controls.on_wire("clear", 21.0)
    controls.confirmed("clear", 21.1)
    assert [(b.action, b.onset_at, b.stopped_at) for b in conv.barge_ins] == [
        ("pause", pytest.approx(10.95), 20.2), ("clear", pytest.approx(11.75), 21.1)]
    assert seen == conv.barge_ins and len(sent) == 2
    # A second confirmation of the same action records nothing more.
    controls.confirmed("clear", 21.2)
    assert len(conv.barge_ins) == 2
