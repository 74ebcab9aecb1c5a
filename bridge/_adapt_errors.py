"""livekit plugin errors as trio_playout's typed provider errors.

livekit's plugins raise one family, ``livekit.agents.APIError``, after their own
retries (``APIConnectOptions``) are spent or when replaying was unsafe (a chunk had
already been handed on). The adapters raise trio_playout's tree instead, so code
written against ``tp.ProviderError`` works the same with a native provider or a
bridged livekit plugin::

    livekit                                 trio_playout
    APITimeoutError                     ->  ProviderTimeoutError
    APIStatusError 429                  ->  ProviderRateLimitError (retry_after when the
                                            client's exception with the HTTP response is
                                            still its __cause__; livekit's OpenAI plugin
                                            drops it, so there it is None)
    APIStatusError other                ->  ProviderResponseError (status_code)
    APIConnectionError caused by a      ->  ProviderResponseError (the body could not be
      ValueError (bad JSON, bad SSE)        parsed: livekit's OpenAI plugin reports every
                                            failure of a stream as a connection error)
    APIConnectionError                  ->  ProviderConnectionError
    any other APIError                  ->  ProviderError
    anything else the plugin raised     ->  ProviderError (not retryable)

``provider`` is ``"livekit"``, the message names the plugin and keeps livekit's text,
``retryable`` is livekit's, and the original exception is the ``__cause__``. Errors
that already belong to trio_playout pass through unchanged.
"""

from __future__ import annotations

import contextlib
from typing import Any

from livekit.agents import APIConnectionError, APIError, APIStatusError, APITimeoutError

import trio_playout as tp

__all__ = ["provider_error"]

PROVIDER = "livekit"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes and contexts, oldest last, without cycles (at most 10)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(seen) < 10 and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _retry_after(exc: BaseException) -> float | None:
    """The Retry-After seconds of the HTTP response behind ``exc``, if one is in its chain.

    livekit's ``APIStatusError`` keeps only the body; the client's exception it was
    raised from (an ``openai.RateLimitError``, say) still holds the response.
    """
    for item in _chain(exc):
        response: Any = getattr(item, "response", None)
        headers = getattr(response, "headers", None)
        value = headers.get("retry-after") if headers is not None else None
        if value is not None:
            with contextlib.suppress(TypeError, ValueError):
                return max(0.0, float(value))
    return None


def provider_error(exc: BaseException, what: str = "livekit plugin") -> BaseException:
    """The typed error to raise for ``exc``, the error of the livekit stream ``what``."""
    if isinstance(exc, tp.PlayoutError):
        return exc
    text = f"{what}: {exc}"
    if isinstance(exc, APITimeoutError):
        return tp.ProviderTimeoutError(text, provider=PROVIDER, retryable=exc.retryable)
    if isinstance(exc, APIStatusError):
        status = exc.status_code if exc.status_code >= 0 else None
        if status == 429:
            return tp.ProviderRateLimitError(text, provider=PROVIDER, retryable=exc.retryable,
                                             retry_after=_retry_after(exc))
        return tp.ProviderResponseError(text, provider=PROVIDER, status_code=status,
                                        retryable=exc.retryable)
    if isinstance(exc, APIConnectionError):
        if any(isinstance(cause, ValueError) for cause in _chain(exc)[1:]):
            return tp.ProviderResponseError(text, provider=PROVIDER, retryable=False)
        return tp.ProviderConnectionError(text, provider=PROVIDER, retryable=exc.retryable)
    if isinstance(exc, APIError):
        return tp.ProviderError(text, provider=PROVIDER, retryable=exc.retryable)
    return tp.ProviderError(f"{what} failed: {exc!r}", provider=PROVIDER, retryable=False)
