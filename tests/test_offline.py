"""trio_playout.offline: RuleLLM's rules, its streaming, its tools, and the offline agent.

RuleLLM is tested on its own (the decision, then the stream in virtual time) and in
real sessions with trio_playout.testing's fakes (virtual time); offline_agent with
the real Silero, PocketSphinx and espeak-ng parts (skipped when their extras are
missing) and with each extra made unimportable.
"""

from __future__ import annotations

import ctypes.util
import json
import re
import subprocess
import sys
from datetime import datetime
from enum import Enum

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

import trio_playout as tp
from trio_playout.offline import (
    MissingExtraError,
    OfflineAgent,
    Reply,
    RuleLLM,
    get_time,
    offline_agent,
    split_deltas,
)
from trio_playout.testing import FakeTTS, ScriptedSTT, ScriptedVAD, SilentInput

NOON = datetime(2026, 12, 2, 9, 41)


@tp.function_tool
async def get_clock_time() -> str:
    """The time (fixed, so the tests are deterministic)."""
    return "It is 9:41."


@tp.function_tool
async def get_weather(city: str, days: int = 1) -> str:
    """The weather in a city.

    Args:
        city: the city
        days: how many days ahead
    """
    return f"Sunny in {city} for {days} days."


class Unit(Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


@tp.function_tool
async def temperature(unit: Unit) -> str:
    """The temperature in a unit."""
    return f"21 degrees {unit.value}"


@tp.function_tool
async def searchWiki(query: str) -> str:  # a camelCase name, on purpose
    """Search the wiki."""
    return f"nothing about {query}"


def ask(text: str, *, tools: tuple[tp.FunctionTool, ...] = (),
        before: tuple[tp.ChatItem, ...] = ()) -> Reply:
    llm = RuleLLM(now=lambda: NOON)
    return llm.reply(tp.LLMRequest([*before, tp.ChatMessage("user", text)], list(tools)))


# -- the rules ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "rule", "answer"), [
    ("Hello!", "greeting", "Hello! How can I help you?"),
    ("hey there", "greeting", "Hello! How can I help you?"),
    ("good morning", "greeting", "Hello! How can I help you?"),
    ("Goodbye.", "goodbye", "Goodbye! Talk to you soon."),
    ("ok bye bye", "goodbye", "Goodbye! Talk to you soon."),
    ("hello and good night", "goodbye", "Goodbye! Talk to you soon."),  # goodbye before greeting
    ("thank you for your time", "thanks", "You're welcome."),  # not the time rule
    ("what time is it", "time", "It is 9:41."),
    ("Look at the clock", "time", "It is 9:41."),
    ("the cat sat on the mat", "echo", "I heard: the cat sat on the mat."),
    ("Is this thing on?", "echo", "I heard: Is this thing on?"),
    ("  spaced \n  out  ", "echo", "I heard: spaced out."),
    ("", "empty", "Sorry, I did not catch that. Could you say it again?"),
    ("  ... ?! ", "empty", "Sorry, I did not catch that. Could you say it again?"),
    ("What can you do?", "help", "I can greet you, tell you the time, repeat what I said and say "
                                 "goodbye; anything else, I repeat back to you."),
    ("hi", "greeting", "Hello! How can I help you?"),
    ("this is his", "echo", "I heard: this is his."),  # "hi" is matched as a word, not inside one
])
def test_rules_without_tools(text: str, rule: str, answer: str) -> None:
    assert ask(text) == Reply(rule, answer)


def test_no_user_message_yet_is_an_introduction() -> None:
    reply = RuleLLM().reply(tp.LLMRequest([tp.ChatMessage("system", "be nice")], []))
    assert reply == Reply("start", "Hello! I am an offline agent. Ask me the time, or say goodbye.")


def test_repeat_says_the_last_heard_assistant_message() -> None:
    said = tp.ChatMessage("assistant", "The museum opens at nine.")
    assert ask("What did you say?", before=(tp.ChatMessage("user", "when"), said)) == Reply(
        "repeat", "I said: The museum opens at nine.")
    cut = tp.ChatMessage("assistant", "The museum opens", interrupted=True)
    assert ask("sorry, say that again", before=(said, tp.ChatMessage("user", "x"), cut)) == Reply(
        "repeat", "I said: The museum opens. Then you stopped me.")
    assert ask("pardon") == Reply("repeat", "I have not said anything yet.")
    # an empty (interrupted before a word) message is skipped for the one before it
    empty = tp.ChatMessage("assistant", "", interrupted=True)
    assert ask("repeat", before=(said, empty)).text == "I said: The museum opens at nine."


def test_time_uses_a_tool_when_one_fits() -> None:
    reply = ask("What time is it?", tools=(get_clock_time,))
    assert reply == Reply("tool", "Let me check.", (tp.ToolCall("get_clock_time", "{}"),))
    # "times" counts for "time"; the default get_time tool fits too
    assert ask("what are the times", tools=(get_time,)).tool_calls == (tp.ToolCall("get_time", "{}"),)


@pytest.mark.parametrize(("text", "arguments"), [
    ("What's the weather in Paris?", {"city": "Paris"}),
    ("weather in new york tomorrow please", {"city": "New York"}),
    ("weather for 3 days in Rio de Janeiro", {"city": "Rio De Janeiro", "days": 3}),
])
def test_tool_arguments_are_filled_from_the_words(text: str, arguments: dict[str, object]) -> None:
    reply = ask(text, tools=(get_clock_time, get_weather))
    assert reply.rule == "tool" and reply.text == "Let me check."
    (call,) = reply.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments_json()) == arguments
    get_weather.parse_arguments(call.arguments)  # the session's own check accepts them


def test_enum_query_and_camel_case_tools() -> None:
    reply = ask("temperature in fahrenheit", tools=(temperature,))
    assert reply.tool_calls == (tp.ToolCall("temperature", '{"unit": "fahrenheit"}'),)
    reply = ask("search the wiki for trio", tools=(searchWiki,))
    assert reply.tool_calls == (tp.ToolCall("searchWiki", '{"query": "search the wiki for trio"}'),)


def test_a_required_parameter_it_cannot_fill_is_asked_for() -> None:
    assert ask("how is the weather", tools=(get_weather,)) == Reply(
        "ask", "I can check the weather, but I need the city. Please say it again with the city.")
    assert ask("temperature please", tools=(temperature,)).rule == "ask"


def test_help_names_what_the_tools_check() -> None:
    assert ask("help", tools=(get_time, get_weather)).text.endswith(
        "With my tools I can check the time and the weather.")


def test_tool_result_step_speaks_the_outputs() -> None:
    before = (tp.ChatMessage("user", "weather in Paris and Rome"),
              tp.ChatMessage("assistant", "Let me check."),
              tp.FunctionCall("c1", "get_weather", '{"city": "Paris"}'),
              tp.FunctionCall("c2", "get_weather", '{"city": "Rome"}'),
              tp.FunctionCallOutput("c1", "Sunny in Paris"),
              tp.FunctionCallOutput("c2", "no such city", is_error=True))
    llm = RuleLLM()
    reply = llm.reply(tp.LLMRequest(list(before), [get_weather]))
    assert reply == Reply("tool_result", "Sunny in Paris. Sorry, I could not use get_weather: no such city.")
    # never another call in the tool reply step, whatever the words
    assert reply.tool_calls == ()


@tp.function_tool
async def set_volume(level: int) -> str:
    """Set the volume.

    Args:
        level: the volume level
    """
    return f"volume {level}"


@tp.function_tool
async def set_speed(factor: float) -> str:
    """Set the speaking speed.

    Args:
        factor: how much faster
    """
    return f"speed {factor}"


def strict_json(text: str) -> object:
    def refuse(constant: str) -> object:
        raise ValueError(f"{constant} is not JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize(("text", "rule", "arguments"), [
    ("volume 1e5", "tool", {"level": 100000}),
    ("volume 2.5", "tool", {"level": 2}),
    ("set the volume to " + "9" * 400, "tool", {"level": int("9" * 400)}),  # exact, however long
    ("volume " + "9" * 5000, "ask", None),  # beyond what Python reads as an int: asked again
    ("volume 1e400", "ask", None),  # not finite
    ("speed 1e400", "ask", None),
    ("speed " + "9" * 400, "ask", None),  # inf as a float
    ("speed 1.5e-3", "tool", {"factor": 0.0015}),
    ("volume \u0663", "tool", {"level": 3}),  # an Arabic-Indic digit is a digit
])
def test_numbers_huge_exponent_and_unusable(text: str, rule: str, arguments: object) -> None:
    reply = ask(text, tools=(set_volume, set_speed))
    assert reply.rule == rule
    if arguments is None:
        assert reply.tool_calls == ()
    else:
        (call,) = reply.tool_calls
        assert strict_json(call.arguments_json()) == arguments


ALL_TOOLS = (get_time, get_weather, temperature, searchWiki, set_volume, set_speed)
WORDS = ["volume", "speed", "weather", "time", "temperature", "wiki", "in", "at", "for", "Paris",
         "celsius", "hello", "bye", "thanks", "repeat", "help", "-", ".", "e", "1e5", "-3", "2.5",
         "1e400", "1e-400", "9" * 400, "0" * 30, "\u0663", "\u00b2", "\u2019s", "\ufb01", "\u0130"]


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(), st.lists(st.one_of(st.sampled_from(WORDS), st.text(max_size=5)))
                 .map(" ".join)))
def test_any_text_gets_a_reply_never_an_exception(text: str) -> None:
    """Whatever the user said (or the STT made of it), RuleLLM answers: no exception,
    and every call it makes has strict JSON arguments the tool's own check accepts."""
    tools = {t.name: t for t in ALL_TOOLS}
    for history in ([tp.ChatMessage("user", text)],
                    [tp.ChatMessage("assistant", text, interrupted=True), tp.ChatMessage("user", text)]):
        reply = RuleLLM(now=lambda: NOON).reply(tp.LLMRequest(history, list(ALL_TOOLS)))
        assert reply.text and "".join(split_deltas(reply.text)) == reply.text.rstrip()
        for call in reply.tool_calls:
            assert isinstance(strict_json(call.arguments_json()), dict)
            tools[call.name].parse_arguments(call.arguments)


def test_bad_delays_are_refused() -> None:
    for bad in (-1.0, float("nan"), float("inf"), True, "1"):
        with pytest.raises(ValueError, match="first_delay"):
            RuleLLM(first_delay=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="delta_delay"):
        RuleLLM(delta_delay=-0.1)


async def test_get_time_says_the_local_time() -> None:
    out = await get_time.call(None, {})  # type: ignore[arg-type]
    assert isinstance(out, str) and re.fullmatch(r"It is ([0-9]|1[0-9]|2[0-3]):[0-5][0-9]\.", out)
    afternoon = RuleLLM(now=lambda: datetime(2026, 1, 1, 14, 5))
    assert afternoon.reply(tp.LLMRequest([tp.ChatMessage("user", "time?")], [])).text == "It is 14:05."


# -- streaming -------------------------------------------------------------------------------------

def test_split_deltas_gives_the_text_back() -> None:
    text = "Hello! I'm an extraordinary agent, at 9:41 — naïve café."
    pieces = split_deltas(text)
    assert "".join(pieces) == text
    assert pieces[:4] == ["Hello", "!", " I", "'"] and max(len(p.strip()) for p in pieces) <= 6
    assert split_deltas("") == []


async def test_stream_paces_small_deltas_then_the_tool_call(autojump_clock: trio.abc.Clock) -> None:
    llm = RuleLLM(first_delay=0.3, delta_delay=0.05)
    request = tp.LLMRequest([tp.ChatMessage("user", "what time is it")], [get_clock_time])
    t0 = trio.current_time()
    seen: list[tuple[float, tp.LLMChunk]] = []
    async for chunk in llm.stream(request):
        seen.append((trio.current_time() - t0, chunk))
    texts = [c for _, c in seen if isinstance(c, tp.TextDelta)]
    assert "".join(t.text for t in texts) == "Let me check." and len(texts) == 4
    assert [round(t, 6) for t, c in seen if isinstance(c, tp.TextDelta)] == [0.3, 0.35, 0.4, 0.45]
    assert seen[-1][1] == tp.ToolCall("get_clock_time", "{}")
    assert llm.rules == ["tool"]


async def test_stream_closed_early_stops(autojump_clock: trio.abc.Clock) -> None:
    llm = RuleLLM(first_delay=0.0, delta_delay=1.0)
    stream = llm.stream(tp.LLMRequest([tp.ChatMessage("user", "the cat sat on the mat")], []))
    first = await stream.__anext__()
    await stream.aclose()  # type: ignore[attr-defined]
    assert first == tp.TextDelta("I")
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


# -- in a session (virtual time) ---------------------------------------------------------------------

async def test_a_session_answers_through_the_tool(autojump_clock: trio.abc.Clock) -> None:
    llm = RuleLLM()
    async with tp.open_session(llm=llm, tts=FakeTTS(), output=tp.RealtimeAudioSink(),
                               tools=[get_clock_time]) as session:
        await session.generate_reply(user_input="Hi, what time is it?")
        await session.generate_reply(user_input="what did you say")
        await session.generate_reply(user_input="bye")
        history = list(session.history)
    call = history[2]
    assert isinstance(call, tp.FunctionCall)
    assert history == [
        tp.ChatMessage("user", "Hi, what time is it?"),
        tp.ChatMessage("assistant", "Let me check."),
        tp.FunctionCall(call.call_id, "get_clock_time", "{}"),
        tp.FunctionCallOutput(call.call_id, "It is 9:41."),
        tp.ChatMessage("assistant", "It is 9:41."),
        tp.ChatMessage("user", "what did you say"),
        tp.ChatMessage("assistant", "I said: It is 9:41."),
        tp.ChatMessage("user", "bye"),
        tp.ChatMessage("assistant", "Goodbye! Talk to you soon."),
    ]
    assert llm.rules == ["tool", "tool_result", "repeat", "goodbye"]


async def test_interrupts_mid_stream_and_mid_audio(autojump_clock: trio.abc.Clock) -> None:
    """Interrupted while it streams (slow deltas), nothing was heard and nothing is written
    for the agent; interrupted while its audio plays, the heard words are kept and
    "what did you say" repeats just those."""
    slow = RuleLLM(first_delay=0.1, delta_delay=0.5)
    async with tp.open_session(llm=slow, tts=FakeTTS(), output=tp.RealtimeAudioSink()) as session:
        speech = session.generate_reply(user_input="one two three four five six seven eight")
        await trio.sleep(1.0)  # a few deltas are out, the sentence is not
        speech.interrupt()
        await speech
        assert speech.interrupted
        await session.generate_reply(user_input="what did you say")
        first = list(session.history)
    assert first == [tp.ChatMessage("user", "one two three four five six seven eight"),
                     tp.ChatMessage("user", "what did you say"),
                     tp.ChatMessage("assistant", "I have not said anything yet.")]

    fast = RuleLLM(first_delay=0.1, delta_delay=0.01)
    async with tp.open_session(llm=fast, tts=FakeTTS(), output=tp.RealtimeAudioSink()) as session:
        speech = session.generate_reply(user_input="one two three four five six seven eight")
        await trio.sleep(1.5)  # the text is all out; about 1.2 s of its audio (3 words/s) was heard
        speech.interrupt()
        await speech
        await session.generate_reply(user_input="what did you say")
        second = list(session.history)
    heard = second[1]
    assert isinstance(heard, tp.ChatMessage) and heard.interrupted and heard.role == "assistant"
    full = "I heard: one two three four five six seven eight."
    # about 1.3 s of audio at 3 words/s: four or five words, cut at a word
    assert full.startswith(heard.text + " ") and 4 <= len(heard.text.split()) <= 5
    assert second[-1] == tp.ChatMessage("assistant", f"I said: {heard.text}. Then you stopped me.")


async def test_the_agent_hears_a_turn_and_answers(autojump_clock: trio.abc.Clock) -> None:
    """OfflineAgent.open_session with scripted ears: the STT's final makes a user turn and
    RuleLLM answers it (FakeTTS: no extra needed for any part)."""
    agent = offline_agent(tts=FakeTTS(), vad=ScriptedVAD([(0.5, 1.5)], window=0.02),
                          stt=ScriptedSTT([(1.7, "hello there")]), tools=())
    assert isinstance(agent, OfflineAgent) and isinstance(agent.llm, RuleLLM)
    async with agent.open_session(output=tp.RealtimeAudioSink(), audio_input=SilentInput()) as session:
        with trio.fail_after(30):
            while len(session.history) < 2 or session.speeches:  # noqa: ASYNC110 - no event for it
                await trio.sleep(0.1)
        history = list(session.history)
    assert history == [tp.ChatMessage("user", "hello there"),
                       tp.ChatMessage("assistant", "Hello! How can I help you?")]


# -- the real parts and the missing extras ---------------------------------------------------------------

def test_offline_agent_builds_the_real_parts() -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("pocketsphinx")
    from trio_playout.espeak import EspeakTTS
    from trio_playout.silero import SileroVAD
    from trio_playout.sphinx import PocketSphinxSTT

    try:
        agent = offline_agent(voice="en-us", rate=160)
    except MissingExtraError as exc:
        pytest.skip(f"espeak missing: {exc}")
    assert isinstance(agent.vad, SileroVAD) and isinstance(agent.stt, PocketSphinxSTT)
    assert isinstance(agent.tts, EspeakTTS) and agent.tts.rate == 160
    assert isinstance(agent.llm, RuleLLM) and agent.tools == (get_time,)


def test_missing_vad_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "trio_playout.silero", raising=False)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # an import of it now fails
    with pytest.raises(MissingExtraError, match=r"pip install 'trio-playout\[vad\]'") as info:
        offline_agent(tts=FakeTTS(), stt=ScriptedSTT())
    assert info.value.extra == "vad" and isinstance(info.value, ImportError)
    assert isinstance(info.value, tp.PlayoutError)


def test_missing_sphinx_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "trio_playout.sphinx", raising=False)
    monkeypatch.setitem(sys.modules, "pocketsphinx", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'trio-playout\[sphinx\]'") as info:
        offline_agent(tts=FakeTTS(), vad=ScriptedVAD())
    assert info.value.extra == "sphinx"


def test_missing_espeak_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "espeakng_loader", None)
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)  # no system libespeak-ng either
    with pytest.raises(MissingExtraError, match=r"pip install 'trio-playout\[espeak\]'") as info:
        offline_agent(vad=ScriptedVAD(), stt=ScriptedSTT())
    assert info.value.extra == "espeak" and "FakeTTS" in str(info.value)


def test_importing_the_module_is_light() -> None:
    code = ("import sys, trio_playout.offline; "
            "print(sorted(m for m in ('numpy', 'onnxruntime', 'pocketsphinx', 'openai', "
            "'trio_playout.espeak', 'trio_playout.silero', 'trio_playout.sphinx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]"


async def test_rules_keeps_the_last_thousand(autojump_clock: trio.abc.Clock) -> None:
    llm = RuleLLM(first_delay=0.0, delta_delay=0.0)
    for i in range(1005):
        text = "hello" if i < 5 else "bye"
        async for _ in llm.stream(tp.LLMRequest([tp.ChatMessage("user", text)], [])):
            pass
    assert llm.rules == ["goodbye"] * 1000
