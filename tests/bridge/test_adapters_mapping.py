"""What ``bridge.llm/tts/stt`` hand livekit and take back, checked through livekit's own code.

The request side goes through livekit's real formatters (``ChatContext.to_provider_format``
and ``ToolContext.parse_function_tools``, what the OpenAI plugin sends on the wire), so
a mapping livekit would reject or reshape fails here. The response side is built from
livekit's own event types.
"""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import llm as lk_llm
from livekit.agents import stt as lk_stt
from livekit.agents.types import USERDATA_TIMED_TRANSCRIPT, TimedString

import trio_playout as tp
from bridge._adapters import (
    _WordLocator,
    from_chat_chunk,
    from_rtc_frame,
    from_speech_event,
    to_chat_context,
    to_livekit_tools,
    to_rtc_frame,
)


class Size(enum.Enum):
    SMALL = "small"
    LARGE = "large"


@tp.function_tool
async def book_table(when: str, people: int, size: Size = Size.SMALL) -> str:
    """Book a table.

    Args:
        when: the time, in words
        people: how many guests
    """
    return "booked"


HISTORY: list[tp.ChatItem] = [
    tp.ChatMessage("user", "A table for two at eight, please."),
    tp.ChatMessage("assistant", "Let me check that for"),  # cut short by the user
    tp.ChatMessage("assistant", "", interrupted=True),  # interrupted before a word: dropped
    tp.FunctionCall("call_1", "book_table", '{"when": "eight", "people": 2}'),
    tp.FunctionCallOutput("call_1", "booked"),
    tp.FunctionCall("call_2", "book_table", "{not json"),
    tp.FunctionCallOutput("call_2", "arguments are not valid JSON", is_error=True),
]


def test_history_becomes_the_openai_messages_livekit_sends() -> None:
    history = [*HISTORY]
    history[1] = tp.ChatMessage("assistant", "Let me check that for", interrupted=True)
    ctx = to_chat_context(history, instructions="You are a booking agent.")
    messages, _ = ctx.to_provider_format(format="openai")
    assert messages[0] == {"role": "system", "content": "You are a booking agent."}
    assert messages[1] == {"role": "user", "content": "A table for two at eight, please."}
    assert messages[2]["role"] == "assistant"
    assert "Let me check that for" in json.dumps(messages[2])
    calls = [m for m in messages if m.get("tool_calls")]
    outputs = [m for m in messages if m["role"] == "tool"]
    call_ids = [c["id"] for m in calls for c in m["tool_calls"]]
    assert call_ids == ["call_1", "call_2"]
    assert [c["function"]["arguments"] for m in calls for c in m["tool_calls"]] == [
        '{"when": "eight", "people": 2}', "{not json"]
    assert [(o["tool_call_id"], o["content"]) for o in outputs] == [
        ("call_1", "booked"), ("call_2", "arguments are not valid JSON")]
    assert len(messages) == 2 + 1 + len(calls) + 2  # the empty assistant message is gone


def test_items_keep_their_kind_order_and_flags() -> None:
    ctx = to_chat_context(
        [tp.ChatMessage("assistant", "half a sent", interrupted=True), *HISTORY[3:5]])
    kinds = [item.type for item in ctx.items]
    assert kinds == ["message", "function_call", "function_call_output"]
    message, _call, output = ctx.items
    assert isinstance(message, lk_llm.ChatMessage) and message.interrupted
    assert isinstance(output, lk_llm.FunctionCallOutput)
    assert output.name == "book_table"  # livekit's output names its tool; ours comes from the call
    assert output.is_error is False
    assert to_chat_context([]).items == []


def test_tools_reach_the_wire_with_our_schema_unchanged() -> None:
    tools = to_livekit_tools([book_table])
    wire = lk_llm.ToolContext(tools).parse_function_tools("openai", strict=True)
    assert wire == [{"type": "function", "function": book_table.to_schema()}]
    params = wire[0]["function"]["parameters"]
    assert params["required"] == ["when", "people"]
    assert params["properties"]["size"]["enum"] == ["small", "large"]
    assert params["additionalProperties"] is False


async def test_the_raw_tool_body_is_never_meant_to_run() -> None:
    (tool,) = to_livekit_tools([book_table])
    with pytest.raises(RuntimeError, match="trio session runs tools"):
        await tool({"when": "eight", "people": 2})  # type: ignore[operator]


def _chunk(content: str | None = None, *calls: lk_llm.FunctionToolCall) -> lk_llm.ChatChunk:
    return lk_llm.ChatChunk(id="r1", delta=lk_llm.ChoiceDelta(role="assistant", content=content,
                                                             tool_calls=list(calls)))


def test_chat_chunks_become_text_deltas_and_whole_tool_calls() -> None:
    call_a = lk_llm.FunctionToolCall(name="book_table", arguments='{"when":"eight"}', call_id="a")
    call_b = lk_llm.FunctionToolCall(name="book_table", arguments="{}", call_id="")
    assert list(from_chat_chunk(_chunk("Sure, "))) == [tp.TextDelta("Sure, ")]
    assert list(from_chat_chunk(_chunk("ok.", call_a, call_b))) == [
        tp.TextDelta("ok."),
        tp.ToolCall("book_table", '{"when":"eight"}', "a"),
        tp.ToolCall("book_table", "{}", None),  # no id from the provider: the session makes one
    ]
    usage = lk_llm.CompletionUsage(completion_tokens=1, prompt_tokens=2, total_tokens=3)
    assert list(from_chat_chunk(lk_llm.ChatChunk(id="r1", usage=usage))) == []
    assert list(from_chat_chunk(_chunk(""))) == []


def _event(kind: lk_stt.SpeechEventType, *texts: str) -> lk_stt.SpeechEvent:
    alternatives = [lk_stt.SpeechData(language="en", text=t) for t in texts]  # type: ignore[arg-type]
    return lk_stt.SpeechEvent(kind, alternatives=alternatives)


def test_speech_events_become_transcripts() -> None:
    K = lk_stt.SpeechEventType
    assert list(from_speech_event(_event(K.FINAL_TRANSCRIPT, " book a table ", "look a cable"))) == [
        tp.Transcript("book a table", final=True)]
    assert list(from_speech_event(_event(K.INTERIM_TRANSCRIPT, "book a"))) == [
        tp.Transcript("book a", final=False)]
    assert list(from_speech_event(_event(K.PREFLIGHT_TRANSCRIPT, "book a ta"))) == [
        tp.Transcript("book a ta", final=False)]
    for kind in (K.START_OF_SPEECH, K.END_OF_SPEECH, K.RECOGNITION_USAGE):
        assert list(from_speech_event(_event(kind, "x"))) == []
    assert list(from_speech_event(_event(K.FINAL_TRANSCRIPT, "   "))) == []
    assert list(from_speech_event(_event(K.FINAL_TRANSCRIPT))) == []


def test_frames_cross_both_ways_sample_exact() -> None:
    pcm = bytes(range(256)) * 6  # 768 samples, stereo: 384 per channel
    ours = tp.AudioFrame(pcm, 24000, 2)
    theirs = to_rtc_frame(ours)
    assert (theirs.sample_rate, theirs.num_channels, theirs.samples_per_channel) == (24000, 2, 384)
    assert from_rtc_frame(theirs) == ours


def test_timed_words_are_placed_in_the_text() -> None:
    text = "Book 10 tables, then book two more."
    locate = _WordLocator(text)

    def frame(*words: Any) -> rtc.AudioFrame:
        f = rtc.AudioFrame(b"\0\0" * 240, 24000, 1, 240)
        f.userdata[USERDATA_TIMED_TRANSCRIPT] = list(words)
        return f

    first = locate.words(frame(TimedString("Book ", start_time=0.0, end_time=0.2),
                               TimedString("ten ", start_time=0.2, end_time=0.4)))  # normalized: skipped
    second = locate.words(frame(TimedString("tables,", start_time=0.4, end_time=0.8),
                                TimedString("book", start_time=1.0), TimedString("untimed")))
    assert first == (tp.WordTiming(0.0, 0.2, 0, 4),)
    assert [text[w.start_char:w.end_char] for w in second] == ["tables,", "book"]
    assert second[1].start_char == text.index("book")  # the second "book", found forward
    assert second[1].end == 1.0  # no end time: its start
    assert locate.words(rtc.AudioFrame(b"\0\0", 24000, 1, 1)) == ()
