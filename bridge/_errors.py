"""Exceptions raised by the bridge.

One root, :class:`BridgeError`; each error also subclasses the builtin that livekit
raises in the same situation, so code ported from a stock livekit tool keeps working::

    BridgeError                         root of every error the bridge raises
    ├── NotInstalledError               (RuntimeError) no bridge loop is running here
    ├── CircularWaitError               (RuntimeError) a tool waits for its own speech
    ├── AlreadyInterruptedError         (RuntimeError) protecting a speech that was
    │                                   already interrupted
    ├── UnexpectedCancelError           (RuntimeError) a tool's trio body ended in
    │                                   asyncio.CancelledError nobody asked for
    └── ToolSignatureError              (TypeError) a function the bridge cannot wrap

The interrupted outcome of a bridged tool call is not an exception the user sees: the
call's output in livekit's history says so (see ``bridge.is_interrupted_output``).
"""

from __future__ import annotations

__all__ = [
    "AlreadyInterruptedError",
    "BridgeError",
    "CircularWaitError",
    "NotInstalledError",
    "ToolSignatureError",
    "UnexpectedCancelError",
]


class BridgeError(Exception):
    """Root of every error raised by :mod:`bridge`."""


class NotInstalledError(BridgeError, RuntimeError):
    """Trio code was asked to run where no bridge loop is running.

    Bridged tools and waits need the asyncio loop under livekit to be the bridge's
    trio-asyncio loop. Use ``bridge.run`` / ``bridge.open_loop()`` (trio first), or call
    ``bridge.install()`` before livekit creates its loop (asyncio first).
    """


class CircularWaitError(BridgeError, RuntimeError):
    """A tool waited for the whole speech that is waiting for the tool.

    The speech cannot finish before its tools do, so this wait would deadlock (stock
    livekit raises ``RuntimeError`` here, but a helper task slips past its check; the
    bridge's check follows the trio context into child tasks). Use
    ``ctx.wait_for_playout()``, which waits only for the audio of the tool's own step.
    """


class AlreadyInterruptedError(BridgeError, RuntimeError):
    """``ctx.disallow_interruptions()`` came after the speech was interrupted.

    An interrupt cannot be taken back; livekit raises ``RuntimeError`` here too. Check
    ``ctx.interrupted`` first, or protect the tool at definition time with
    ``@bridge.function_tool(interruptible=False)``.
    """


class UnexpectedCancelError(BridgeError, RuntimeError):
    """A bridged tool's trio body ended in ``asyncio.CancelledError`` that no cancel of
    the call explains.

    Trio code is cancelled by trio, so this is an asyncio cancellation leaking into it:
    the body raised it, or an asyncio task it awaited through ``bridge.aio`` was
    cancelled by someone else (livekit cancels its own tasks at teardown). Passed on as
    is, livekit would take it for a cancel of the whole call; the bridge reports it as
    this error instead (one error output, ``__cause__`` holds the original), and the
    session goes on. Catch ``asyncio.CancelledError`` around the ``bridge.aio`` call if
    the tool can carry on without that task.
    """


class ToolSignatureError(BridgeError, TypeError):
    """``@bridge.function_tool`` was applied to a function it cannot wrap.

    Bridged tools are ``async def`` trio functions taking keyword-compatible arguments
    and, optionally, one parameter annotated ``bridge.RunContext``.
    """
