"""Exceptions raised by trio_playout.

Every exception the library raises on purpose derives from :class:`PlayoutError`.
Where livekit-agents raised a bare ``RuntimeError`` for the same situation, ours
also subclasses ``RuntimeError``, so code ported from livekit that catches
``RuntimeError`` keeps working.

The tree::

    PlayoutError
    ├── InterruptionNotAllowed(RuntimeError)  interrupt() on a protected speech
    ├── CircularWaitError(RuntimeError)       a tool waits for its own speech
    ├── SpeechAlreadyInterrupted(RuntimeError) protecting a speech that was interrupted
    ├── SpeechNotDone                         exception() before the speech is done
    ├── SessionClosedError(RuntimeError)      say()/generate_reply()/interrupt() on a closed session
    ├── SinkInUseError(RuntimeError)          open_session() on a sink another open session uses
    ├── PauseNotSupported(NotImplementedError) pause() on a sink whose can_pause is False
    ├── VoiceOptionsError(ValueError)         a bad option to a VAD, STT or TTS provider
    ├── ModelNotFoundError(FileNotFoundError)  a model file is not installed (never downloaded)
    ├── BatcherClosedError(RuntimeError)      a SileroBatcher not running (not started, or closed)
    ├── SpeechEngineError(RuntimeError)       a speech engine is missing or failed
    ├── ToolDefinitionError(TypeError)        @function_tool on something that is not a tool
    ├── ProviderError                         an LLM, TTS or STT provider failed (retryable, status_code)
    │   ├── ProviderConnectionError(ConnectionError) no connection, or it broke mid-stream
    │   ├── ProviderTimeoutError(TimeoutError)  no response, or a stream stalled, within the timeout
    │   ├── ProviderRateLimitError            the provider said 429 (retry_after in seconds, if given)
    │   └── ProviderResponseError             an error status or a response we cannot read
    └── ToolError                             raised by a tool: the message goes to the LLM
        ├── UnknownToolError                  the LLM called a tool that does not exist
        └── InvalidToolArguments              the arguments do not match the tool's schema
"""

from __future__ import annotations

__all__ = [
    "BatcherClosedError",
    "CircularWaitError",
    "InterruptionNotAllowed",
    "InvalidToolArguments",
    "ModelNotFoundError",
    "PauseNotSupported",
    "PlayoutError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderRateLimitError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "SessionClosedError",
    "SinkInUseError",
    "SpeechAlreadyInterrupted",
    "SpeechEngineError",
    "SpeechNotDone",
    "ToolDefinitionError",
    "ToolError",
    "UnknownToolError",
    "VoiceOptionsError",
]


class PlayoutError(Exception):
    """Root of every error trio_playout raises deliberately."""


class InterruptionNotAllowed(PlayoutError, RuntimeError):
    """``interrupt()`` was called on a speech that disallows interruptions.

    Nothing was changed. Use ``interrupt(force=True)`` to stop it anyway (its
    protected tools still run to completion).
    """


class CircularWaitError(PlayoutError, RuntimeError):
    """A tool waited for the speech that is waiting for that tool.

    The speech cannot finish before its tools do, so the wait could never return.
    Inside a tool, use :meth:`RunContext.wait_for_playout`, which waits only for the
    audio of the step that started the tool.
    """


class SpeechAlreadyInterrupted(PlayoutError, RuntimeError):
    """Interruptions cannot be disallowed on a speech that was already interrupted."""


class SpeechNotDone(PlayoutError):
    """The speech is still running; ``await handle.wait_for_playout()`` first."""


class SessionClosedError(PlayoutError, RuntimeError):
    """The session is closing or closed: ``say``, ``generate_reply`` and ``interrupt`` refuse.

    Closing already interrupted every speech, so there is nothing left to
    interrupt; handles of earlier speeches keep working. Check ``session.closed``
    where a call can race with the session's exit.
    """


class SinkInUseError(PlayoutError, RuntimeError):
    """The audio sink already serves another open session.

    A sink plays one conversation: two sessions would interleave their audio and
    clear each other's segments. Give each session its own sink, or open the next
    session after the first one's block has exited.
    """


class ToolDefinitionError(PlayoutError, TypeError):
    """``@function_tool`` was applied to something that cannot be a tool."""


class ToolError(PlayoutError):
    """Raise this from a tool to tell the LLM what went wrong.

    The message becomes the call's error output, which the LLM sees on its next
    step. Any other exception is logged with its traceback and the LLM reads only a
    generic "internal error" line: an exception's text can hold what the model must
    not see (a password in a connection error), so showing a message is opt-in.
    """


class UnknownToolError(ToolError):
    """The LLM called a tool the session does not have."""


class InvalidToolArguments(ToolError):
    """The LLM's arguments are not valid JSON or do not match the tool's schema."""


class PauseNotSupported(PlayoutError, NotImplementedError):
    """``pause()`` was called on a sink whose ``can_pause`` is False.

    Nothing was changed. Check :attr:`AudioOutput.can_pause` first and interrupt the
    speech instead, as livekit does for sinks that cannot pause (avatars). It is a
    ``NotImplementedError``, hence also a ``RuntimeError``.
    """


class VoiceOptionsError(PlayoutError, ValueError):
    """An option of a voice provider is out of range; the message names it and its range."""


class ModelNotFoundError(PlayoutError, FileNotFoundError):
    """A model file is not where it was expected.

    Install the extra that ships it (``pip install 'trio-playout[vad]'`` for Silero)
    or pass the file explicitly (``model_path=``). Models are never downloaded at run
    time.
    """


class BatcherClosedError(PlayoutError, RuntimeError):
    """A :class:`~trio_playout.silero.SileroBatcher` is not running: not started yet, or closed.

    Raised in a stream that hands it a window then, and in every stream whose window
    was waiting when it closed (its ``async with`` block ended, its ``serve`` task
    was cancelled, or its model failed: then ``__cause__`` is the model's error).
    Run the streams inside the batcher's ``async with`` block, or start it first
    with ``await nursery.start(batcher.serve)``.
    """


class SpeechEngineError(PlayoutError, RuntimeError):
    """The speech engine library is missing, or it reported an error.

    For espeak-ng: ``pip install 'trio-playout[espeak]'`` (GPL-3.0), or the system
    package (Debian: ``libespeak-ng1``).
    """


class ProviderError(PlayoutError):
    """A model provider (LLM, TTS, STT) failed; the message says which and why.

    ``retryable`` says whether asking again may work (a dropped connection, a 5xx, a
    rate limit), ``status_code`` is the HTTP status when there was one and ``provider``
    names the adapter ("openai", "livekit"...). Adapters retry only before the first
    chunk they hand on (the user must never hear a sentence twice), so by the time a
    session sees this error its retries are spent or replaying was unsafe.
    """

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.provider = provider
        self.status_code = status_code
        self.retryable = retryable


class ProviderConnectionError(ProviderError, ConnectionError):
    """The connection could not be made, or it broke (reset, closed) mid-response."""

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = None,
                 retryable: bool = True) -> None:
        super().__init__(message, provider=provider, status_code=status_code, retryable=retryable)


class ProviderTimeoutError(ProviderError, TimeoutError):
    """No response, or no next chunk of a stream, arrived within the adapter's timeout."""

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = None,
                 retryable: bool = True) -> None:
        super().__init__(message, provider=provider, status_code=status_code, retryable=retryable)


class ProviderRateLimitError(ProviderError):
    """The provider refused for now (HTTP 429). ``retry_after``: seconds it asked to wait."""

    def __init__(self, message: str, *, provider: str = "", status_code: int | None = 429,
                 retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message, provider=provider, status_code=status_code, retryable=retryable)
        self.retry_after = retry_after


class ProviderResponseError(ProviderError):
    """An error status (4xx, 5xx), an error event in a stream, or a body we cannot parse.

    Only server errors (5xx, 408, 409) are ``retryable``: a request the provider
    rejected as malformed fails the same way the next time.
    """
