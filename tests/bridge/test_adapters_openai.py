"""livekit's own OpenAI plugin (livekit-plugins-openai), adapted with ``bridge.llm`` /
``bridge.tts`` / ``bridge.stt``, against our OpenAI-compatible server on the loopback.

Real parts only: the plugin, the ``openai`` SDK and its HTTP client run on the bridge
loop and talk over a real socket to ``tests/openai_server.py`` (h11 on trio, in the
same trio run). livekit's stream ``aclose`` methods are wrapped by a counting spy that
calls the real method.

Real clock: the SDK resolves the host and livekit's VAD infers in worker threads, and
a MockClock with autojump would jump (and fire the client's timeouts) while they run.
Nothing sleeps for synchronisation: tests wait on what the server saw
(``server.wait_for``) or on the session. The interrupt -> disconnect times printed with
``-s`` are measurements, not assertions.
"""

from __future__ import annotations

import asyncio
import json
import math
import struct
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("livekit.plugins.openai")
pytest.importorskip("h11")

from livekit.agents import APIConnectOptions
from livekit.agents import llm as lk_llm
from livekit.agents import stt as lk_stt
from livekit.agents import tts as lk_tts
from livekit.plugins import openai

import bridge
import trio_playout as tp

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/, for the server (appended: tests/bridge
# must not shadow the bridge package)
from openai_server import SAMPLE_RATE, Chat, OpenAIServer, Speech, Status, Transcribe

CHAT = "/v1/chat/completions"
SPEECH = "/v1/audio/speech"
TRANSCRIBE = "/v1/audio/transcriptions"
NO_RETRY = APIConnectOptions(max_retry=0, timeout=5.0)


@tp.function_tool
async def book_table(when: str, people: int) -> str:
    """Book a table.

    Args:
        when: the time, in words
        people: how many guests
    """
    return f"booked for {people} at {when}"


@dataclass
class Env:
    server: OpenAIServer
    loop: asyncio.AbstractEventLoop
    closes: dict[str, list[Any]] = field(default_factory=dict)

    def llm(self, **kwargs: Any) -> Any:
        return bridge.llm(openai.LLM(model="test-model", base_url=self.server.base_url, api_key="test"),
                          **kwargs)

    def tts(self, **kwargs: Any) -> Any:
        lk = openai.TTS(model="tts-1", voice="alloy", base_url=self.server.base_url, api_key="test",
                        response_format="pcm")
        return bridge.tts(lk, **kwargs)

    def pending(self) -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks(self.loop) if not t.done()]


def _spy(monkeypatch: pytest.MonkeyPatch, cls: type, calls: list[Any]) -> None:
    real: Callable[[Any], Any] = cls.aclose  # type: ignore[attr-defined]

    async def counting(self: Any) -> None:
        calls.append(self)
        await real(self)

    monkeypatch.setattr(cls, "aclose", counting)


@pytest.fixture
def closes(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Any]]:
    """Every ``aclose()`` of a livekit LLM, TTS or STT stream, by kind."""
    calls: dict[str, list[Any]] = {"llm": [], "tts": [], "stt": []}
    _spy(monkeypatch, lk_llm.LLMStream, calls["llm"])
    _spy(monkeypatch, lk_tts.ChunkedStream, calls["tts"])
    _spy(monkeypatch, lk_stt.RecognizeStream, calls["stt"])
    return calls


@asynccontextmanager
async def running(closes: dict[str, list[Any]]) -> AsyncIterator[Env]:
    with trio.fail_after(60):  # a safety net only
        async with bridge.open_loop() as loop, trio.open_nursery() as nursery:
            server = OpenAIServer()
            await nursery.start(server.serve)
            env = Env(server, loop, closes)
            yield env
            nursery.cancel_scope.cancel()


@asynccontextmanager
async def session(env: Env, *, llm: Any = None, tts: Any = None, **kwargs: Any) -> AsyncIterator[tp.Session]:
    async with tp.open_session(llm=llm or env.llm(conn_options=NO_RETRY),
                               tts=tts or env.tts(conn_options=NO_RETRY),
                               output=tp.RealtimeAudioSink(), **kwargs) as s:
        yield s


def _request(*items: tp.ChatItem) -> tp.LLMRequest:
    return tp.LLMRequest(history=list(items), tools=[book_table])


# -- the mapping over the wire ----------------------------------------------------------


async def test_llm_streams_text_and_a_tool_call(closes: dict[str, list[Any]]) -> None:
    async with running(closes) as env:
        text = "Sure, booking now. ünïcode splits too."
        env.server.plan(CHAT, Chat(text=text, tool_calls=[("book_table", '{"when": "eight", "people": 2}')],
                                   piece=2))
        llm = env.llm(instructions="You book tables.")
        chunks = [c async for c in llm.stream(_request(tp.ChatMessage("user", "a table please")))]
        assert env.pending() == []
    deltas = [c for c in chunks if isinstance(c, tp.TextDelta)]
    calls = [c for c in chunks if isinstance(c, tp.ToolCall)]
    assert "".join(d.text for d in deltas) == text
    assert len(deltas) > 5  # streamed, not collected
    assert [(c.name, json.loads(c.arguments_json())) for c in calls] == [
        ("book_table", {"when": "eight", "people": 2})]
    assert calls[0].call_id
    assert chunks[-1] is calls[0]
    (body,) = env.server.bodies(CHAT)
    assert body["stream"] is True
    assert body["messages"] == [{"role": "system", "content": "You book tables."},
                                {"role": "user", "content": "a table please"}]
    assert body["tools"] == [{"type": "function", "function": book_table.to_schema()}]
    assert len(closes["llm"]) == 1


async def test_interleaved_parallel_calls_each_get_one_output(closes: dict[str, list[Any]]) -> None:
    """livekit-plugins-openai 1.8.9 assembles argument deltas in arrival order, not by
    index: when a server interleaves two calls' deltas (the API allows it; ours does), the
    first call arrives with empty arguments and the second with both concatenated. The
    adapter cannot repair what the plugin merged; the session still gives every call
    exactly one output (an argument error where the JSON is bad) and goes on."""
    async with running(closes) as env:
        env.server.plan(CHAT, Chat(text="Booking both.", tool_calls=[
            ("book_table", '{"when": "eight", "people": 2}'),
            ("book_table", '{"when": "nine", "people": 3}')]), Chat(text="All done."))
        async with session(env, tools=[book_table]) as s:
            reply = s.generate_reply(user_input="two tables")
            await reply
            history = list(s.history)
        assert env.pending() == []
    assert reply.exception() is None
    calls = [i for i in history if isinstance(i, tp.FunctionCall)]
    outputs = [i for i in history if isinstance(i, tp.FunctionCallOutput)]
    assert len(calls) == 2
    assert sorted(o.call_id for o in outputs) == sorted(c.call_id for c in calls)
    assert history[-1] == tp.ChatMessage("assistant", "All done.")


async def test_tts_streams_the_servers_pcm_sample_exact(closes: dict[str, list[Any]]) -> None:
    async with running(closes) as env:
        env.server.plan(SPEECH, Speech(seconds_per_char=0.02))
        text = "Hello there, table for two."
        audio = [a async for a in env.tts().synthesize(text)]
        assert env.pending() == []
    assert {(a.frame.sample_rate, a.frame.num_channels) for a in audio} == {(SAMPLE_RATE, 1)}
    assert all(a.words == () for a in audio)  # OpenAI's TTS gives no word timings
    samples = round(len(text) * 0.02 * SAMPLE_RATE)
    tone = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 220 * n / SAMPLE_RATE)))
                    for n in range(samples))  # what the server sends
    assert b"".join(a.frame.data for a in audio) == tone  # nothing lost, added or reordered
    (body,) = env.server.bodies(SPEECH)
    assert body["input"] == text and body["response_format"] == "pcm"
    assert len(closes["tts"]) == 1


# -- a whole trio-native conversation -------------------------------------------------


async def test_a_spoken_turn_runs_through_livekit_plugins_in_a_trio_session(
        closes: dict[str, list[Any]]) -> None:
    """Speech in, VAD + STT + LLM with a tool + TTS out: every provider a livekit plugin."""
    silero = pytest.importorskip("livekit.plugins.silero")
    from trio_playout.espeak import EspeakTTS
    from trio_playout.testing import PacedAudio

    user = EspeakTTS().render_sync("Please book a table for two at eight.", sample_rate=16000)
    lk_vad = silero.VAD.load()
    async with running(closes) as env:
        env.server.plan(TRANSCRIBE, Transcribe("Please book a table for two at eight."))
        env.server.plan(CHAT, Chat(text="Let me book that.",
                                   tool_calls=[("book_table", '{"when": "eight", "people": 2}')]),
                        Chat(text="Done, see you at eight."))
        env.server.plan(SPEECH, Speech(seconds_per_char=0.01), Speech(seconds_per_char=0.01))
        stt = bridge.stt(openai.STT(model="whisper-1", base_url=env.server.base_url, api_key="test"),
                         vad=lk_vad)
        async with session(env, tools=[book_table], vad=bridge.vad(lk_vad), stt=stt,
                           audio_input=PacedAudio([(0.3, user)], duration=0.3 + user.duration + 1.2)
                           ) as s, s.subscribe() as events:
            async for event in events:
                if isinstance(event, tp.SpeechCreated):  # the reply to the user's turn
                    await event.speech
                    reply = event.speech
                    break
            history = list(s.history)
        assert env.pending() == []
    assert reply.exception() is None and not reply.interrupted
    (upload,) = env.server.bodies(TRANSCRIBE)
    wav = upload["file"]
    assert wav["channels"] == 1 and wav["peak"] > 1000
    # livekit pads the utterance: up to 0.3 s before (the lead) and the 0.55 s silence after
    assert user.duration <= wav["seconds"] <= user.duration + 0.3 + 0.55 + 0.2
    kinds = [type(i).__name__ for i in history]
    assert kinds == ["ChatMessage", "ChatMessage", "FunctionCall", "FunctionCallOutput", "ChatMessage"]
    assert history[0] == tp.ChatMessage("user", "Please book a table for two at eight.")
    assert history[1] == tp.ChatMessage("assistant", "Let me book that.")
    assert isinstance(history[3], tp.FunctionCallOutput) and history[3].output == "booked for 2 at eight"
    assert history[4] == tp.ChatMessage("assistant", "Done, see you at eight.")
    second = env.server.bodies(CHAT)[1]["messages"]
    assert second[-1]["role"] == "tool" and second[-1]["content"] == "booked for 2 at eight"
    assert [len(closes[k]) for k in ("llm", "tts", "stt")] == [2, 2, 1]


# -- interrupts reach the plugin's stream once ---------------------------------------------


async def test_an_interrupt_mid_reply_closes_the_llm_stream_once(
        closes: dict[str, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    async with running(closes) as env:
        server = env.server
        server.plan(CHAT, Chat(text="word " * 200, delay=0.02))  # about 7 s if never stopped
        async with session(env) as s:
            reply = s.generate_reply(user_input="talk to me")
            await server.wait_for(lambda: bool(server.responses) and server.responses[-1].events >= 10)
            asked = trio.current_time()
            s.interrupt()
            await reply
            log = server.responses[-1]
            await server.wait_for(lambda: log.client_closed_at is not None)
            assert log.client_closed_at is not None
            history = list(s.history)
        assert env.pending() == []
    assert reply.interrupted and reply.exception() is None
    assert not log.finished and log.events < 100
    assert len(closes["llm"]) == 1
    assert history[0] == tp.ChatMessage("user", "talk to me")
    with capsys.disabled():
        print(f"\n[bridge.llm] interrupt -> server saw the disconnect: "
              f"{(log.client_closed_at - asked) * 1000:.2f} ms")


async def test_an_interrupt_mid_synthesis_closes_the_tts_stream_once(
        closes: dict[str, list[Any]], capsys: pytest.CaptureFixture[str]) -> None:
    text = "This one sentence is long enough to take a few seconds to synthesize and to play."
    async with running(closes) as env:
        server = env.server
        server.plan(SPEECH, Speech(seconds_per_char=0.05, chunk_delay=0.05))  # about 2 s to stream
        async with session(env) as s:
            speech = s.say(text)
            await server.wait_for(lambda: any(r.path == SPEECH and r.events >= 3 for r in server.responses))
            asked = trio.current_time()
            s.interrupt()
            await speech
            (log,) = [r for r in server.responses if r.path == SPEECH]
            await server.wait_for(lambda: log.client_closed_at is not None)
            assert log.client_closed_at is not None
            history = list(s.history)
        assert env.pending() == []
    assert speech.interrupted and speech.exception() is None
    assert not log.finished
    assert len(closes["tts"]) == 1
    # no word timings from this plugin: the sentence sent to the TTS counts as heard
    assert history == [tp.ChatMessage("assistant", text, interrupted=True)]
    with capsys.disabled():
        print(f"\n[bridge.tts] interrupt -> server saw the disconnect: "
              f"{(log.client_closed_at - asked) * 1000:.2f} ms")


# -- plugin errors become typed errors; the session goes on ---------------------------------


@pytest.mark.parametrize(("answer", "error", "retryable"), [
    (Status(500), tp.ProviderResponseError, True),
    (Status(400), tp.ProviderResponseError, False),
    (Status(429, retry_after="3"), tp.ProviderRateLimitError, True),
    (Chat(text="Half a sen", fault="malformed", fault_after=2), tp.ProviderResponseError, False),
    (Chat(text="Half a sen", fault="stall", fault_after=2), tp.ProviderTimeoutError, False),
])
async def test_an_llm_failure_is_typed_and_the_session_goes_on(
        closes: dict[str, list[Any]], answer: Any, error: type[tp.ProviderError], retryable: bool) -> None:
    async with running(closes) as env:
        env.server.plan(CHAT, answer)  # then the default answer: "You said: ..."
        llm = env.llm(conn_options=APIConnectOptions(max_retry=0, timeout=0.5))
        async with session(env, llm=llm) as s:
            failed = s.generate_reply(user_input="first")
            await failed
            ok = s.generate_reply(user_input="second")
            await ok
            history = list(s.history)
        assert env.pending() == []
    exc = failed.exception()
    assert type(exc) is error, repr(exc)
    assert exc.provider == "livekit" and exc.retryable is retryable
    assert isinstance(exc.__cause__, Exception)  # livekit's own error, kept
    if isinstance(answer, Status):
        assert exc.status_code == answer.code
    assert ok.exception() is None
    assert history[0] == tp.ChatMessage("user", "first")  # the user's words are kept
    assert history[-2:] == [tp.ChatMessage("user", "second"),
                            tp.ChatMessage("assistant", "You said: second.")]
    assert len(closes["llm"]) == 2


async def test_livekit_retries_before_the_first_chunk_inside_the_plugin(closes: dict[str, list[Any]]) -> None:
    async with running(closes) as env:
        env.server.plan(CHAT, Status(503))
        llm = env.llm(conn_options=APIConnectOptions(max_retry=1, retry_interval=0.0, timeout=5.0))
        async with session(env, llm=llm) as s:
            reply = s.generate_reply(user_input="hello")
            await reply
        assert env.pending() == []
    assert reply.exception() is None
    assert len(env.server.bodies(CHAT)) == 2
    assert len(closes["llm"]) == 1  # one livekit stream, two HTTP attempts inside it


async def test_a_tts_failure_is_typed_and_the_session_goes_on(closes: dict[str, list[Any]]) -> None:
    async with running(closes) as env:
        env.server.plan(SPEECH, Status(500), Speech(seconds_per_char=0.01))
        async with session(env) as s:
            failed = s.say("This fails.")
            await failed
            ok = s.say("This works.")
            await ok
            history = list(s.history)
        assert env.pending() == []
    exc = failed.exception()
    assert isinstance(exc, tp.ProviderResponseError) and exc.status_code == 500
    assert ok.exception() is None
    assert history[-1] == tp.ChatMessage("assistant", "This works.")
    assert len(closes["tts"]) == 2


# -- speech to text -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def utterance() -> tp.AudioFrame:
    try:
        from trio_playout.espeak import EspeakTTS
        tts = EspeakTTS()
    except tp.PlayoutError as exc:
        pytest.skip(f"espeak-ng unavailable: {exc}")
    frame: tp.AudioFrame = tts.render_sync("Book a table for two.", sample_rate=16000)
    return frame


async def _mic(speech: tp.AudioFrame, lead: float = 0.5, tail: float = 1.2) -> AsyncIterator[tp.AudioFrame]:
    """The speech between silences, in 20 ms frames, as fast as the stream takes them."""
    rate = speech.sample_rate
    pcm = (tp.AudioFrame.silence(lead, sample_rate=rate).data + speech.data
           + tp.AudioFrame.silence(tail, sample_rate=rate).data)
    step = 2 * rate // 50
    for i in range(0, len(pcm), step):
        await trio.lowlevel.checkpoint()
        yield tp.AudioFrame(pcm[i:i + step], rate)


def _whisper(env: Env, **kwargs: Any) -> Any:
    silero = pytest.importorskip("livekit.plugins.silero")
    lk = openai.STT(model="whisper-1", base_url=env.server.base_url, api_key="test")
    return bridge.stt(lk, vad=silero.VAD.load(), **kwargs)


async def test_a_non_streaming_stt_transcribes_each_utterance(
        closes: dict[str, list[Any]], utterance: tp.AudioFrame) -> None:
    async with running(closes) as env:
        env.server.plan(TRANSCRIBE, Transcribe("book a table for two"))
        transcripts = [t async for t in _whisper(env).stream(_mic(utterance))]
        assert env.pending() == []
    assert transcripts == [tp.Transcript("book a table for two", final=True)]
    (upload,) = env.server.bodies(TRANSCRIBE)
    assert upload["file"]["rate"] == 16000 and upload["file"]["peak"] > 1000
    # livekit's Silero sends the utterance with up to 0.5 s of audio before it (prefix
    # padding) and the 0.55 s of silence that ended it
    assert utterance.duration <= upload["file"]["seconds"] <= utterance.duration + 0.5 + 0.55 + 0.2
    assert len(closes["stt"]) == 1


async def test_an_stt_failure_is_typed(closes: dict[str, list[Any]], utterance: tp.AudioFrame) -> None:
    async with running(closes) as env:
        env.server.plan(TRANSCRIBE, Status(500))
        stt = _whisper(env, conn_options=NO_RETRY)
        with pytest.raises(tp.ProviderResponseError) as caught:
            async for _ in stt.stream(_mic(utterance)):
                pass
        assert env.pending() == []
    assert caught.value.status_code == 500 and caught.value.provider == "livekit"
    assert len(closes["stt"]) == 1


def test_a_non_streaming_stt_needs_a_livekit_vad() -> None:
    lk = openai.STT(model="whisper-1", base_url="http://127.0.0.1:9/v1", api_key="test")
    assert not lk.capabilities.streaming
    with pytest.raises(tp.VoiceOptionsError, match="does not stream"):
        bridge.stt(lk)
    with pytest.raises(TypeError, match=r"livekit vad\.VAD"):
        bridge.stt(lk, vad=object())  # type: ignore[arg-type]


async def test_interrupts_at_every_phase_close_each_opened_stream_exactly_once(
        closes: dict[str, list[Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Sweep the interrupt across the stream's life: before the pump task ran, while the
    SDK connects and sends, and while events stream in (k trio checkpoints after the
    reply was asked for). Every livekit stream that was built is closed exactly once."""
    opened: list[Any] = []
    real_init = lk_llm.LLMStream.__init__

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        opened.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(lk_llm.LLMStream, "__init__", counting_init)
    sweep = range(0, 60, 3)
    async with running(closes) as env:
        env.server.plan(CHAT, *[Chat(text="word " * 40, delay=0.002) for _ in sweep])
        async with session(env) as s:
            for k in sweep:
                reply = s.generate_reply(user_input=f"turn {k}")
                for _ in range(k):
                    await trio.lowlevel.checkpoint()
                s.interrupt()
                await reply
                assert reply.exception() is None, (k, reply.exception())
                assert env.pending() == [], k
        for log in env.server.responses:
            await env.server.wait_for(lambda log=log: log.finished or log.client_closed_at is not None)
    # here: 19 of 20 streams built, 16 requests reached the server, all 16 cut mid-response
    assert any(log.client_closed_at is not None for log in env.server.responses)
    assert sorted(map(id, closes["llm"])) == sorted(map(id, opened))  # each exactly once
    assert len(env.server.bodies(CHAT)) <= len(opened)


def test_the_adapter_benchmark_runs() -> None:
    """Smoke test of ``python -m benchmarks.bridge_adapters`` (tiny N; numbers not judged)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-m", "benchmarks.bridge_adapters", "-n", "3", "--warmup", "1",
                           "--rounds", "1"], cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [line.split()[:2] for line in done.stdout.splitlines() if "N=" in line]
    for metric in ("ttft", "close"):
        assert [r for r in rows if r[1] == metric] == [[c, metric] for c in ("raw", "plugin", "adapter")]
    assert "pending asyncio tasks after the runs: {'raw': 0, 'plugin': 0, 'adapter': 0}" in done.stdout


def _load_example() -> Any:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "examples" / "livekit_plugins_agent.py"
    spec = importlib.util.spec_from_file_location("livekit_plugins_agent", path)
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def _write_wav(path: Path, frame: tp.AudioFrame) -> None:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(frame.num_channels)
        w.setsampwidth(2)
        w.setframerate(frame.sample_rate)
        w.writeframes(frame.data)


async def test_the_livekit_plugins_example_answers_a_spoken_question(
        closes: dict[str, list[Any]], utterance: tp.AudioFrame, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """examples/livekit_plugins_agent.py --wav, against the local server (the plugins
    read OPENAI_BASE_URL and OPENAI_API_KEY, as they would for any endpoint)."""
    import argparse

    pytest.importorskip("livekit.plugins.silero")
    example = _load_example()
    wav = tmp_path / "question.wav"
    _write_wav(wav, utterance)
    async with running(closes) as env:
        monkeypatch.setenv("OPENAI_BASE_URL", env.server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        env.server.plan(TRANSCRIBE, Transcribe("What time is it in Paris?"))
        env.server.plan(CHAT, Chat(text="Let me check.", tool_calls=[("get_time", '{"city": "Paris"}')]),
                        Chat(text="It is 9:41 in Paris."))
        await example.main(argparse.Namespace(wav=str(wav), model="test-model", tts_model="tts-1",
                                              stt_model="whisper-1"))
        assert env.pending() == []
    out = capsys.readouterr().out
    assert "What time is it in Paris?" in out and "It is 9:41 in Paris." in out
    second = env.server.bodies(CHAT)[1]["messages"]
    assert second[-1] == {"role": "tool", "tool_call_id": second[-2]["tool_calls"][0]["id"],
                          "content": "It is 9:41 in Paris."}
