"""``OpenAILLM``: streaming chat completions with tools, on trio.

One step is one ``POST /chat/completions`` with ``stream: true``. Text deltas are
handed on as they come; tool calls are assembled from their deltas by ``index``
(the id and name come first, the arguments in pieces, parallel calls interleaved)
and handed on when the stream ends, in index order, so a stream that breaks half way
through a call's arguments never runs a half-formed call.

The history is mapped to messages as follows: user, system and assistant messages
as they are (an interrupted assistant message holds only what the user heard, which
is what the model must believe it said); each run of function calls and outputs
becomes one assistant message with ``tool_calls`` (merged into the assistant
message just before it, the step's text) followed by one ``tool`` message per call,
in call order. A call without a recorded output gets an explicit "no output" tool
message and an output without its call is dropped (logged), since OpenAI-compatible
servers reject both shapes with a 400. Arguments that are not valid JSON are sent
back as ``{}`` (some servers parse them and fail the whole request); the call's
error output already tells the model what was wrong.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import openai

from ._history import ChatItem, ChatMessage, FunctionCall, FunctionCallOutput
from ._models import LLMChunk, LLMRequest, TextDelta, ToolCall
from ._openai_common import RetryPolicy, close_quietly, make_client, next_item, retrying
from ._openai_common import call as provider_call
from ._tools import FunctionTool

__all__ = ["OpenAILLM", "history_to_messages", "tool_schemas"]

logger = logging.getLogger("trio_playout.openai")


def tool_schemas(tools: Sequence[FunctionTool]) -> list[dict[str, Any]]:
    """Our tools as the ``tools`` parameter of a chat completion."""
    return [{"type": "function", "function": tool.to_schema()} for tool in tools]


def _json_or_empty(arguments: str) -> str:
    try:
        json.loads(arguments)
    except ValueError:
        return "{}"
    return arguments


def history_to_messages(history: Sequence[ChatItem], instructions: str | None = None
                        ) -> list[dict[str, Any]]:
    """The chat history as chat-completion messages (see the module docstring)."""
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    i = 0
    while i < len(history):
        item = history[i]
        if isinstance(item, ChatMessage):
            messages.append({"role": item.role, "content": item.text})
            i += 1
            continue
        calls: list[FunctionCall] = []
        outputs: dict[str, FunctionCallOutput] = {}
        while i < len(history) and isinstance(history[i], (FunctionCall, FunctionCallOutput)):
            entry = history[i]
            if isinstance(entry, FunctionCall):
                calls.append(entry)
            elif isinstance(entry, FunctionCallOutput):
                outputs.setdefault(entry.call_id, entry)
            i += 1
        known = {c.call_id for c in calls}
        for call_id in outputs.keys() - known:
            logger.warning("history: output for call %s without its call; not sent to the LLM", call_id)
        if not calls:
            continue
        tool_calls = [{"id": c.call_id, "type": "function",
                       "function": {"name": c.name, "arguments": _json_or_empty(c.arguments)}} for c in calls]
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant" and "tool_calls" not in last:
            last["tool_calls"] = tool_calls
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": tool_calls})
        for c in calls:
            out = outputs.get(c.call_id)
            messages.append({"role": "tool", "tool_call_id": c.call_id,
                             "content": out.output if out is not None else "no output was recorded"})
    return messages


@dataclass
class _PartialCall:
    call_id: str | None = None
    name: str = ""
    arguments: str = ""


class _CallAssembler:
    """Tool-call deltas put together by their ``index``."""

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}

    def add(self, delta: Any) -> None:
        index = delta.index if delta.index is not None else len(self._calls)
        call = self._calls.setdefault(index, _PartialCall())
        if delta.id:
            call.call_id = delta.id
        function = delta.function
        if function is not None:
            if function.name and not call.name:  # some servers repeat it in every delta
                call.name = function.name
            if function.arguments:
                call.arguments += function.arguments

    def finish(self) -> list[ToolCall]:
        return [ToolCall(c.name, c.arguments, c.call_id) for _, c in sorted(self._calls.items())]


class OpenAILLM:
    """Streams chat completions from any OpenAI-compatible server (an :class:`~trio_playout.LLM`).

    ``base_url`` and ``api_key`` default to ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``
    (a ``base_url`` without a key works: local servers need none). Pass ``client=``
    to share one ``openai.AsyncOpenAI`` (it is used with our retry and timeout
    settings and not closed by us). ``instructions`` becomes the first system
    message. ``timeout`` bounds the wait for the response and for every next chunk;
    ``max_retries`` attempts more are made, only before the first chunk is handed on.
    ``extra`` is passed to ``chat.completions.create`` (``temperature``,
    ``max_tokens``...). Close it with ``await llm.aclose()`` or ``async with``.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 client: openai.AsyncOpenAI | None = None, instructions: str | None = None,
                 timeout: float = 30.0, max_retries: int = 2, backoff: float = 0.5,
                 max_retry_after: float = 10.0, parallel_tool_calls: bool | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        self.model = model
        self.instructions = instructions
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries, backoff, max_retry_after)
        self.parallel_tool_calls = parallel_tool_calls
        self.extra = dict(extra or {})
        self._client, self._owned = make_client(client, base_url, api_key, timeout)

    async def aclose(self) -> None:
        if self._owned:
            await self._client.close()

    async def __aenter__(self) -> OpenAILLM:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        messages = history_to_messages(request.history, self.instructions)
        tools = tool_schemas(request.tools)
        return retrying("chat completion", self.retry, lambda: self._attempt(messages, tools))

    async def _attempt(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
                       ) -> AsyncIterator[LLMChunk]:
        what = f"chat completion ({self.model})"
        options: dict[str, Any] = dict(self.extra)
        if tools:
            options["tools"] = tools
            if self.parallel_tool_calls is not None:
                options["parallel_tool_calls"] = self.parallel_tool_calls
        create: Any = self._client.chat.completions.create  # its overloads cannot see stream=True
        response: Any = await provider_call(what, self.timeout, lambda: create(
            model=self.model, messages=messages, stream=True, **options))
        try:
            calls = _CallAssembler()
            chunks = response.__aiter__()
            while True:
                more, chunk = await next_item(what, self.timeout, chunks)
                if not more:
                    break
                assert chunk is not None
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue  # n > 1 is not a conversation
                    delta = choice.delta
                    if delta is None:
                        continue
                    if delta.content:
                        yield TextDelta(delta.content)
                    for tool_delta in delta.tool_calls or ():
                        calls.add(tool_delta)
            for tool_call in calls.finish():
                yield tool_call
        finally:
            await close_quietly(response.close, what)
