"""Our chat history and tools as livekit's, and livekit's chat chunks as ours.

The pure conversions under ``bridge.llm`` (:class:`bridge._adapters.LivekitLLM`):
history to a livekit ``ChatContext``, tools to livekit raw function tools carrying
our JSON schemas, and a ``ChatChunk`` back to :class:`~trio_playout.TextDelta` and
:class:`~trio_playout.ToolCall`. No I/O and no loop here: they can be tested without one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from livekit.agents import llm as lk_llm

import trio_playout as tp


async def _never_called(raw_arguments: dict[str, object]) -> None:
    """Body of the raw tools we hand livekit: the trio session runs the calls itself."""
    raise RuntimeError("a bridged tool schema was called by livekit; the trio session runs tools")


def to_chat_context(history: Sequence[tp.ChatItem], instructions: str | None = None) -> lk_llm.ChatContext:
    """Our history as a livekit ``ChatContext``, in order.

    Empty messages are left out (an assistant reply interrupted before its first
    word; providers reject empty content). An output's tool name, which livekit's
    item carries and ours does not, comes from its call.
    """
    items: list[Any] = []
    if instructions:
        items.append(lk_llm.ChatMessage(role="system", content=[instructions]))
    names: dict[str, str] = {}
    for item in history:
        if isinstance(item, tp.ChatMessage):
            if item.text:
                items.append(lk_llm.ChatMessage(role=item.role, content=[item.text],
                                                interrupted=item.interrupted))
        elif isinstance(item, tp.FunctionCall):
            names[item.call_id] = item.name
            items.append(lk_llm.FunctionCall(call_id=item.call_id, name=item.name,
                                             arguments=item.arguments))
        elif isinstance(item, tp.FunctionCallOutput):
            items.append(lk_llm.FunctionCallOutput(call_id=item.call_id, name=names.get(item.call_id, ""),
                                                   output=item.output, is_error=item.is_error))
        else:  # pragma: no cover - the history holds only the three kinds
            raise TypeError(f"unknown history item {item!r}")
    return lk_llm.ChatContext(items)


def to_livekit_tools(tools: Sequence[tp.FunctionTool]) -> list[lk_llm.Tool]:
    """Our tools as livekit raw function tools: name, description and our JSON schema."""
    return [lk_llm.function_tool(_never_called, raw_schema=tool.to_schema()) for tool in tools]


def from_chat_chunk(chunk: lk_llm.ChatChunk) -> Iterable[tp.LLMChunk]:
    """A livekit ``ChatChunk`` as our chunks: its text first, then its (whole) tool calls."""
    delta = chunk.delta
    if delta is None:
        return ()
    out: list[tp.LLMChunk] = []
    if delta.content:
        out.append(tp.TextDelta(delta.content))
    for call in delta.tool_calls:
        out.append(tp.ToolCall(name=call.name, arguments=call.arguments, call_id=call.call_id or None))
    return out
