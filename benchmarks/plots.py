"""PNG plots: latency distributions on a log axis, and the S6 scale curves.

Distributions are drawn as empirical CDFs (one curve per implementation): with
a few hundred samples a CDF shows the median and the whole tail without the
binning choices a histogram needs, and a log x axis is the only way to put a
40 us wait and a 5 s wait on one chart. matplotlib runs with the Agg backend,
so no display is needed.

Curves of different implementations often coincide (S2 and S3: every
implementation but the race waits for the same sink). So each implementation has
its own colour, line style and marker, curves are drawn widest first (a narrow
line stays visible on top of a wide one), and the legend says so. A CDF of a few
samples marks every sample, so a single sample still shows as a point. Long
scenario titles are wrapped to the panel's width.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import cast

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from benchmarks.analysis import Analysis, metric_values
from benchmarks.scenarios import IMPLS, SCENARIOS

COLORS: dict[str, str] = {
    "livekit": "#1f77b4",
    "livekit-race": "#ff7f0e",
    "trio-native": "#2ca02c",
    "bridge": "#9467bd",
}


#: Per implementation: line style, marker, line width. Drawn in IMPLS order, widest
#: first, so coinciding curves stay distinguishable.
STYLES: dict[str, tuple[str, str, float]] = {
    "livekit": ("-", "o", 4.0),
    "livekit-race": ("--", "s", 2.8),
    "trio-native": ("-.", "^", 2.0),
    "bridge": (":", "D", 1.4),
}

#: Up to this many samples, every sample is marked on its CDF.
MARK_ALL_UP_TO = 50

OVERLAP_NOTE = "curves may coincide: wider ones are drawn first"


def _style(impl: str) -> dict[str, object]:
    ls, marker, lw = STYLES.get(impl, ("-", "x", 1.0))
    return {"color": COLORS.get(impl, "black"), "linestyle": ls, "marker": marker, "linewidth": lw}


def _ecdf(ax: object, values_ns: Sequence[float], label: str) -> None:
    """Empirical CDF: a step from 0 up to 1, and a mark on each sample when few."""
    xs = sorted(v / 1e6 for v in values_ns)
    n = len(xs)
    ys = [(i + 1) / n for i in range(n)]
    st = _style(label)
    marker = st.pop("marker")
    # the step starts at 0 just before the first sample, so one sample is a riser
    ax.step([xs[0], *xs], [0.0, *ys], where="post", label=f"{label} (N={n})",  # type: ignore[attr-defined]
            marker=marker, markevery=list(range(1, n + 1)) if n <= MARK_ALL_UP_TO else [n],
            markersize=6 if n <= MARK_ALL_UP_TO else 4, markerfacecolor="none", **st)


def _by(results: Sequence[Mapping[str, object]], scenario: str) -> dict[str, Mapping[str, object]]:
    return {
        str(r["impl"]): r
        for r in results
        if r.get("scenario") == scenario and r.get("level") is None
    }


def _title(sid: str, width: int) -> str:
    return "\n".join(textwrap.wrap(f"{sid}: {SCENARIOS[sid].title}", width))


def _plot_scenario(ax: object, results: Sequence[Mapping[str, object]], sid: str,
                   *, title_width: int = 60) -> bool:
    drawn = False
    by = _by(results, sid)
    for impl in sorted(by, key=lambda i: IMPLS.index(i) if i in IMPLS else len(IMPLS)):
        vals = [v for v in metric_values(by[impl], "wait_ns") if v > 0]
        if vals:
            _ecdf(ax, vals, impl)
            drawn = True
    ax.set_xscale("log")  # type: ignore[attr-defined]
    ax.set_ylim(-0.02, 1.05)  # type: ignore[attr-defined]
    ax.set_title(_title(sid, title_width), fontsize=8)  # type: ignore[attr-defined]
    ax.set_xlabel("interrupt -> wait_for_playout() returns (ms, log)")  # type: ignore[attr-defined]
    ax.set_ylabel("fraction of samples")  # type: ignore[attr-defined]
    ax.grid(True, which="both", alpha=0.3)  # type: ignore[attr-defined]
    if drawn:
        # below the axes, so it never hides a curve
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2),  # type: ignore[attr-defined]
                  ncol=2, title=OVERLAP_NOTE, title_fontsize=7, frameon=False)
    return drawn


def latency_figure(results: Sequence[Mapping[str, object]], sids: Sequence[str]) -> Figure:
    """One CDF panel per scenario, three to a row (the figure of latency.png)."""
    cols = 3
    rows = (len(sids) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(15, 5.4 * rows), squeeze=False)
    for i, sid in enumerate(sids):
        _plot_scenario(axes[i // cols][i % cols], results, sid)
    for j in range(len(sids), rows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle("Latency distributions (empirical CDF, log time axis)")
    fig.tight_layout()
    return fig


def write_plots(an: Analysis, results: Sequence[Mapping[str, object]], out: Path) -> list[str]:
    """Write latency.png, latency_S1.png and scale.png; return the paths written."""
    written: list[str] = []
    sids = [s for s in SCENARIOS if s != "S6" and _by(results, s)]
    if sids:
        fig = latency_figure(results, sids)
        path = out / "latency.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    if "S1" in sids:
        fig, ax = plt.subplots(figsize=(7, 5))
        _plot_scenario(ax, results, "S1", title_width=90)
        fig.tight_layout()
        path = out / "latency_S1.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    if an.scale:
        fig, axes2 = plt.subplots(1, 3, figsize=(15, 5), squeeze=False)
        ax_all, ax_per, ax_mem = axes2[0]
        for impl in IMPLS:
            pts = an.scale.get(impl)
            if not pts:
                continue
            ns = [cast(int, p["n"]) for p in pts]
            st = _style(impl)
            ax_all.plot(ns, [cast(float, p["all_done_ns"]) / 1e6 for p in pts],
                        label=impl, markerfacecolor="none", **st)
            ax_per.plot(ns, [cast(float, p["per_conversation_ns"]) / 1e3 for p in pts],
                        label=impl, markerfacecolor="none", **st)
            ax_mem.plot(ns, [cast(float, p["bytes_per_conversation"]) / 1024 for p in pts],
                        label=impl, markerfacecolor="none", **st)
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
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2,
                      title=OVERLAP_NOTE, title_fontsize=7, frameon=False)
        zero_rss = [
            f"{impl} N={p['n']}" for impl in IMPLS for p in an.scale.get(impl, [])
            if cast(float, p["bytes_per_conversation"]) <= 0
        ]
        if zero_rss:  # a log axis cannot show 0: say so instead of dropping it silently
            ax_mem.text(0.98, 0.02, "not drawn (0 KiB): " + ", ".join(zero_rss), ha="right",
                        transform=ax_mem.transAxes, fontsize=7, va="bottom")
        fig.tight_layout()
        path = out / "scale.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(str(path))
    return written
