"""The few livekit-agents internals the bridge relies on, in one place.

Tested against livekit-agents 1.8.x. Each helper says which private member (or log
message) it uses, and what happens without it: the waits fall back to public API
(slower, same meaning); the transcript freeze and the quiet interrupt log do nothing.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any

__all__ = [
    "activity_task_info",
    "done_future",
    "freeze_transcript",
    "interrupt_future",
    "interrupt_reason",
    "is_released",
    "quiet_tool_error_warning",
    "set_activity_task_info",
    "transcript_segment_above",
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


def transcript_segment_above(output: Any, *, depth: int = 4) -> Any:
    """The current segment of the ``TranscriptSynchronizer`` above ``output``, or None.

    Looks up the chain of outputs that forward ``output``'s ``playback_finished`` (up to
    ``depth`` levels: pass-through wrappers such as livekit's ``_AudioSinkProxy`` may sit
    in between). Private members: a wrapper listens with a bound method
    (``EventEmitter._events``), the synchronizer's audio output keeps its synchronizer in
    ``_synchronizer``, and the synchronizer paces the current segment's words in
    ``_impl``. Without them (another livekit version, or no synchronizer above) this
    returns None and the caller does without.
    """
    events = getattr(output, "_events", None)
    listeners = events.get("playback_finished", ()) if isinstance(events, dict) else ()
    for callback in list(listeners):
        parent = getattr(callback, "__self__", None)
        if parent is None or parent is output:
            continue
        sync = getattr(parent, "_synchronizer", None)
        if sync is not None and getattr(sync, "audio_output", None) is parent:
            impl = getattr(sync, "_impl", None)
            if impl is not None and callable(getattr(impl, "pause", None)):
                return impl
        elif depth > 1:
            found = transcript_segment_above(parent, depth=depth - 1)
            if found is not None:
                return found
    return None


def freeze_transcript(segment: Any) -> None:
    """Stop ``segment`` (from :func:`transcript_segment_above`) pacing out more words.

    Uses the segment's own ``pause()`` (what livekit does while the audio is paused);
    a word already on its way still lands. The segment is never resumed: it ends with
    the ``playback_finished`` that follows, and the synchronizer starts a fresh one.
    """
    if not getattr(segment, "closed", True):
        segment.pause()


class _QuietInterruptedOutputs(logging.Filter):
    """Drops livekit's "ToolError while executing tool" WARNING for interrupted calls.

    The bridge records an interrupted call by raising ``ToolError`` (that is how livekit
    writes an error output), and livekit logs every ``ToolError`` as a WARNING, which
    reads as a failure: an interrupt is not one. Only the records for outputs the bridge
    itself raised are dropped (matched by their exact text, once each); a ``ToolError``
    raised by a tool body keeps its warning. The bridge logs the interrupt at DEBUG.
    """

    def __init__(self) -> None:
        super().__init__()
        # bounded: an entry livekit never logs (another code path) cannot pile up
        self.expected: collections.deque[str] = collections.deque(maxlen=256)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == _LK_TOOL_ERROR_MSG:
            text = record.__dict__.get("lk.pii.error")
            if isinstance(text, str):
                try:
                    self.expected.remove(text)  # one record per output the bridge raised
                except ValueError:
                    return True  # not ours (or already dropped)
                return False
        return True


_LK_TOOL_ERROR_MSG = "ToolError while executing tool"
_quiet_filter: _QuietInterruptedOutputs | None = None


def quiet_tool_error_warning(output: str) -> None:
    """Drop livekit's "ToolError while executing tool" WARNING for the ``ToolError(output)``
    the caller is about to raise (a filter on livekit's logger, installed on first use).

    livekit logs the message with the error text in the ``lk.pii.error`` extra
    (``voice/generation.py`` and ``voice/tool_executor.py``). Should that change, the
    warning simply comes back.
    """
    global _quiet_filter
    if _quiet_filter is None:
        _quiet_filter = _QuietInterruptedOutputs()
        # livekit.agents' own logger: a logger's filters see the records it creates
        logging.getLogger("livekit.agents").addFilter(_quiet_filter)
    _quiet_filter.expected.append(output)
