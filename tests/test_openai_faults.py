"""Faults between trio_playout.openai and a real OpenAI-compatible server (tests/openai_server.py).

Each fault must come out as the typed error (or be retried away before the first
chunk), be recorded on the speech, keep the user's message and what was heard in
the history, and leave the session working. Real clock, generous bounds.
"""

from __future__ import annotations

import math
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

pytest.importorskip("openai")

import trio_playout as tp
from trio_playout.openai import OpenAILLM, OpenAISTT, OpenAITTS

from .openai_server import Chat, OpenAIServer, Raw, Speech, Status, Transcribe, chunk
from .test_openai import CHAT, SPEECH, TRANSCRIBE, get_weather, user_question

BOUND = 20.0


@pytest.fixture
async def server(nursery: trio.Nursery) -> OpenAIServer:
    srv = OpenAIServer()
    await nursery.start(srv.serve)
    return srv


@asynccontextmanager
async def session_on(server: OpenAIServer, **llm: Any) -> AsyncIterator[tp.Session]:
    options: dict[str, Any] = {"backoff": 0.05, **llm}
    async with (OpenAILLM("m", base_url=server.base_url, **options) as the_llm,
                OpenAITTS("t", "v", base_url=server.base_url, backoff=0.05) as the_tts,
                tp.open_session(llm=the_llm, tts=the_tts, output=tp.RealtimeAudioSink(),
                                tools=[get_weather]) as session):
        yield session


async def reply(session: tp.Session, text: str) -> tp.SpeechHandle:
    speech = session.generate_reply(user_input=text)
    with trio.fail_after(BOUND):
        await speech
    return speech


def said(session: tp.Session) -> list[tuple[str, str, bool]]:
    return [(m.role, m.text, m.interrupted) for m in session.history if isinstance(m, tp.ChatMessage)]


async def still_works(server: OpenAIServer, session: tp.Session) -> None:
    """The session answers the next turn, and the request sees the whole history."""
    before = len(session.history)
    server.plan(CHAT, Chat(text="Still here."))
    speech = await reply(session, "are you there?")
    assert speech.exception() is None
    assert said(session)[-2:] == [("user", "are you there?", False), ("assistant", "Still here.", False)]
    messages = server.bodies(CHAT)[-1]["messages"]
    assert len(messages) >= before + 1 and messages[-1] == {"role": "user", "content": "are you there?"}


# -- retried before the first token ---------------------------------------------------------------

async def test_429_with_retry_after_is_honoured_then_succeeds(server: OpenAIServer) -> None:
    server.plan(CHAT, Status(429, retry_after="1"), Chat(text="After the wait."))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        first, second = [r.at for r in server.requests if r.path == CHAT]
        assert second - first >= 0.9  # the server's Retry-After, not our 0.05 s backoff
        assert speech.exception() is None
        assert said(session) == [("user", "hi", False), ("assistant", "After the wait.", False)]


async def test_429_with_retry_after_beyond_the_cap_fails_at_once(server: OpenAIServer) -> None:
    server.plan(CHAT, Status(429, retry_after="120"))
    async with session_on(server, max_retry_after=5.0) as session:
        speech = await reply(session, "hi")
        error = speech.exception()
        assert isinstance(error, tp.ProviderRateLimitError) and isinstance(error, tp.PlayoutError)
        assert error.retry_after == 120 and error.status_code == 429
        assert len(server.bodies(CHAT)) == 1
        assert said(session) == [("user", "hi", False)]
        await still_works(server, session)


async def test_500_is_retried_with_backoff(server: OpenAIServer) -> None:
    server.plan(CHAT, Status(500), Status(503), Chat(text="Third time lucky."))
    async with session_on(server, max_retries=2) as session:
        speech = await reply(session, "hi")
        assert speech.exception() is None and len(server.bodies(CHAT)) == 3
        assert said(session)[-1] == ("assistant", "Third time lucky.", False)


async def test_500_after_the_retries_is_a_response_error(server: OpenAIServer) -> None:
    server.plan(CHAT, Status(500), Status(500), Status(500))
    async with session_on(server, max_retries=2) as session:
        speech = await reply(session, "hi")
        error = speech.exception()
        assert isinstance(error, tp.ProviderResponseError) and error.status_code == 500 and error.retryable
        assert len(server.bodies(CHAT)) == 3 and said(session) == [("user", "hi", False)]
        await still_works(server, session)


async def test_400_is_not_retried(server: OpenAIServer) -> None:
    server.plan(CHAT, Status(400, message="bad request"))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        error = speech.exception()
        assert isinstance(error, tp.ProviderResponseError) and error.status_code == 400
        assert not error.retryable and len(server.bodies(CHAT)) == 1
        await still_works(server, session)


async def test_reset_before_the_first_token_is_retried(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="lost", fault="reset", fault_after=1), Chat(text="Second try."))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        assert speech.exception() is None and len(server.bodies(CHAT)) == 2
        assert said(session) == [("user", "hi", False), ("assistant", "Second try.", False)]


# -- mid-stream: never replayed --------------------------------------------------------------------

@pytest.mark.parametrize(("fault", "error_type"), [
    ("reset", tp.ProviderConnectionError),
    ("malformed", tp.ProviderResponseError),
    ("error_event", tp.ProviderResponseError),
])
async def test_mid_stream_fault_keeps_what_was_heard(server: OpenAIServer, fault: str,
                                                     error_type: type[tp.ProviderError]) -> None:
    # 1 role event + 5 text events of 3 characters: "Hello there. " and "Mo" went out.
    server.plan(CHAT, Chat(text="Hello there. More that never came.", fault=fault,  # type: ignore[arg-type]
                           fault_after=6))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        assert isinstance(speech.exception(), error_type)
        assert len(server.bodies(CHAT)) == 1  # text was handed on: no retry, nothing replayed
        user, *assistant = said(session)
        assert user == ("user", "hi", False)
        # The cut-off tail ("Mo") is never spoken: it would be a fragment after the error.
        assert [a[1] for a in assistant] == ["Hello there."]
        await still_works(server, session)


async def test_stall_fires_the_timeout_and_closes_the_connection(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="Hello there. And then nothing", fault="stall", fault_after=6))
    async with session_on(server, timeout=0.5) as session:
        speech = await reply(session, "hi")
        assert isinstance(speech.exception(), tp.ProviderTimeoutError)
        assert isinstance(speech.exception(), TimeoutError)
        with trio.fail_after(BOUND):
            await server.wait_for(lambda: server.responses[0].client_closed_at is not None)
        assert said(session)[1][1] == "Hello there."
        await still_works(server, session)


async def test_stall_before_the_first_token_is_retried(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="never", fault="stall", fault_after=1), Chat(text="Quick this time."))
    async with session_on(server, timeout=0.5) as session:
        speech = await reply(session, "hi")
        assert speech.exception() is None
        assert said(session)[-1] == ("assistant", "Quick this time.", False)
        assert server.responses[0].client_closed_at is not None


# -- tools -------------------------------------------------------------------------------------------

async def test_invalid_tool_call_json_gives_one_error_output(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(tool_calls=[("get_weather", '{"city": "Par'),
                                       ("get_weather", '{"city": "Rome"}')]),
                Chat(text="Rome is sunny; I could not read the other city."))
    async with session_on(server) as session:
        speech = await reply(session, "weather?")
        assert speech.exception() is None
        calls = [i for i in session.history if isinstance(i, tp.FunctionCall)]
        assert [c.arguments for c in calls] == ['{"city": "Par', '{"city": "Rome"}']
        bad, good = (session.history.outputs_for(c.call_id) for c in calls)
        assert len(bad) == 1 and bad[0].is_error and "JSON" in bad[0].output
        assert len(good) == 1 and not good[0].is_error and good[0].output == "sunny in Rome"
        messages = server.bodies(CHAT)[1]["messages"]
        sent = messages[1]["tool_calls"]
        assert [c["function"]["arguments"] for c in sent] == ["{}", '{"city": "Rome"}']
        assert [m["tool_call_id"] for m in messages[2:4]] == [c.call_id for c in calls]
        assert said(session)[-1][1] == "Rome is sunny; I could not read the other city."


# -- TTS and STT ---------------------------------------------------------------------------------------

async def test_tts_500_before_audio_is_retried(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="Spoken after a retry."))
    server.plan(SPEECH, Status(500), Speech(seconds_per_char=0.01))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        assert speech.exception() is None and len(server.bodies(SPEECH)) == 2
        assert said(session)[-1] == ("assistant", "Spoken after a retry.", False)


async def test_tts_reset_mid_audio_records_the_error_and_the_heard_text(server: OpenAIServer) -> None:
    server.plan(CHAT, Chat(text="First sentence here. Second sentence there."))
    server.plan(SPEECH, Speech(seconds_per_char=0.01),
                Speech(seconds_per_char=0.05, fault="reset", fault_after=1))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        # A TTS error raised through the reply's nursery is recorded bare, not as a group of one.
        assert isinstance(speech.exception(), tp.ProviderConnectionError)
        assert len(server.bodies(SPEECH)) == 2  # audio was handed on: not retried
        # The failure stops the step's audio (the session clears the sink), so what was
        # heard is a prefix of the text, cut by the estimated word timings.
        heard = said(session)[1:]
        assert len(heard) <= 1
        assert all("First sentence here. Second sentence there.".startswith(h[1]) for h in heard)
        await still_works(server, session)


def frames(audio: list[tp.AudioFrame], frame: float = 0.02) -> list[tp.AudioFrame]:
    """The clips back to back, cut in ``frame``-second frames (16 kHz mono)."""
    n = 2 * round(frame * 16000)
    data = b"".join(a.data for a in audio)
    return [tp.AudioFrame(data[i:i + n], 16000) for i in range(0, len(data), n)]


async def unpaced(items: list[tp.AudioFrame]) -> AsyncIterator[tp.AudioFrame]:
    """Frames as fast as the STT reads them: it cuts by audio time, not by the clock."""
    for item in items:
        yield item


async def test_stt_retries_a_500_and_skips_an_utterance_that_keeps_failing(server: OpenAIServer) -> None:
    question, gap = user_question(), tp.AudioFrame.silence(1.0)
    server.plan(TRANSCRIBE, Status(500), Transcribe("first"),  # retried
                Status(500), Status(500),  # max_retries=1: skipped
                Transcribe("third"))
    mic = frames([gap, question, gap, question, gap, question, gap])
    async with OpenAISTT("s", base_url=server.base_url, max_retries=1, backoff=0.05) as stt:
        with trio.fail_after(BOUND):
            got = [t async for t in stt.stream(unpaced(mic))]
    assert got == [tp.Transcript("first"), tp.Transcript("third")]
    assert stt.failed == 1 and len(server.bodies(TRANSCRIBE)) == 5
    # Each upload is one utterance: the speech, its pre-roll and its end silence.
    assert all(question.duration - 0.3 < b["file"]["seconds"] < question.duration + 1.0
               for b in server.bodies(TRANSCRIBE))


def test_stt_silence_sends_nothing() -> None:
    from trio_playout._openai_stt import _Segmenter

    seg = _Segmenter(-40.0, 0.1, 0.4, 0.3, 30.0)
    frames = [tp.AudioFrame.silence(0.02) for _ in range(200)]
    assert all(seg.push(f) is None for f in frames) and seg.flush() is None


def test_stt_cuts_one_utterance_with_pre_roll() -> None:
    from trio_playout._openai_stt import _Segmenter

    question = user_question()
    seg = _Segmenter(-40.0, 0.1, 0.4, 0.3, 30.0)
    cuts = [u for u in (seg.push(f) for f in frames([tp.AudioFrame.silence(1.0), question,
                                                     tp.AudioFrame.silence(1.0)])) if u is not None]
    assert len(cuts) == 1  # espeak's pauses between words are shorter than end_silence
    total = sum(f.duration for f in cuts[0])
    assert question.duration * 0.8 < total < question.duration + 1.0


# -- configuration and the retry policy -------------------------------------------------------------

async def test_base_url_and_key_from_the_environment(server: OpenAIServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    server.plan(CHAT, Chat(text="From the environment."))
    async with OpenAILLM("m") as llm:
        chunks = [c async for c in llm.stream(tp.LLMRequest([tp.ChatMessage("user", "hi")], []))]
    assert "".join(c.text for c in chunks if isinstance(c, tp.TextDelta)) == "From the environment."
    assert server.requests[0].headers["authorization"] == "Bearer sk-from-env"


def test_no_key_and_no_base_url_is_an_options_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(tp.VoiceOptionsError, match="OPENAI_API_KEY"):
        OpenAILLM("m")
    # A local server needs no key: base_url alone is enough.
    OpenAITTS("t", "v", base_url="http://127.0.0.1:9/v1")


def test_retry_policy_and_retry_after() -> None:
    from trio_playout._openai_common import RetryPolicy, _retry_after

    policy = RetryPolicy(max_retries=2, backoff=0.5, max_retry_after=10.0)
    limited = tp.ProviderRateLimitError("429", retry_after=3.0)
    assert policy.delay(0, limited) == 3.0 and policy.delay(2, limited) is None
    assert policy.delay(0, tp.ProviderRateLimitError("429", retry_after=30.0)) is None  # beyond the cap
    assert 0.375 <= (policy.delay(1, tp.ProviderConnectionError("x")) or 0) <= 1.25
    assert policy.delay(0, tp.ProviderResponseError("400", status_code=400)) is None
    assert _retry_after({"retry-after": "2"}) == 2.0
    assert _retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert _retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert _retry_after({"retry-after": "soon"}) is None and _retry_after({}) is None


# -- chunks of a shape the API does not promise ---------------------------------------------------

async def llm_alone(server: OpenAIServer, *events: Any) -> tuple[list[tp.LLMChunk], BaseException | None]:
    """What OpenAILLM hands on for a stream of ``events`` (Raw), and what it raised."""
    server.plan(CHAT, Raw(events))
    got: list[tp.LLMChunk] = []
    async with OpenAILLM("m", base_url=server.base_url, backoff=0.05) as llm:
        try:
            with trio.fail_after(BOUND):
                async for c in llm.stream(tp.LLMRequest([tp.ChatMessage("user", "hi")], [get_weather])):
                    got.append(c)
        except Exception as exc:  # the test asserts its type
            return got, exc
    return got, None


HELLO = chunk({"role": "assistant", "content": "Hello"})


@pytest.mark.parametrize("bad", [
    chunk(choices=None),  # seen from proxies on usage and keep-alive chunks
    chunk(choices="oops"),
    chunk(choices=[{"index": 0, "delta": {"content": 42}}]),
    chunk({"tool_calls": [{"index": 0, "id": "c1"}]}),  # a call that never gets a name
    chunk({"tool_calls": [{"index": "first", "id": "c1", "function": {"name": "get_weather"}}]}),
    chunk({"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "get_weather", "arguments": 7}}]}),
    chunk({"tool_calls": "get_weather"}),
], ids=["choices-null", "choices-string", "content-int", "call-without-name", "index-string",
        "arguments-int", "tool-calls-string"])
async def test_a_chunk_of_the_wrong_shape_is_a_response_error(server: OpenAIServer, bad: Any) -> None:
    got, error = await llm_alone(server, HELLO, bad)
    assert isinstance(error, tp.ProviderResponseError) and not error.retryable, repr(error)
    assert "unreadable response" in str(error)
    assert got == [tp.TextDelta("Hello")]  # what came before is kept, no call is run
    assert len(server.bodies(CHAT)) == 1


async def test_choices_null_in_a_session_is_recorded_and_the_session_goes_on(server: OpenAIServer) -> None:
    server.plan(CHAT, Raw([chunk({"content": "Hello there. "}), chunk(choices=None)]))
    async with session_on(server) as session:
        speech = await reply(session, "hi")
        assert isinstance(speech.exception(), tp.ProviderResponseError)
        assert said(session) == [("user", "hi", False), ("assistant", "Hello there.", False)]
        await still_works(server, session)


def call_delta(index: int | None = None, call_id: str | None = None, name: str | None = None,
               arguments: str | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "function"}
    if index is not None:
        entry["index"] = index
    if call_id is not None:
        entry["id"] = call_id
    function = {k: v for k, v in (("name", name), ("arguments", arguments)) if v is not None}
    if function:
        entry["function"] = function
    return chunk({"tool_calls": [entry]})


@pytest.mark.parametrize(("events", "expected"), [
    # llama.cpp style: one call, no index, arguments in pieces.
    ([call_delta(call_id="c1", name="get_weather", arguments=""),
      call_delta(arguments='{"city"'), call_delta(arguments=': "Paris"}')],
     [("get_weather", '{"city": "Paris"}', "c1")]),
    # The name (and id) repeated in every delta: still one call.
    ([call_delta(call_id="c1", name="get_weather", arguments='{"ci'),
      call_delta(call_id="c1", name="get_weather", arguments='ty": "Rome"}')],
     [("get_weather", '{"city": "Rome"}', "c1")]),
    # Whole calls one per delta (some Ollama versions), with ids or without.
    ([call_delta(call_id="a", name="get_weather", arguments='{"city": "Paris"}'),
      call_delta(call_id="b", name="get_weather", arguments='{"city": "Rome"}')],
     [("get_weather", '{"city": "Paris"}', "a"), ("get_weather", '{"city": "Rome"}', "b")]),
    ([call_delta(name="get_weather", arguments='{"city": "Paris"}'),
      call_delta(name="get_weather", arguments='{"city": "Rome"}')],
     [("get_weather", '{"city": "Paris"}', None), ("get_weather", '{"city": "Rome"}', None)]),
    # With an index, the index decides, interleaved or not.
    ([call_delta(0, "a", "get_weather", ""), call_delta(1, "b", "get_weather", ""),
      call_delta(1, arguments='{"city": "Rome"}'), call_delta(0, arguments='{"city": "Paris"}')],
     [("get_weather", '{"city": "Paris"}', "a"), ("get_weather", '{"city": "Rome"}', "b")]),
], ids=["pieces-no-index", "name-repeated", "whole-with-ids", "whole-without-ids", "indexed"])
async def test_tool_calls_with_and_without_index(server: OpenAIServer, events: list[Any],
                                                 expected: list[tuple[str, str, str | None]]) -> None:
    got, error = await llm_alone(server, *events)
    assert error is None
    assert [(c.name, c.arguments, c.call_id) for c in got if isinstance(c, tp.ToolCall)] == expected


# -- options are checked when the provider is built ------------------------------------------------

U = "http://127.0.0.1:9/v1"  # nothing listens: these providers are only built


@pytest.mark.parametrize(("provider", "options", "option"), [
    (OpenAILLM, {"model": "m", "base_url": U, "max_retries": None}, "max_retries"),
    (OpenAILLM, {"model": "m", "base_url": U, "max_retries": 2.5}, "max_retries"),
    (OpenAILLM, {"model": "m", "base_url": U, "max_retries": True}, "max_retries"),
    (OpenAILLM, {"model": "m", "base_url": U, "max_retries": -1}, "max_retries"),
    (OpenAILLM, {"model": "m", "base_url": U, "max_retries": 10**6}, "max_retries"),  # 2.0 ** 1024 overflows
    (OpenAILLM, {"model": "m", "base_url": U, "timeout": "30"}, "timeout"),
    (OpenAILLM, {"model": "m", "base_url": U, "timeout": 0}, "timeout"),
    (OpenAILLM, {"model": "m", "base_url": U, "timeout": float("nan")}, "timeout"),
    (OpenAILLM, {"model": "m", "base_url": U, "backoff": float("inf")}, "backoff"),
    (OpenAILLM, {"model": "m", "base_url": U, "backoff": None}, "backoff"),
    (OpenAILLM, {"model": "m", "base_url": U, "max_retry_after": -1}, "max_retry_after"),
    (OpenAILLM, {"model": "m", "base_url": U, "parallel_tool_calls": "yes"}, "parallel_tool_calls"),
    (OpenAILLM, {"model": "", "base_url": U}, "model"),
    (OpenAILLM, {"model": None, "base_url": U}, "model"),
    (OpenAILLM, {"model": "m", "base_url": U, "instructions": 3}, "instructions"),
    (OpenAILLM, {"model": "m", "base_url": U, "extra": [("temperature", 0)]}, "extra"),
    (OpenAILLM, {"model": "m", "base_url": 7}, "base_url"),
    (OpenAILLM, {"model": "m", "base_url": U, "client": object()}, "client"),
    (OpenAITTS, {"base_url": U, "frame_duration": None}, "frame_duration"),
    (OpenAITTS, {"base_url": U, "frame_duration": 0.001}, "frame_duration"),
    (OpenAITTS, {"base_url": U, "chars_per_second": float("inf")}, "chars_per_second"),
    (OpenAITTS, {"base_url": U, "chars_per_second": 0}, "chars_per_second"),
    (OpenAITTS, {"base_url": U, "speed": "fast"}, "speed"),
    (OpenAITTS, {"base_url": U, "speed": 0}, "speed"),
    (OpenAITTS, {"base_url": U, "voice": None}, "voice"),
    (OpenAITTS, {"base_url": U, "timeout": None}, "timeout"),
    (OpenAISTT, {"base_url": U, "threshold_db": "x"}, "threshold_db"),
    (OpenAISTT, {"base_url": U, "threshold_db": 6.0}, "threshold_db"),  # above full scale: never loud
    (OpenAISTT, {"base_url": U, "threshold_db": -math.inf}, "threshold_db"),
    (OpenAISTT, {"base_url": U, "min_speech": True}, "min_speech"),
    (OpenAISTT, {"base_url": U, "end_silence": -0.1}, "end_silence"),
    (OpenAISTT, {"base_url": U, "pre_roll": float("nan")}, "pre_roll"),
    (OpenAISTT, {"base_url": U, "max_utterance": 0}, "max_utterance"),
    (OpenAISTT, {"base_url": U, "language": 5}, "language"),
    (OpenAISTT, {"base_url": U, "max_retries": None}, "max_retries"),
])
def test_bad_options_are_refused_when_built(provider: Any, options: dict[str, Any], option: str) -> None:
    with pytest.raises(tp.VoiceOptionsError, match=option):
        provider(**options)




def test_retry_policy_refuses_bad_values() -> None:
    from trio_playout._openai_common import RetryPolicy

    bad: dict[str, Any]
    for bad in ({"max_retries": "2"}, {"backoff": float("nan")}, {"max_retry_after": math.inf},
                {"max_retry_after": None}):
        with pytest.raises(tp.VoiceOptionsError):
            RetryPolicy(**bad)
    # The largest accepted policy computes its last delay without overflowing.
    policy = RetryPolicy(max_retries=100, backoff=60.0)
    assert math.isfinite(policy.delay(99, tp.ProviderConnectionError("x")) or math.nan)


def loud(seconds: float) -> tp.AudioFrame:
    """A square wave at -6 dBFS, well above any threshold."""
    n = round(seconds * 16000)
    return tp.AudioFrame(b"".join(struct.pack("<h", 16000 if i % 40 < 20 else -16000) for i in range(n)),
                         16000)


def test_stt_segmenter_with_zero_min_speech_pre_roll_and_end_silence() -> None:
    from trio_playout._openai_stt import _Segmenter

    quiet = tp.AudioFrame.silence(0.02)
    seg = _Segmenter(-40.0, 0.0, 0.0, 0.0, 30.0)
    assert [seg.push(quiet) for _ in range(10)] == [None] * 10  # silence never starts one
    assert seg.push(loud(0.02)) is None  # the first loud frame starts it, with no pre-roll
    assert seg.push(loud(0.02)) is None
    cut = seg.push(quiet)  # the first quiet frame ends it
    assert cut is not None and [f.duration for f in cut] == pytest.approx([0.02, 0.02, 0.02])
    assert seg.flush() is None
    # min_speech=0 with a pre-roll: the loud frame and the pre-roll before it.
    seg = _Segmenter(-40.0, 0.0, 0.1, 0.06, 30.0)
    for _ in range(10):
        assert seg.push(quiet) is None
    assert seg.push(loud(0.02)) is None
    cuts = [seg.push(quiet) for _ in range(5)]
    (cut,) = [c for c in cuts if c is not None]
    assert sum(f.duration for f in cut) == pytest.approx(0.06 + 0.02 + 0.1)


async def test_stt_with_zero_min_speech_and_pre_roll_transcribes(server: OpenAIServer) -> None:
    question, gap = user_question(), tp.AudioFrame.silence(1.0)
    server.plan(TRANSCRIBE, *[Transcribe("word") for _ in range(20)])
    async with OpenAISTT("s", base_url=server.base_url, min_speech=0, pre_roll=0) as stt:
        with trio.fail_after(BOUND):
            got = [t async for t in stt.stream(unpaced(frames([gap, question, gap])))]
    assert got and all(t == tp.Transcript("word") for t in got) and stt.failed == 0
    uploaded = sum(b["file"]["seconds"] for b in server.bodies(TRANSCRIBE))
    assert question.duration * 0.5 < uploaded < question.duration + 1.0
