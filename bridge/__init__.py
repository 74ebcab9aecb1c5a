"""Run trio code inside the real asyncio ``livekit-agents`` SDK, with trio's guarantees.

``bridge`` hosts the SDK on trio-asyncio's loop (with the four fixes it needs, see
:mod:`bridge._loop`) and lets tools and waits be written in trio::

    import bridge
    from livekit.agents import Agent, AgentSession

    @bridge.function_tool
    async def book(ctx: bridge.RunContext, when: str) -> str:
        await ctx.wait_for_playout()      # cancelled at once if the user barges in
        return await reserve(when)        # trio code

    async def main() -> None:
        session = AgentSession(llm=..., tts=...)
        await bridge.aio(session.start)(Agent(instructions="...", tools=[book]))
        ...

    bridge.run(main)

Hosting modes:

* trio first: :func:`run` (like ``trio.run``) or ``async with bridge.open_loop():``
  inside an existing ``trio.run``;
* asyncio first (livekit's ``cli.run_app`` and job processes create their loop with
  ``asyncio.new_event_loop()``): call :func:`install` before that loop is created.

The other way round, :func:`llm`, :func:`tts`, :func:`stt` and :func:`vad` adapt
livekit plugin objects into trio_playout's provider protocols, so a trio-native
``tp.open_session`` under a bridge loop uses livekit's plugins (see
:mod:`bridge._adapters`).

Importing this package is cheap and has no side effects: trio-asyncio (which patches
asyncio process-wide when imported) is imported only when a public name other than
:mod:`bridge.testing` is first used. Errors: see :mod:`bridge._errors` for the tree.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = [
    "INTERRUPTED_OUTPUT_PREFIX",
    "AlreadyInterruptedError",
    "BridgeError",
    "CircularWaitError",
    "NotInstalledError",
    "RunContext",
    "ToolSignatureError",
    "UnexpectedCancelError",
    "aio",
    "function_tool",
    "install",
    "interruptible",
    "is_interrupted_output",
    "llm",
    "open_loop",
    "run",
    "stt",
    "tts",
    "vad",
    "wait_for_playout",
    "with_sink_grace",
]

# public name -> private module that defines it
_LAZY: dict[str, str] = {
    "AlreadyInterruptedError": "bridge._errors",
    "BridgeError": "bridge._errors",
    "CircularWaitError": "bridge._errors",
    "NotInstalledError": "bridge._errors",
    "ToolSignatureError": "bridge._errors",
    "UnexpectedCancelError": "bridge._errors",
    "open_loop": "bridge._loop",
    "run": "bridge._loop",
    "install": "bridge._loop",
    "aio": "bridge._playout",
    "interruptible": "bridge._playout",
    "wait_for_playout": "bridge._playout",
    "RunContext": "bridge._tools",
    "function_tool": "bridge._tools",
    "INTERRUPTED_OUTPUT_PREFIX": "bridge._tools",
    "is_interrupted_output": "bridge._tools",
    "with_sink_grace": "bridge._grace",
    "llm": "bridge._adapters",
    "tts": "bridge._adapters",
    "stt": "bridge._adapters",
    "vad": "bridge._adapters",
}

if TYPE_CHECKING:
    from bridge._adapters import llm, stt, tts, vad
    from bridge._errors import (
        AlreadyInterruptedError,
        BridgeError,
        CircularWaitError,
        NotInstalledError,
        ToolSignatureError,
        UnexpectedCancelError,
    )
    from bridge._grace import with_sink_grace
    from bridge._loop import install, open_loop, run
    from bridge._playout import aio, interruptible, wait_for_playout
    from bridge._tools import (
        INTERRUPTED_OUTPUT_PREFIX,
        RunContext,
        function_tool,
        is_interrupted_output,
    )


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bridge' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
