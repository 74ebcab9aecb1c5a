"""Conversation history: the chat items a session records.

Items are immutable; the history only grows. Every write of a speech goes through
``Session._commit``, which refuses writes once the speech is done, so "nothing is
written after done" is enforced in one place rather than hoped for.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, overload

__all__ = ["ChatItem", "ChatMessage", "FunctionCall", "FunctionCallOutput", "History"]


@dataclass(frozen=True)
class ChatMessage:
    """A user or assistant message.

    For the assistant, ``text`` is what the listener actually heard: an interrupted
    message holds the words up to the playback position and ``interrupted=True``.
    """

    role: Literal["user", "assistant", "system"]
    text: str
    interrupted: bool = False


@dataclass(frozen=True)
class FunctionCall:
    """A tool call the LLM made. ``arguments`` is the JSON text the LLM produced.

    ``call_id`` is unique in the session's history. When the LLM repeated an id, the
    repeat is recorded under a fresh session-made id, and its one output is an error
    that names the repeated id; so every call id has exactly one output.
    """

    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class FunctionCallOutput:
    """The one terminal record of a tool call: its result, its error, or "interrupted"."""

    call_id: str
    output: str
    is_error: bool = False
    interrupted: bool = False


ChatItem: TypeAlias = ChatMessage | FunctionCall | FunctionCallOutput


class History(Sequence[ChatItem]):
    """An append-only, ordered list of chat items.

    It reads like a list (indexing, ``len``, iteration). Only the session appends.
    """

    def __init__(self) -> None:
        self._items: list[ChatItem] = []

    def _append(self, item: ChatItem) -> None:
        self._items.append(item)

    @overload
    def __getitem__(self, index: int) -> ChatItem: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[ChatItem]: ...
    def __getitem__(self, index: int | slice) -> ChatItem | Sequence[ChatItem]:
        return self._items[index]

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[ChatItem]:
        return iter(self._items)

    def __repr__(self) -> str:
        return f"History({self._items!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self._items == other._items
        if isinstance(other, list):
            return self._items == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def outputs_for(self, call_id: str) -> list[FunctionCallOutput]:
        """Every output recorded for ``call_id`` (exactly one once its speech is done)."""
        return [i for i in self._items if isinstance(i, FunctionCallOutput) and i.call_id == call_id]
