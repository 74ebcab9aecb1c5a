"""One livekit stream, consumed from trio: the machinery under ``bridge.llm/tts/stt/vad``.

A livekit stream (``LLMStream``, ``ChunkedStream``, ``RecognizeStream``, ``VADStream``)
is asyncio through and through: it is built with ``asyncio.create_task`` inside, its
events come out of an asyncio channel, and it must be closed with ``await aclose()``.
:func:`lk_events` gives trio an async generator over such a stream, built so that

* the stream is owned by **one asyncio task** (the pump) that opens it, reads it and
  closes it in its ``finally``: ``aclose()`` runs exactly once, whatever ends the
  stream (its own end, an error, or a cancel from the trio side);
* trio never awaits asyncio per item: the pump hands each event to trio through an
  unbounded trio memory channel (livekit already buffers each stream without bound,
  so this adds no new unbounded queue, only moves where the items wait);
* closing the trio generator (the session stops iterating when a speech is
  interrupted) cancels the pump once and waits, shielded and bounded, until it has
  finished: no pending asyncio task is left behind by a cancel;
* input streams (STT, VAD) are fed by a trio task started on the bridge loop's
  nursery (``loop.trio_as_future``), because a trio async generator cannot run a
  task of its own across its ``yield``s. The feeder ends the stream's input when the
  frames run out, and stops when the stream is closed;
* an error raised by the plugin comes out of the generator after the items that came
  before it, passed through ``map_error(exc, what)`` (the adapters turn livekit's
  ``APIError`` family into trio_playout's typed errors); an error of the trio frames iterator
  comes out as it is.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import trio

from ._loop import current_bridge_loop

__all__ = ["CLOSE_TIMEOUT", "lk_events"]

logger = logging.getLogger("bridge")

T = TypeVar("T")
F = TypeVar("F")

CLOSE_TIMEOUT = 5.0
"""Seconds the trio side waits (shielded) for a livekit stream to close after a cancel.

livekit's ``aclose()`` cancels the stream's tasks and waits for them; a plugin that
ignores ``CancelledError`` could hold it forever, and the cancel path of a trio
session must stay bounded. Past this, the stream is left to finish on its own and
a warning names it."""


class _Pump:
    """State shared by the trio generator, the pump task and the feeder (one thread)."""

    def __init__(self) -> None:
        self.stream: Any = None
        self.task: asyncio.Task[None] | None = None
        self.stopping = False  # the feeder must push no more
        self.pump_closing = False  # the pump is in its finally: closing the stream
        self.cancel_sent = False
        self.left = False  # the trio side stopped reading: it will raise nothing more
        self.feed_error: BaseException | None = None
        self.pump_done = trio.Event()
        self.feeder_done = trio.Event()
        self.feeder_started = False

    def stop(self) -> None:
        """Ask the pump to close the stream: one cancel at most, never during its close.

        A second ``cancel()`` would land inside ``await stream.aclose()`` and leave the
        stream half closed.
        """
        self.stopping = True
        task = self.task
        if task is not None and not task.done() and not self.pump_closing and not self.cancel_sent:
            self.cancel_sent = True
            task.cancel()


async def lk_events(
    open_stream: Callable[[], Any],
    convert: Callable[[Any], Iterable[T]],
    *,
    what: str,
    map_error: Callable[[BaseException, str], BaseException],
    frames: AsyncIterator[F] | None = None,
    push: Callable[[Any, F], None] | None = None,
    close_timeout: float = CLOSE_TIMEOUT,
) -> AsyncGenerator[T, None]:
    """Yield ``convert(event)`` items for every event of the livekit stream ``open_stream()``.

    ``open_stream`` runs in the pump's asyncio task (livekit streams start their own
    tasks when built). With ``frames`` and ``push``, a trio feeder calls
    ``push(stream, frame)`` for each frame, then ``stream.end_input()``.
    ``what`` names the stream in errors and logs.
    """
    loop = current_bridge_loop()
    state = _Pump()
    send, recv = trio.open_memory_channel[T](math.inf)

    async def feed() -> None:  # trio, on the bridge loop's nursery
        state.feeder_started = True  # a feeder cancelled before it starts never runs
        assert frames is not None and push is not None
        try:
            iterator = frames.__aiter__()
            while not state.stopping:
                try:
                    frame = await iterator.__anext__()
                except StopAsyncIteration:
                    if not state.stopping:
                        _end_input(state.stream, what)
                    return
                except Exception as exc:  # the audio input failed: end the stream with its error
                    if not state.stopping:
                        state.feed_error = exc
                        state.stop()
                    return
                if state.stopping:
                    return
                try:
                    push(state.stream, frame)
                except RuntimeError:
                    # livekit refuses input once the stream is closed: it ended or failed
                    # on its own, and the pump reports how
                    logger.debug("%s refused a frame: it is closed", what)
                    return
        finally:
            state.feeder_done.set()

    async def pump() -> None:  # asyncio, owns the stream
        stream = state.stream = open_stream()
        feeder: asyncio.Future[None] | None = None
        try:
            if frames is not None:
                feeder = loop.trio_as_future(feed)
            async for event in stream:
                for item in convert(event):
                    send.send_nowait(item)
        finally:
            state.pump_closing = state.stopping = True
            if feeder is not None and not feeder.done():
                feeder.cancel()
            await stream.aclose()

    def on_done(done: asyncio.Task[None]) -> None:
        send.close()
        state.pump_done.set()
        if not done.cancelled() and (exc := done.exception()) is not None and state.left:
            # the trio side has left and will not raise it (asyncio would otherwise log
            # "Task exception was never retrieved" when the task is collected)
            logger.warning("%s failed while closing: %r", what, exc, exc_info=exc)

    task = state.task = loop.create_task(pump(), name=f"bridge {what}")
    task.add_done_callback(on_done)
    try:
        async for item in recv:
            yield item
        # the pump finished: the stream ended, failed, or the feeder's error stopped it
        if state.feed_error is not None:
            raise state.feed_error
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise map_error(exc, what) from exc
    finally:
        state.left = True
        recv.close()
        state.stop()
        with trio.CancelScope(shield=True):
            with trio.move_on_after(close_timeout) as waited:
                await state.pump_done.wait()
                if state.feeder_started:
                    await state.feeder_done.wait()
            if waited.cancelled_caught:
                logger.warning("%s did not close within %.1f s; left to finish on its own",
                               what, close_timeout)


def _end_input(stream: Any, what: str) -> None:
    try:
        stream.end_input()
    except RuntimeError:  # already closed: it ended on its own
        logger.debug("%s: input not ended, the stream is closed", what)
