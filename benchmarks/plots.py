"""PNG plots: latency distributions on a log axis, and the S6 scale curves.

Distributions are drawn as empirical CDFs (one curve per implementation): with
a few hundred samples a CDF shows the median and the whole tail without the
binning choices a histogram needs, and a log x axis is the only way to put a
40 us wait and a 5 s wait on one chart. matplotlib runs with the Agg backend,
so no display is needed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks.analysis import Analysis, metric_values
from benchmarks.scenarios import IMPLS, SCENARIOS

COLORS: dict[str, str] = {
    "livekit": "#1f77b4",
    "livekit-race": "#ff7f0e",
    "trio-native": "#2ca02c",
    "bridge": "#9467bd",
}


def _ecdf(ax: object, values_ns: Sequence[float], label: str, color: str) -> None:
    xs = sorted(v / 1e6 for v in values_ns)
    n = len(xs)
    ys = [(i + 1) / n for i in range(n)]
    ax.step(xs, ys, where="post", label=f"{label} (N={n})", color=color)  # type: ignore[attr-defined]


def _by(results: Sequence[Mapping[str, object]], scenario: str) -> dict[str, Mapping[str, object]]:
    return {
        str(r["impl"]): r
        for r in results
        if r.get("scenario") == scenario and r.get("level") is None
    }


def _plot_scenario(ax: object, results: Sequence[Mapping[str, object]], sid: str) -> bool:
    drawn = False
    for impl, res in _by(results, sid).items():
        vals = [v for v in metric_values(res, "wait_ns") if v > 0]
        if vals:
            _ecdf(ax, vals, impl, COLORS.get(impl, "black"))
            drawn = True
    ax.set_xscale("log")  # type: ignore[attr-defined]
    ax.set_title(f"{sid}: {SCENARIOS[sid].title}", fontsize=8)  # type: ignore[attr-defined]
    ax.set_xlabel("interrupt -> wait_for_playout() returns (ms, log)")  # type: ignore[attr-defined]
    ax.set_ylabel("fraction of samples")  # type: ignore[attr-defined]
    ax.grid(True, which="both", alpha=0.3)  # type: ignore[attr-defined]
    if drawn:
        ax.legend(fontsize=7, loc="lower right")  # type: ignore[attr-defined]
    return drawn


def write_plots(an: Analysis, results: Sequence[Mapping[str, object]], out: Path) -> list[str]:
    """Write latency.png, latency_S1.png and scale.png; return the paths written."""
    written: list[str] = []
    sids = [s for s in SCENARIOS if s != "S6" and _by(results, s)]
    if sids:
        cols = 3
        rows = (len(sids) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(15, 4.2 * rows), squeeze=False)
        for i, sid in enumerate(sids):
            _plot_scenario(axes[i // cols][i % cols], results, sid)
        for j in range(len(sids), rows * cols):
            axes[j // cols][j % cols].axis("off")
        fig.suptitle("Latency distributions (empirical CDF, log time axis)")
        fig.tight_layout()
        path = out / "latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    if "S1" in sids:
        fig, ax = plt.subplots(figsize=(7, 4))
        _plot_scenario(ax, results, "S1")
        fig.tight_layout()
        path = out / "latency_S1.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    if an.scale:
        fig, axes2 = plt.subplots(1, 3, figsize=(15, 4), squeeze=False)
        ax_all, ax_per, ax_mem = axes2[0]
        for impl in IMPLS:
            pts = an.scale.get(impl)
            if not pts:
                continue
            ns = [cast(int, p["n"]) for p in pts]
            color = COLORS.get(impl, "black")
            ax_all.plot(ns, [cast(float, p["all_done_ns"]) / 1e6 for p in pts], "o-",
                        label=impl, color=color)
            ax_per.plot(ns, [cast(float, p["per_conversation_ns"]) / 1e3 for p in pts], "o-",
                        label=impl, color=color)
            ax_mem.plot(ns, [cast(float, p["bytes_per_conversation"]) / 1024 for p in pts], "o-",
                        label=impl, color=color)
        for ax, title, ylabel in (
            (ax_all, "interrupt all -> all waits returned", "ms"),
            (ax_per, "per conversation (all done / N)", "us"),
            (ax_mem, "peak RSS per conversation", "KiB"),
        ):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("concurrent conversations N")
            ax.set_ylabel(ylabel)
            ax.set_title(f"S6: {title}", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out / "scale.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written
