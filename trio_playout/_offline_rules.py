"""``RuleLLM``: a deterministic, rule-based :class:`~trio_playout.LLM` that needs no model.

It reads the last user message and answers by the first rule that matches (the list
is in :class:`RuleLLM`'s docstring). It streams its answer in small deltas after a
short "time to first token", on trio's clock, like a real LLM, so everything that
consumes an LLM (sentence splitting, the TTS, interrupts mid-stream) is exercised
the same way; under ``trio.testing.MockClock`` it runs in virtual time.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import trio

from ._history import ChatItem, ChatMessage, FunctionCall, FunctionCallOutput
from ._models import LLMChunk, LLMRequest, TextDelta, ToolCall
from ._tools import FunctionTool, function_tool

__all__ = ["Reply", "RuleLLM", "get_time", "split_deltas"]

# Words of a tool's name that say nothing about what it is for ("get_time" -> "time").
_NAME_NOISE = frozenset({"get", "set", "fetch", "find", "lookup", "look", "up", "check", "read", "query",
                         "current", "the", "a", "an", "of", "for", "my", "tool", "now", "local"})
# Parameters that name a place: filled from "in Paris", "at Lyon", "for New York".
_PLACE_PARAMS = frozenset({"city", "location", "place", "town", "country", "region", "where"})
# Parameters that take what the user said, as it is.
_TEXT_PARAMS = frozenset({"query", "text", "question", "topic", "utterance", "request", "q"})
# Words that end a place name ("in Paris tomorrow" -> "Paris").
_PLACE_STOP = frozenset({"today", "tomorrow", "tonight", "now", "right", "please", "this", "at", "on",
                         "and", "then", "is", "it", "will", "be"})

_KEEP_RULES = 1000

_GOODBYE = ("goodbye", "bye", "bye bye", "good night", "see you", "farewell", "that's all", "that is all")
_GREETING = ("hello", "hi", "hey", "good morning", "good afternoon", "good evening", "greetings", "howdy")
_THANKS = ("thanks", "thank you", "thank")
_REPEAT = ("what did you say", "what did you just say", "what'd you say", "say that again", "say it again",
           "repeat", "come again", "pardon", "what was that")
_HELP = ("help", "what can you do", "who are you", "what are you")


@dataclass(frozen=True)
class Reply:
    """What :meth:`RuleLLM.reply` decided for one step: the rule, the text and the calls."""

    rule: str
    text: str
    tool_calls: tuple[ToolCall, ...] = ()


def split_deltas(text: str) -> list[str]:
    """``text`` cut the way an LLM streams it: word pieces of up to six letters, each
    with the whitespace before it, and punctuation on its own. Joined, they give
    ``text`` back exactly (less trailing whitespace)."""
    return re.findall(r"\s*(?:\w{1,6}|[^\w\s])", text)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower().replace("\u2019", "'"))


def _has(words: Sequence[str], phrases: Sequence[str]) -> bool:
    padded = f" {' '.join(words)} "
    return any(f" {phrase} " in padded for phrase in phrases)


def _is_user(item: ChatItem) -> bool:
    return isinstance(item, ChatMessage) and item.role == "user"


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def _clock(now: datetime) -> str:
    return f"It is {now.hour}:{now.minute:02d}."  # "9:41", which a TTS reads well


@function_tool
async def get_time() -> str:
    """The local time, to answer "what time is it?"."""
    return _clock(datetime.now())


@dataclass
class RuleLLM:
    """An :class:`~trio_playout.LLM` that answers the last user message by fixed rules.

    The first rule that matches wins, in this order:

    1. ``start``: no user message yet (``generate_reply()`` to open the conversation):
       an introduction.
    2. ``tool_result``: this step follows the tool calls it made for the same user
       message: it speaks their outputs ("Sorry, I could not ..." for an error).
    3. ``empty``: the user message has no words: it asks the user to say it again.
    4. ``repeat``: "what did you say", "say that again", "repeat", "pardon": the last
       thing the agent said, as heard (an interrupted message says so).
    5. ``goodbye``: "bye", "goodbye", "good night", "see you".
    6. ``thanks``: a message that starts with "thanks" or "thank you".
    7. ``tool``: a word of a tool's name (less ``get_``-like noise: ``get_time`` ->
       "time", ``get_weather`` -> "weather", plurals too) is in the message and its
       required parameters can be filled: "Let me check." and a
       :class:`~trio_playout.ToolCall`. Parameters are filled from the words: a place
       (``city``, ``location``...) from "in/at/for <Place>", a ``query``/``text`` with the
       whole message, an enum with the value the user named, a number with the first
       number ("3", "2.5", "1e5"; one that is not finite counts as none). Optional
       ones it cannot fill are left out.
       ``ask``: a tool's name matches but a required parameter cannot be filled: it
       names the missing parameter.
    8. ``time``: "time" or "clock" and no tool for it: the time from :attr:`now`.
    9. ``greeting``: "hello", "hi", "hey", "good morning"...
    10. ``help``: "help", "what can you do": what it can do, naming its tools.
    11. ``echo``: anything else: "I heard: <the message>."

    The answer streams as :func:`split_deltas` pieces: ``first_delay`` seconds before
    the first one, ``delta_delay`` between them, on trio's clock (virtual time under
    ``MockClock``). :meth:`reply` gives the decision without streaming;
    :attr:`rules` records the rule of each step, in order (the last 1000, so a
    long-lived one shared by many sessions does not grow without bound).
    """

    first_delay: float = 0.2
    delta_delay: float = 0.02
    now: Callable[[], datetime] = datetime.now
    rules: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        for name in ("first_delay", "delta_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        reply = self.reply(request)
        self.rules.append(reply.rule)
        del self.rules[:-_KEEP_RULES]
        await trio.sleep(self.first_delay)
        for i, piece in enumerate(split_deltas(reply.text)):
            if i and self.delta_delay:
                await trio.sleep(self.delta_delay)
            yield TextDelta(piece)
        for call in reply.tool_calls:
            yield call

    # -- the rules ---------------------------------------------------------------------------
    def reply(self, request: LLMRequest) -> Reply:
        """The rule that matches ``request`` and what it answers (see the class docstring)."""
        history = list(request.history)
        last_user = next((i for i in range(len(history) - 1, -1, -1)
                          if _is_user(history[i])), None)
        if last_user is None:
            return Reply("start", "Hello! I am an offline agent. Ask me the time, or say goodbye.")
        after = history[last_user + 1:]
        if any(isinstance(item, FunctionCall) for item in after):
            return Reply("tool_result", self._tool_result(after))
        message = history[last_user]
        assert isinstance(message, ChatMessage)
        text = " ".join(message.text.split())
        words = _words(text)
        if not words:
            return Reply("empty", "Sorry, I did not catch that. Could you say it again?")
        if _has(words, _REPEAT):
            return Reply("repeat", self._repeat(history[:last_user]))
        if _has(words, _GOODBYE):
            return Reply("goodbye", "Goodbye! Talk to you soon.")
        if words[0] in _THANKS:
            return Reply("thanks", "You're welcome.")
        for tool in request.tools:
            arguments = _call_arguments(tool, words, text)
            if isinstance(arguments, _Missing):
                return Reply("ask", f"I can check the {_topic(tool.name)}, but I need the {arguments.name}. "
                                    f"Please say it again with the {arguments.name}.")
            if arguments is not None:
                return Reply("tool", "Let me check.", (ToolCall(tool.name, arguments),))
        if _has(words, ("time", "clock")):
            return Reply("time", _clock(self.now()))
        if _has(words, _GREETING):
            return Reply("greeting", "Hello! How can I help you?")
        if _has(words, _HELP):
            topics = [f"the {_topic(t.name)}" for t in request.tools]
            names = " and ".join([", ".join(topics[:-1]), topics[-1]] if len(topics) > 1 else topics)
            tools = f" With my tools I can check {names}." if names else ""
            return Reply("help", "I can greet you, tell you the time, repeat what I said and say "
                                 f"goodbye; anything else, I repeat back to you.{tools}")
        return Reply("echo", f"I heard: {_sentence(text)}")

    @staticmethod
    def _tool_result(after: Sequence[ChatItem]) -> str:
        names = {item.call_id: item.name for item in after if isinstance(item, FunctionCall)}
        parts: list[str] = []
        for item in after:
            if not isinstance(item, FunctionCallOutput) or item.call_id not in names:
                continue
            name = names[item.call_id]
            if item.interrupted:
                parts.append(f"I was interrupted while using {name}.")
            elif item.is_error:
                parts.append(f"Sorry, I could not use {name}: {_sentence(item.output)}")
            else:
                parts.append(_sentence(item.output) or f"{name} gave no answer.")
        return " ".join(parts) or "I have no answer from my tools."

    @staticmethod
    def _repeat(before: Sequence[ChatItem]) -> str:
        said = next((item for item in reversed(before)
                     if isinstance(item, ChatMessage) and item.role == "assistant" and item.text.strip()),
                    None)
        if said is None:
            return "I have not said anything yet."
        if said.interrupted:
            return f"I said: {_sentence(said.text.strip())} Then you stopped me."
        return f"I said: {said.text.strip()}"


# -- tool arguments -------------------------------------------------------------------------
def _name_keys(name: str) -> list[str]:
    """The words of a tool's name that say what it is about: ``get_time`` -> ``["time"]``."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name)
    return [k for k in re.split(r"[_\-\s]+", spaced.lower()) if k and k not in _NAME_NOISE]


def _topic(name: str) -> str:
    return " ".join(_name_keys(name)) or name


def _place(words: Sequence[str]) -> str | None:
    for i in range(len(words) - 1, -1, -1):
        if words[i] in ("in", "at", "for") and i + 1 < len(words) and words[i + 1] not in _PLACE_STOP:
            taken: list[str] = []
            for word in words[i + 1:i + 4]:
                if word in _PLACE_STOP:
                    break
                taken.append(word)
            return " ".join(w.capitalize() for w in taken)
    return None


def _fill(name: str, schema: Mapping[str, Any], words: Sequence[str], text: str) -> Any:
    """A value for one parameter from the user's words, or None."""
    if "enum" in schema:
        lowered = set(words)
        return next((v for v in schema["enum"] if isinstance(v, str) and v.lower() in lowered), None)
    kind = schema.get("type")
    if kind in ("integer", "number"):
        return _number(text, integer=kind == "integer")
    if kind == "string" or not kind:
        if name.lower() in _PLACE_PARAMS:
            return _place(words)
        if name.lower() in _TEXT_PARAMS:
            return text
    return None


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def _number(text: str, *, integer: bool) -> int | float | None:
    """The first number in ``text`` ("3", "2.5", "1e5"), or None if there is none it can use.

    A whole number is read exactly, however long; one that is not finite as a float
    ("1e400", or 400 digits for a ``number``) or too long for Python to read (over
    4300 digits) counts as no number: the tool is asked for it again rather than
    called with "Infinity", which is not JSON. An ``integer`` given with a fraction
    is truncated ("2.5" -> 2).
    """
    found = _NUMBER.search(text)
    if found is None:
        return None
    literal = found.group()
    try:
        if integer and literal.lstrip("-").isdigit():
            return int(literal)
        value = float(literal)
    except ValueError:  # beyond sys.get_int_max_str_digits()
        return None
    if not math.isfinite(value):
        return None
    return int(value) if integer else value


@dataclass(frozen=True)
class _Missing:
    name: str  # a required parameter the message does not fill


def _call_arguments(tool: FunctionTool, words: Sequence[str], text: str) -> str | _Missing | None:
    """The JSON arguments to call ``tool`` with; None if the message is not about it."""
    keys = set(_name_keys(tool.name))
    said = set(words) | {w[:-1] for w in words if w.endswith("s")}
    if not keys & said:
        return None
    schema = tool.parameters_schema
    required = set(schema.get("required", ()))
    arguments: dict[str, Any] = {}
    for name, prop in schema.get("properties", {}).items():
        value = _fill(name, prop, words, text)
        if value is None:
            if name in required:
                return _Missing(name)
            continue
        arguments[name] = value
    return json.dumps(arguments, sort_keys=True)
