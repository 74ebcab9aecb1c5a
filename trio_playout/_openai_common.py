"""What the OpenAI adapters share: the client, error mapping, retries and timeouts.

Retries are ours, not the SDK's (the SDK is built with ``max_retries=0``): the SDK
retries only until the response headers arrive, while a stream can also break
before its first chunk, and we want one policy whose waits run on trio's clock.
The rule: an attempt may be repeated only while it has handed nothing on (no text
to the TTS, no audio to the sink); a ``Retry-After`` the provider sends is honoured
when it is within ``max_retry_after``, otherwise the error is raised at once (waiting
longer than a conversation can bear helps nobody).

Timeouts are ours too, on trio's clock: ``timeout`` bounds the wait for the response
and then for every next chunk, so a stream that stalls fails with
:class:`ProviderTimeoutError` instead of hanging the step. The SDK's own timeout is
set a little longer, as a backstop.
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import openai
import trio

from ._exceptions import (
    ProviderConnectionError,
    ProviderError,
    ProviderRateLimitError,
    ProviderResponseError,
    ProviderTimeoutError,
    VoiceOptionsError,
)

__all__: list[str] = []

logger = logging.getLogger("trio_playout.openai")
T = TypeVar("T")
PROVIDER = "openai"
CLOSE_BOUND = 2.0  # seconds a shielded close of a response may take (it is a socket close)


def check_number(name: str, value: object, *, lo: float = 0.0, hi: float = math.inf,
                 lo_open: bool = False) -> float:
    """``value`` as a float if it is a finite real number in range; else VoiceOptionsError.

    Options are checked when the provider is built, so a bad one fails there with its
    name, not later inside a stream with a raw TypeError (or never, while it misbehaves).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise VoiceOptionsError(f"{name} must be a number, got {value!r}")
    number = float(value)
    low_ok = number > lo if lo_open else number >= lo
    if not (math.isfinite(number) and low_ok and number <= hi):
        if math.isfinite(hi):
            where = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}]"
        else:
            where = f"{'>' if lo_open else '>='} {lo:g}"
        raise VoiceOptionsError(f"{name} must be a finite number {where}, got {value!r}")
    return number


def check_text(name: str, value: object, *, optional: bool = False, empty: bool = False) -> None:
    """A string option (``None`` too if ``optional``; ``""`` only if ``empty``)."""
    if value is None and optional:
        return
    if not isinstance(value, str) or not (value or empty):
        what = "a non-empty string" if not empty else "a string"
        raise VoiceOptionsError(f"{name} must be {what}{' or None' if optional else ''}, got {value!r}")


def check_common(*, base_url: object, api_key: object, client: object, extra: object) -> None:
    """The options every OpenAI provider takes (timeout and retries are checked where used)."""
    check_text("base_url", base_url, optional=True)
    check_text("api_key", api_key, optional=True)
    if client is not None and not isinstance(client, openai.AsyncOpenAI):
        raise VoiceOptionsError(f"client must be an openai.AsyncOpenAI, got {type(client).__name__}")
    if extra is not None and not isinstance(extra, Mapping):
        raise VoiceOptionsError(f"extra must be a mapping of request options, got {type(extra).__name__}")


MAX_RETRIES = 100  # more would be a loop, not a policy (and 2.0 ** 1024 overflows)


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` more attempts, waiting ``backoff * 2**n`` (+-25 %) or the provider's
    ``Retry-After`` when it is at most ``max_retry_after`` seconds.

    ``max_retries`` is an integer in [0, 100]; ``backoff`` and ``max_retry_after`` are
    finite seconds >= 0. Anything else raises :class:`VoiceOptionsError` here.
    """

    max_retries: int = 2
    backoff: float = 0.5
    max_retry_after: float = 10.0

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int) or not (
                0 <= self.max_retries <= MAX_RETRIES):
            raise VoiceOptionsError(f"max_retries must be an integer in [0, {MAX_RETRIES}], "
                                    f"got {self.max_retries!r}")
        check_number("backoff", self.backoff)
        check_number("max_retry_after", self.max_retry_after)

    def delay(self, attempt: int, error: ProviderError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None: give up now."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        if isinstance(error, ProviderRateLimitError) and error.retry_after is not None:
            return error.retry_after if error.retry_after <= self.max_retry_after else None
        return float(self.backoff * 2.0 ** attempt * random.uniform(0.75, 1.25))


def make_client(client: openai.AsyncOpenAI | None, base_url: str | None, api_key: str | None,
                timeout: float) -> tuple[openai.AsyncOpenAI, bool]:
    """The client to use and whether we own it (and so close it)."""
    check_number("timeout", timeout, lo_open=True)
    if client is not None:
        return client.with_options(max_retries=0, timeout=timeout + 1.0), False
    base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
    api_key = api_key or os.environ.get("OPENAI_API_KEY")
    if api_key is None:
        if base_url is None:
            raise VoiceOptionsError("no API key: pass api_key= or set OPENAI_API_KEY "
                                    "(or pass base_url= for a local server that needs none)")
        api_key = "none"  # local servers (vLLM, Ollama, llama.cpp) ignore it; the SDK wants one
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                              timeout=timeout + 1.0), True


def _retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms: str | None = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value: str | None = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None  # unreadable: fall back to our own backoff
    return max(0.0, parsed.timestamp() - time.time())


def _is_transport(exc: BaseException) -> bool:
    # Raw errors of the SDK's HTTP client (httpx, or httpx2 in newer SDKs) that a
    # streamed body can raise; matched by module so we import neither.
    return type(exc).__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")


def map_error(exc: BaseException, what: str) -> ProviderError:
    """Our typed error for anything the SDK, its HTTP client or a parser raised."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, trio.TooSlowError):
        return ProviderTimeoutError(f"{what}: no response within the timeout", provider=PROVIDER)
    if isinstance(exc, openai.APITimeoutError):
        return ProviderTimeoutError(f"{what}: timed out", provider=PROVIDER)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderConnectionError(f"{what}: connection failed: {exc.__cause__ or exc}",
                                       provider=PROVIDER)
    if isinstance(exc, openai.RateLimitError):
        return ProviderRateLimitError(f"{what}: rate limited: {exc.message}", provider=PROVIDER,
                                      retry_after=_retry_after(exc.response.headers))
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        return ProviderResponseError(f"{what}: HTTP {code}: {exc.message}", provider=PROVIDER,
                                     status_code=code, retryable=code >= 500 or code in (408, 409))
    if isinstance(exc, openai.APIError):  # an error event inside a stream
        return ProviderResponseError(f"{what}: {exc.message}", provider=PROVIDER, retryable=False)
    if _is_transport(exc):
        if "Timeout" in type(exc).__name__:
            return ProviderTimeoutError(f"{what}: timed out ({type(exc).__name__})", provider=PROVIDER)
        return ProviderConnectionError(f"{what}: connection broke ({type(exc).__name__}: {exc})",
                                       provider=PROVIDER)
    if isinstance(exc, (json.JSONDecodeError, ValueError, KeyError, TypeError, AttributeError)):
        return ProviderResponseError(f"{what}: unreadable response ({type(exc).__name__}: {exc})",
                                     provider=PROVIDER, retryable=False)
    if isinstance(exc, OSError):
        return ProviderConnectionError(f"{what}: {type(exc).__name__}: {exc}", provider=PROVIDER)
    return ProviderError(f"{what}: {type(exc).__name__}: {exc}", provider=PROVIDER)


async def call(what: str, limit: float, fn: Callable[[], Awaitable[T]]) -> T:
    """Await ``fn()`` within ``limit`` seconds; any failure comes out as a :class:`ProviderError`."""
    try:
        with trio.fail_after(limit):
            return await fn()
    except Exception as exc:
        raise map_error(exc, what) from exc


async def next_item(what: str, limit: float, iterator: AsyncIterator[T]) -> tuple[bool, T | None]:
    """The iterator's next item within ``limit`` seconds: ``(False, None)`` at its end."""
    try:
        with trio.fail_after(limit):
            return True, await iterator.__anext__()
    except StopAsyncIteration:
        return False, None
    except Exception as exc:
        raise map_error(exc, what) from exc


async def close_quietly(close: Callable[[], Awaitable[object]], what: str) -> None:
    """Close a response even while cancelled: shielded, bounded, errors only logged.

    This is the step that takes cancellation to the wire: closing a response whose
    body was not read to the end closes its connection.
    """
    with trio.CancelScope(shield=True), trio.move_on_after(CLOSE_BOUND):
        try:
            await close()
        except Exception as exc:  # the socket is going away either way
            logger.debug("%s: closing the response failed: %r", what, exc)


async def retrying(what: str, policy: RetryPolicy, attempt_fn: Callable[[], AsyncIterator[T]]
                   ) -> AsyncIterator[T]:
    """Run attempts of a stream, retrying a failed one only if it yielded nothing yet."""
    attempt = 0
    while True:
        yielded = False
        stream = attempt_fn()
        try:
            async for item in stream:
                yielded = True
                yield item
            return
        except ProviderError as err:
            delay = None if yielded else policy.delay(attempt, err)
            if delay is None:
                raise
            logger.warning("%s failed before its first chunk (%s); retry %d of %d in %.2fs",
                           what, err, attempt + 1, policy.max_retries, delay)
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
        attempt += 1
        await trio.sleep(delay)
