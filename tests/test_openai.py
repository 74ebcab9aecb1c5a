"""trio_playout.openai against a real OpenAI-compatible server on the loopback interface.

The server (tests/openai_server.py) is ours, on trio and h11; the client is the real
``openai`` SDK over real sockets. These tests run on the real clock (sockets do not
follow a MockClock) with generous bounds and no timing asserts.
"""

from __future__ import annotations

import wave
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import pytest
import trio

pytest.importorskip("openai")

import trio_playout as tp
from trio_playout.openai import OpenAILLM, OpenAISTT, OpenAITTS, history_to_messages
from trio_playout.testing import PacedAudio

from .openai_server import Chat, OpenAIServer, Speech, Transcribe

CHAT, SPEECH, TRANSCRIBE = "/v1/chat/completions", "/v1/audio/speech", "/v1/audio/transcriptions"
BOUND = 20.0  # seconds: generous, only to fail instead of hanging


@pytest.fixture
async def server(nursery: trio.Nursery) -> OpenAIServer:
    srv = OpenAIServer()
    await nursery.start(srv.serve)
    return srv


def user_question() -> tp.AudioFrame:
    """Real speech: "What should I see in Paris tomorrow?" (16 kHz mono, shipped with the demo)."""
    path = Path(str(resources.files("trio_playout"))) / "data" / "user_question.wav"
    with wave.open(str(path), "rb") as w:
        return tp.AudioFrame(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())


async def wait_until(predicate: Callable[[], bool], poll: float = 0.01) -> None:
    """Poll a condition on session state that has no event of its own (bounded)."""
    with trio.fail_after(BOUND):
        while not predicate():  # noqa: ASYNC110
            await trio.sleep(poll)


@tp.function_tool
async def get_weather(city: str) -> str:
    """The weather in a city.

    Args:
        city: the city's name
    """
    return f"sunny in {city}"


def providers(srv: OpenAIServer, **llm: object) -> tuple[OpenAILLM, OpenAITTS]:
    return (OpenAILLM("test-llm", base_url=srv.base_url, **llm),  # type: ignore[arg-type]
            OpenAITTS("test-tts", "alloy", base_url=srv.base_url))


def kinds(history: Sequence[tp.ChatItem]) -> list[str]:
    return [type(i).__name__ + (f":{i.role}" if isinstance(i, tp.ChatMessage) else "") for i in history]


# -- the history as messages ------------------------------------------------------------------

def test_history_to_messages_calls_outputs_and_interrupted_text() -> None:
    history: list[tp.ChatItem] = [
        tp.ChatMessage("user", "weather in Paris and Rome?"),
        tp.ChatMessage("assistant", "Let me", interrupted=True),  # what was heard
        tp.FunctionCall("c1", "get_weather", '{"city": "Paris"}'),
        tp.FunctionCallOutput("c1", "sunny"),
        tp.FunctionCall("c2", "get_weather", '{"city": "Ro'),  # invalid JSON from the model
        tp.FunctionCallOutput("c2", "arguments are not valid JSON", is_error=True),
        tp.FunctionCall("c3", "get_weather", "{}"),  # no output recorded
        tp.FunctionCallOutput("zz", "orphan"),
        tp.ChatMessage("user", "thanks"),
    ]
    messages = history_to_messages(history, "Be brief.")
    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "weather in Paris and Rome?"},
        {"role": "assistant", "content": "Let me", "tool_calls": [
            {"id": "c1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "c2", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "c3", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        {"role": "tool", "tool_call_id": "c2", "content": "arguments are not valid JSON"},
        {"role": "tool", "tool_call_id": "c3", "content": "no output was recorded"},
        {"role": "user", "content": "thanks"},
    ]


# -- the LLM alone ---------------------------------------------------------------------------------

async def test_llm_streams_text_and_assembles_parallel_tool_calls(server: OpenAIServer) -> None:
    text = "Héllo wörld — naïve café, ünïcode split across writes. Ok."
    server.plan(CHAT, Chat(text=text, piece=2, tool_calls=[
        ("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "São Paulo"}')]))
    async with OpenAILLM("m", base_url=server.base_url) as llm:
        request = tp.LLMRequest([tp.ChatMessage("user", "hi")], [get_weather])
        chunks = [c async for c in llm.stream(request)]
    deltas = [c for c in chunks if isinstance(c, tp.TextDelta)]
    calls = [c for c in chunks if isinstance(c, tp.ToolCall)]
    assert "".join(d.text for d in deltas) == text and len(deltas) > 10
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", '{"city": "Paris"}'), ("get_weather", '{"city": "São Paulo"}')]
    assert calls[0].call_id != calls[1].call_id and all(c.call_id for c in calls)
    assert chunks[-2:] == calls  # calls come after the text, whole
    body = server.bodies(CHAT)[0]
    assert body["stream"] is True and body["messages"] == [{"role": "user", "content": "hi"}]
    assert body["tools"] == [{"type": "function", "function": get_weather.to_schema()}]


# -- a whole conversation --------------------------------------------------------------------------

async def test_conversation_stt_llm_tool_tts(server: OpenAIServer) -> None:
    """The user speaks (real audio), the STT's final makes a turn, the LLM calls a tool and
    answers, the TTS speaks both steps, and the history holds all of it in order."""
    question = user_question()
    server.plan(TRANSCRIBE, Transcribe("What should I see in Paris tomorrow?"))
    server.plan(CHAT, Chat(text="Let me check the weather.",
                           tool_calls=[("get_weather", '{"city": "Paris"}')]),
                Chat(text="It is sunny, so see the Louvre."))
    server.plan(SPEECH, Speech(seconds_per_char=0.01), Speech(seconds_per_char=0.01))
    llm, tts = providers(server)
    stt = OpenAISTT("test-stt", base_url=server.base_url)
    sink = tp.RealtimeAudioSink()
    async with llm, tts, stt, tp.open_session(
            llm=llm, tts=tts, output=sink, tools=[get_weather],
            audio_input=PacedAudio([(0.3, question)]), stt=stt) as session:
        await wait_until(lambda: len(session.history) >= 5 and not session.speeches)
        history = list(session.history)
    assert kinds(history) == ["ChatMessage:user", "ChatMessage:assistant", "FunctionCall",
                              "FunctionCallOutput", "ChatMessage:assistant"]
    assert history[0] == tp.ChatMessage("user", "What should I see in Paris tomorrow?")
    assert history[1] == tp.ChatMessage("assistant", "Let me check the weather.")
    call, output = history[2], history[3]
    assert isinstance(call, tp.FunctionCall) and isinstance(output, tp.FunctionCallOutput)
    assert (call.name, call.arguments, output.output, output.is_error) == (
        "get_weather", '{"city": "Paris"}', "sunny in Paris", False)
    assert history[4] == tp.ChatMessage("assistant", "It is sunny, so see the Louvre.")
    # The upload was the utterance: real audio, its length, its rate.
    (upload,) = server.bodies(TRANSCRIBE)
    wav = upload["file"]
    assert (wav["rate"], wav["channels"], wav["width"]) == (16000, 1, 2) and wav["peak"] > 1000
    assert question.duration - 0.3 < wav["seconds"] < question.duration + 1.5
    assert upload["model"] == "test-stt" and stt.failed == 0
    # The second request carried the call and its output as the API wants them.
    second = server.bodies(CHAT)[1]["messages"]
    assert second[1]["role"] == "assistant" and second[1]["tool_calls"][0]["id"] == call.call_id
    assert second[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny in Paris"}
    assert [b["input"] for b in server.bodies(SPEECH)] == ["Let me check the weather.",
                                                          "It is sunny, so see the Louvre."]
    assert all(b["response_format"] == "pcm" for b in server.bodies(SPEECH))
    # The sink played the server's PCM: 24 kHz, as long as the server made it.
    played = sum(r.position or 0.0 for r in sink.records)
    expected = sum(round(len(b["input"]) * 0.01 * 24000) for b in server.bodies(SPEECH)) / 24000
    assert played == pytest.approx(expected, abs=0.01)


# -- interrupts reach the wire ---------------------------------------------------------------------

async def test_interrupt_mid_llm_stream_closes_the_connection(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="One two three four five six seven eight nine ten. " * 20, delay=0.02))
    llm, tts = providers(server)
    async with llm, tts, tp.open_session(llm=llm, tts=tts, output=tp.RealtimeAudioSink()) as session:
        speech = session.generate_reply(user_input="count")
        await wait_until(lambda: bool(server.responses) and server.responses[0].events >= 5)
        session.interrupt()
        with trio.fail_after(BOUND):
            await speech
            await server.wait_for(lambda: server.responses[0].client_closed_at is not None)
        log = server.responses[0]
        assert not log.finished and log.events < 200
        assert speech.interrupted and speech.exception() is None
        assert session.history[0] == tp.ChatMessage("user", "count")
        heard = [m for m in session.history if isinstance(m, tp.ChatMessage) and m.role == "assistant"]
        assert all(m.interrupted and "One two".startswith(m.text[:7]) for m in heard)
        # The session goes on: the next reply is whole.
        server.plan(CHAT, Chat(text="Done."))
        with trio.fail_after(BOUND):
            await session.generate_reply(user_input="stop")
        assert session.history[-1] == tp.ChatMessage("assistant", "Done.")


async def test_interrupt_mid_tts_stream_closes_the_connection(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="A long sentence that takes a while to synthesize at this slow pace."))
    server.plan(SPEECH, Speech(seconds_per_char=0.05, chunk_delay=0.3))
    llm, tts = providers(server)
    sink = tp.RealtimeAudioSink()
    async with llm, tts, tp.open_session(llm=llm, tts=tts, output=sink) as session:
        speech = session.generate_reply(user_input="talk")
        await wait_until(lambda: any(r.path == SPEECH and r.events >= 1 for r in server.responses))
        session.interrupt()
        with trio.fail_after(BOUND):
            await speech
            await server.wait_for(lambda: any(r.path == SPEECH and r.client_closed_at is not None
                                              for r in server.responses))
        (log,) = [r for r in server.responses if r.path == SPEECH]
        assert not log.finished
        assert speech.interrupted and speech.exception() is None
        heard = [m for m in session.history if isinstance(m, tp.ChatMessage) and m.role == "assistant"]
        assert len(heard) <= 1 and all(m.interrupted for m in heard)
        assert all("A long sentence that takes a while".startswith(m.text) for m in heard)


# -- the TTS's estimated word timings --------------------------------------------------------------

async def test_tts_frames_and_estimated_words(server: OpenAIServer) -> None:
    text = "Estimated word timings follow the characters."
    server.plan(SPEECH, Speech(seconds_per_char=0.02))
    async with OpenAITTS("t", "v", base_url=server.base_url) as tts:
        out = [a async for a in tts.synthesize(text)]
    pcm = b"".join(a.frame.data for a in out)
    assert len(pcm) == 2 * round(len(text) * 0.02 * 24000)
    assert all(a.frame.sample_rate == 24000 and a.frame.duration <= 0.02 + 1e-9 for a in out[:-1])
    assert out[-1].frame.duration < 0.04
    words = [w for a in out for w in a.words]
    assert [text[w.start_char:w.end_char] for w in words] == text.split()
    starts = [w.start for w in words]
    assert starts == sorted(starts) and starts[0] == 0.0 and starts[-1] < len(text) * 0.02
