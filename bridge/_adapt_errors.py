"""livekit plugin errors as trio_playout's typed errors (placeholder until tp.ProviderError lands)."""

from __future__ import annotations

__all__ = ["provider_error"]


def provider_error(exc: BaseException) -> BaseException:
    """The typed error to raise for ``exc``, an error of a livekit plugin stream."""
    return exc
