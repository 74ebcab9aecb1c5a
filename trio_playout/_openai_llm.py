"""``OpenAILLM``: streaming chat completions with tools, on trio.

One step is one ``POST /chat/completions`` with ``stream: true``. Text deltas are
handed on as they come; tool calls are assembled from their deltas by ``index``
(the id and name come first, the arguments in pieces, parallel calls interleaved)
and handed on when the stream ends, in index order, so a stream that breaks half way
through a call's arguments never runs a half-formed call. A delta without ``index``
(llama.cpp, some Ollama versions) continues the call before it unless it plainly
starts a new one (see :class:`_CallAssembler`). A chunk of the wrong shape (``choices``
null, a delta field of the wrong type, a call that never got a name) fails the step
with :class:`~trio_playout.ProviderResponseError`, like any other unreadable response.

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

from ._exceptions import VoiceOptionsError
from ._history import ChatItem, ChatMessage, FunctionCall, FunctionCallOutput
from ._models import LLMChunk, LLMRequest, TextDelta, ToolCall
from ._openai_common import (
    RetryPolicy,
    check_common,
    check_number,
    check_text,
    close_quietly,
    make_client,
    map_error,
    next_item,
    retrying,
)
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
    """Tool-call deltas put together by their ``index``.

    Some servers (llama.cpp, some Ollama versions) leave ``index`` out. A delta without
    one continues the call before it, unless it plainly starts another: it carries an
    ``id`` other than that call's, or a name while that call already has a different
    one or already holds complete JSON arguments. So one call streamed in pieces stays
    one call, and whole calls sent one per delta stay apart.
    """

    def __init__(self) -> None:
        self._calls: dict[int, _PartialCall] = {}
        self._last: int | None = None

    def _index_of(self, delta: Any, name: str | None) -> int:
        index = delta.index
        if index is not None:
            if isinstance(index, bool) or not isinstance(index, int):
                raise TypeError(f"tool call index {index!r} is not an integer")
            return index
        if self._last is None:
            return 0
        last = self._calls[self._last]
        new_id = bool(delta.id) and last.call_id is not None and delta.id != last.call_id
        new_name = bool(name) and bool(last.name) and (name != last.name or _complete(last.arguments))
        return max(self._calls) + 1 if new_id or new_name else self._last

    def add(self, delta: Any) -> None:
        function = delta.function
        name = function.name if function is not None else None
        arguments = function.arguments if function is not None else None
        for field_name, value in (("id", delta.id), ("name", name), ("arguments", arguments)):
            if value is not None and not isinstance(value, str):
                raise TypeError(f"tool call {field_name} {value!r} is not a string")
        index = self._index_of(delta, name)
        call = self._calls.setdefault(index, _PartialCall())
        self._last = index
        if delta.id:
            call.call_id = delta.id
        if name and not call.name:  # some servers repeat it in every delta
            call.name = name
        if arguments:
            call.arguments += arguments

    def finish(self) -> list[ToolCall]:
        for index, c in sorted(self._calls.items()):
            if not c.name:
                raise ValueError(f"tool call {index} ({c.call_id or 'no id'}) came without a function name")
        return [ToolCall(c.name, c.arguments, c.call_id) for _, c in sorted(self._calls.items())]


def _complete(arguments: str) -> bool:
    """Whether ``arguments`` is already a whole JSON object (a call that needs no more)."""
    try:
        return isinstance(json.loads(arguments), dict)
    except ValueError:
        return False


def _read_chunk(chunk: Any, calls: _CallAssembler) -> str:
    """The text of one chunk's first choice; its tool-call deltas go to ``calls``.

    Raises on a chunk that does not have the shape of the API (``choices`` null or not
    a list, a delta of the wrong type): the caller turns that into a typed error.
    """
    text = ""
    choices = chunk.choices
    if not isinstance(choices, list):
        raise TypeError(f"a chunk whose choices are {choices!r}, not a list")
    for choice in choices:
        if choice.index != 0:
            continue  # n > 1 is not a conversation
        delta = choice.delta
        if delta is None:
            continue
        content = delta.content
        if content is not None and not isinstance(content, str):
            raise TypeError(f"delta content {content!r} is not a string")
        text += content or ""
        for tool_delta in delta.tool_calls or ():
            calls.add(tool_delta)
    return text


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
    Options of the wrong type or out of range (``timeout`` finite > 0, ``max_retries``
    an integer in [0, 100], ``backoff`` and ``max_retry_after`` finite >= 0) raise
    :class:`~trio_playout.VoiceOptionsError` here, naming the option.
    """

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None,
                 client: openai.AsyncOpenAI | None = None, instructions: str | None = None,
                 timeout: float = 30.0, max_retries: int = 2, backoff: float = 0.5,
                 max_retry_after: float = 10.0, parallel_tool_calls: bool | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        check_text("model", model)
        check_text("instructions", instructions, optional=True, empty=True)
        check_common(base_url=base_url, api_key=api_key, client=client, extra=extra)
        if parallel_tool_calls is not None and not isinstance(parallel_tool_calls, bool):
            raise VoiceOptionsError(
                f"parallel_tool_calls must be a bool or None, got {parallel_tool_calls!r}")
        self.model = model
        self.instructions = instructions
        self.timeout = check_number("timeout", timeout, lo_open=True)
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
                try:
                    text = _read_chunk(chunk, calls)
                except Exception as exc:  # a chunk of the wrong shape: typed, never raw
                    raise map_error(exc, what) from exc
                if text:
                    yield TextDelta(text)
            try:
                finished = calls.finish()
            except Exception as exc:
                raise map_error(exc, what) from exc
            for tool_call in finished:
                yield tool_call
        finally:
            await close_quietly(response.close, what)
