"""Opening a session: checking its options, starting its background, closing it in order.

``open_session`` is the only way to get a :class:`~._session.Session`: it checks every
option before anything runs, starts the sink's ``serve()``, the scheduler and (with
audio input) the user's voice in a shielded background nursery, and on leaving the
block closes the session in order (see :meth:`Session._aclose`) before that
background is cancelled.
"""

from __future__ import annotations

import math
import sys
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Sequence
from contextlib import asynccontextmanager

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._audio import AudioFrame, AudioOutput
from ._exceptions import SinkInUseError, ToolDefinitionError
from ._input import STT, VAD
from ._models import LLM, TTS
from ._session import Session
from ._tools import FunctionTool
from ._turn import TurnOptions
from ._voice_host import _check_voice

__all__ = ["open_session"]


def _tool_table(tools: Sequence[FunctionTool]) -> dict[str, FunctionTool]:
    table: dict[str, FunctionTool] = {}
    for tool in tools:
        if not isinstance(tool, FunctionTool):
            raise ToolDefinitionError(f"{tool!r} is not a tool; decorate it with @function_tool")
        if tool.name in table:
            raise ToolDefinitionError(f"two tools are named {tool.name!r}")
        table[tool.name] = tool
    return table


async def _serve_background(
    make: Callable[[trio.Nursery], Session],
    output: AudioOutput,
    shield: trio.CancelScope,
    built: list[Session],
    ready: trio.Event,
) -> None:
    # Shielded: cancelling the user's block must not cut the sink or the speeches
    # short. The block's exit closes the session in order, then cancels ``shield``.
    with shield:
        async with trio.open_nursery() as nursery:
            built.append(make(nursery))
            await nursery.start(output.serve)
            nursery.start_soon(built[0]._scheduler, name="speech scheduler")
            if built[0]._audio_input is not None:
                await nursery.start(built[0]._run_voice, name="user's voice")
            ready.set()


# Sinks serving an open session (by identity), so a second session on one of them
# fails at once with a typed error instead of deep inside the sink's serve().
_sinks_in_use: dict[int, AudioOutput] = {}


def _check_seconds(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not (0 <= value < math.inf):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return float(value)


@asynccontextmanager
async def open_session(
    *,
    llm: LLM,
    tts: TTS,
    output: AudioOutput,
    tools: Sequence[FunctionTool] = (),
    allow_interruptions: bool = True,
    sink_grace: float = 2.0,
    close_timeout: float = 10.0,
    audio_input: AsyncIterable[AudioFrame] | None = None,
    vad: VAD | None = None,
    stt: STT | None = None,
    turn: TurnOptions | None = None,
) -> AsyncGenerator[Session, None]:
    """Open a session; leaving the block closes it, bounded.

    On exit every speech is interrupted (forced): unprotected work is cancelled at
    once, the sink gets ``sink_grace`` to confirm the stop, and protected tools get
    ``close_timeout`` to finish (independently of the sink's grace); then they are
    cancelled, with a log line naming them, and get one more ``sink_grace`` to
    unwind. Leaving never waits longer than about
    ``max(close_timeout, sink_grace) + sink_grace``, unless a tool shields itself
    from cancellation (its own choice: then leaving waits for that shield).

    One sink serves one open session: opening a second session on a sink that is
    in use raises :class:`SinkInUseError`.

    The user's voice: with ``audio_input`` (any async iterable of
    :class:`AudioFrame`, the user's microphone) the session reads it while open and
    feeds ``vad`` and ``stt`` (each its own copy of the audio, so a slow STT never
    delays the VAD); ``turn`` (:class:`TurnOptions`, livekit's defaults) decides
    barge-in, false interruptions and user turns. Without ``audio_input`` the agent
    hears nothing and speaks only when told (``say``, ``generate_reply``). On leaving,
    the voice stops first (no pause, resume or turn acts after that); a user turn
    that was completed but not yet written is written without a reply once the
    speeches it waited for are done. A VAD or STT stream that will not close holds
    the exit up to the voice's own close timeout (1 s), in parallel with the above.
    """
    sink_grace = _check_seconds("sink_grace", sink_grace)
    close_timeout = _check_seconds("close_timeout", close_timeout)
    if not isinstance(output, AudioOutput):
        raise TypeError(f"output must be an AudioOutput, got {type(output).__name__}")
    table = _tool_table(tools)
    _check_voice(audio_input, vad, stt, turn)
    if id(output) in _sinks_in_use:
        raise SinkInUseError(f"{output!r} already serves an open session; give each session its own sink")
    _sinks_in_use[id(output)] = output
    body_error: BaseException | None = None

    def make(nursery: trio.Nursery) -> Session:
        return Session(llm=llm, tts=tts, output=output, tools=table,
                       allow_interruptions=allow_interruptions, sink_grace=sink_grace,
                       close_timeout=close_timeout, nursery=nursery, audio_input=audio_input,
                       vad=vad, stt=stt, turn=turn)

    shield = trio.CancelScope(shield=True)
    built: list[Session] = []
    ready = trio.Event()
    try:
        async with trio.open_nursery() as outer:
            outer.start_soon(_serve_background, make, output, shield, built, ready)
            try:
                await ready.wait()  # cancellable: start-up must not hang either
                try:
                    yield built[0]
                except BaseException as exc:
                    body_error = exc
                    raise
            finally:
                if built:
                    await built[0]._aclose()
                shield.cancel(reason="session closed")
    except BaseExceptionGroup as group:
        # Let the body's own exception out as itself, not wrapped by our nursery.
        if body_error is not None and len(group.exceptions) == 1 and group.exceptions[0] is body_error:
            raise body_error from body_error.__cause__
        raise
    finally:
        del _sinks_in_use[id(output)]
