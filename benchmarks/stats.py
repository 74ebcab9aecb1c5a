"""Order statistics for latency samples.

Why not numpy or HdrHistogram: the samples are a few hundred to a few thousand
integers per configuration, so sorting them is exact and cheap, and keeping this
module dependency-free lets the worker processes (which must stay minimal, see
``benchmarks._worker``) and the parent share it.

Percentiles use linear interpolation between closest ranks (numpy's default
"linear" method), so p50 of ``[1, 2, 3, 4]`` is 2.5. With fewer than 100 samples
p99 is essentially the maximum; the report prints N next to every row so a
reader can tell.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

PERCENTILES: tuple[float, ...] = (50.0, 90.0, 99.0)


def percentile(sorted_values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile of already sorted values (linear interpolation)."""
    if not sorted_values:
        raise ValueError("percentile of an empty sequence")
    if not 0.0 <= pct <= 100.0:
        raise ValueError(f"percentile out of range: {pct}")
    if len(sorted_values) == 1:
        return float(sorted_values[0])
    rank = (len(sorted_values) - 1) * pct / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    frac = rank - lo
    return float(sorted_values[lo]) + (float(sorted_values[hi]) - float(sorted_values[lo])) * frac


@dataclass(frozen=True)
class Summary:
    """N, min, p50, p90, p99, max of one metric, in the samples' unit (ns)."""

    n: int
    min: float
    p50: float
    p90: float
    p99: float
    max: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


def summarize(values: Sequence[float]) -> Summary | None:
    """Summary of the values, or None when there are none."""
    if not values:
        return None
    data = sorted(values)
    return Summary(
        n=len(data),
        min=float(data[0]),
        p50=percentile(data, 50.0),
        p90=percentile(data, 90.0),
        p99=percentile(data, 99.0),
        max=float(data[-1]),
    )


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, or None when either is missing or the baseline is zero."""
    if value is None or baseline is None or baseline <= 0:
        return None
    return value / baseline


def format_ns(ns: float | None) -> str:
    """Human units: ns below 1 us, then us, ms, s, with three significant digits."""
    if ns is None:
        return "-"
    if ns < 1_000:
        return f"{ns:.0f} ns"
    if ns < 1_000_000:
        return f"{ns / 1_000:.3g} us"
    if ns < 1_000_000_000:
        return f"{ns / 1_000_000:.3g} ms"
    return f"{ns / 1_000_000_000:.3g} s"


def format_ratio(r: float | None) -> str:
    """A ratio to the baseline, e.g. ``0.05x`` or ``12x``."""
    if r is None:
        return "-"
    if r < 0.1:
        return f"{r:.2g}x"
    if r < 10:
        return f"{r:.2f}x"
    return f"{r:.0f}x"
