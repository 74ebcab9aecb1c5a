"""The few livekit-agents internals the bridge reads, in one place.

Tested against livekit-agents 1.8.x. Each helper says which private member it uses and
falls back to public API (slower, same meaning) when the member is missing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

__all__ = [
    "activity_task_info",
    "done_future",
    "interrupt_future",
    "interrupt_reason",
    "is_released",
    "set_activity_task_info",
]

_TASK_INFO_ATTR = "__livekit_agents_activity_task"
_NON_BLOCKING_KEY = "__livekit_agents_tool_non_blocking"


def interrupt_future(handle: Any) -> asyncio.Future[Any] | None:
    """``SpeechHandle._interrupt_fut``: set once by the first interrupt."""
    fut = getattr(handle, "_interrupt_fut", None)
    return fut if isinstance(fut, asyncio.Future) else None


def done_future(handle: Any) -> asyncio.Future[Any] | None:
    """``SpeechHandle._done_fut``: set once when the speech is done."""
    fut = getattr(handle, "_done_fut", None)
    return fut if isinstance(fut, asyncio.Future) else None


def interrupt_reason(handle: Any) -> str:
    """A cancel reason naming the speech and the interrupt's source."""
    source = getattr(handle, "_interrupt_source", None) or "unknown"
    return f"livekit speech {handle.id} interrupted (source={source})"


def subscribe_interrupt(handle: Any, callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback()`` from the loop once ``handle`` is interrupted.

    The caller checks ``handle.interrupted`` first; this only covers later interrupts.
    Returns an unsubscribe function. Uses the private interrupt future (one loop hop);
    falls back to a task waiting on the public ``wait_if_not_interrupted``.
    """
    fut = interrupt_future(handle)
    if fut is not None:

        def _on_done(_f: asyncio.Future[Any]) -> None:
            callback()

        fut.add_done_callback(_on_done)

        def _remove() -> None:
            fut.remove_done_callback(_on_done)

        return _remove

    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def _watch() -> None:
        await handle.wait_if_not_interrupted([never])
        if handle.interrupted:
            callback()

    task = asyncio.get_running_loop().create_task(_watch())

    def _unsubscribe() -> None:
        never.cancel()
        task.cancel()

    return _unsubscribe


def activity_task_info(task: asyncio.Task[Any] | None) -> Any:
    """The per-task info livekit uses to know a task belongs to a tool call."""
    return getattr(task, _TASK_INFO_ATTR, None) if task is not None else None


def set_activity_task_info(task: asyncio.Task[Any], info: Any) -> None:
    """Give ``task`` the same tool-call identity as the tool's own task."""
    if info is not None:
        setattr(task, _TASK_INFO_ATTR, info)


def is_released(function_call: Any) -> bool:
    """True once a tool called ``ctx.update()`` (it no longer blocks its speech)."""
    extra = getattr(function_call, "extra", None) or {}
    return bool(extra.get(_NON_BLOCKING_KEY))
