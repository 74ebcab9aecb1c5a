"""The voice peers' report: ``report.md``, ``results.json`` and ``timeline.png``.

Kept apart from the harness (:mod:`benchmarks.voice_peers`) so a report can be
rendered again from a saved ``results.json`` after a change to this code
(``python -m benchmarks.voice_peers --report-only --out DIR``), without measuring
anything again: the run's own environment and source state are kept.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import _peer_sink as pk

SETTINGS = {"default": 0.5, "fast": 0.2}

# -- report ---------------------------------------------------------------------------

COUNT_ROWS = (
    ("S8 stopped / N", "S8", ("stopped", "n")),
    ("S9 burst resumed / stopped / N", "S9-burst", ("resumed", "stopped", "n")),
    ("S9 burst skipped or replayed (trials)", "S9-burst", ("skipped_or_replayed",)),
    ("S9 burst history equal / N", "S9-burst", ("history_equal", "n")),
    ("S9 click stopped / N", "S9-click", ("stopped", "n")),
    ("S9 click resumed / history equal", "S9-click", ("resumed", "history_equal")),
    ("S10 exactly one reply / N", "S10", ("one_reply", "n")),
    ("trials with a mic frame > 50 ms late / all", "all", ("late_mic", "n")),
)
RATIO_ROWS = ("S8 onset -> stopped", "S8 deciding VAD event -> stopped", "S10 t1 -> first answer frame")
DEFINITIONS = """## Definitions

- *VAD decision*: the first VAD inference whose speech probability is >= the activation threshold
  (0.5), stamped when the framework receives it (livekit: its smoothed probability).
- *deciding VAD event*: the last VAD event the framework received before the sink stopped; the
  time after it is the framework's own work (turn rules, scheduling, the call into the sink).
- *stopped*: the fake sink's audio stopped advancing (pause or clear), as the sink saw it.
- S9 *history equal*: the framework's chat history at the end of the trial equals the one of the
  same trial with silence instead of the sound (a run without the burst).
- *mic frame late*: the peer's paced microphone delivered a frame more than 50 ms after its due
  time in that trial: the process did not get the CPU (the machine is shared). Those trials stay
  in the figures; their VAD decisions come late.
- S10 *first frame - trio's endpoint rule*: the first answer frame minus the moment trio's rule
  allows the turn: END_OF_SPEECH received (the delay counts from the end of the voice, which
  Silero's 0.55 s of silence already covers), or the final transcript received + late_final_delay
  (0.2 s) when it came after that.
"""


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.1f}" if abs(v) < 10 else f"{v * 1000:.0f}"


def _cell(s: dict[str, float] | None) -> str:
    return "- (N=0)" if s is None else f"{_ms(s['p50'])} / {_ms(s['p99'])} / {_ms(s['max'])} (N={s['n']:.0f})"


def _ratio(a: dict[str, float] | None, b: dict[str, float] | None) -> str:
    return "-" if not a or not b or not b["p50"] else f"{a['p50'] / b['p50']:.2f}x"


def _row(*cells: str) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any], table: dict[str, Any], run: dict[str, Any],
             env: dict[str, Any]) -> str:
    lines = [
        "# Voice peers: S8 barge-in, S9 false interruption, S10 answer (issue 11)", "",
        f"Run started {run['started_utc']} UTC, wall {run['wall_s']} s, quick={run['quick']}, "
        f"{run['jobs']} configuration(s) at a time; load average before {run['load_before']}, after "
        f"{run['load_after']} ({env['cpu_count']} x {env['cpu_model']}, Python {env['python']}).",
        f"Source: commit {run.get('source', {}).get('commit', '?')[:10]}; tracked files modified in the "
        f"working tree at the time (other work in progress, measured as found): "
        f"{', '.join(run.get('source', {}).get('modified', [])) or 'none'}.",
        f"Trials per configuration: {run['plan']} (plus one warm-up S8 trial, discarded). Each "
        "configuration is its own process. Times in ms, **p50 / p99 / max (N)**; with N this small "
        "p99 is close to the max. `trio+pos`: trio-native with `pause_on_speech_start`.", ""]
    for setting in run["settings"]:
        ks = [k for k in results if k in table and k.endswith("/" + setting)]
        if not ks:
            continue
        names = [k.split("/")[0] for k in ks]
        lines += [f"## Setting `{setting}` (min_interruption_duration {SETTINGS[setting]} s, "
                  f"false_interruption_timeout {run['plan']['false_timeout']} s)", "",
                  _row("metric", *names), "|---|" + "---|" * len(ks)]
        lines += [_row(name, *(_cell(table[k]["metrics"].get(name)) for k in ks))
                  for name, _s, _g in pk.METRICS]
        lines += ["", _row("counts", *names), "|---|" + "---|" * len(ks)]
        for label, scen, fields in COUNT_ROWS:
            lines.append(_row(label, *(" / ".join(str(table[k]["counts"][scen][f]) for f in fields)
                                       for k in ks)))
        base = next((k for k in ks if k.startswith("trio/")), None)
        if base:
            parts = []
            for name in RATIO_ROWS:
                ref = table[base]["metrics"].get(name)
                parts.append(f"{name}: " + ", ".join(
                    f"{k.split('/')[0]} {_ratio(table[k]['metrics'].get(name), ref)}"
                    for k in ks if k != base))
            lines += ["", "Ratios of p50 to `trio` at this setting: " + "; ".join(parts) + "."]
        lines.append("")
    skipped = {k: v["skipped"] for k, v in results.items() if v.get("skipped")}
    if skipped:
        lines += ["## Skipped", ""] + [f"- `{k}`: {v}" for k, v in skipped.items()] + [""]
    lines += ["## Forced differences (as each peer reports them)", ""]
    seen: set[tuple[str, str]] = set()
    for out in results.values():
        for d in out.get("settings", {}).get("forced_differences", []):
            if (str(out.get("impl")), d) not in seen:
                seen.add((str(out.get("impl")), d))
                lines.append(f"- {out.get('impl')}: {d}")
    return "\n".join([*lines, "", DEFINITIONS])


def plot(table: dict[str, Any], run: dict[str, Any], path: Path) -> None:
    """S8 per framework: onset -> VAD decision -> silence (p50 bars, line to p99); S10 below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in run["settings"] if any(k.endswith("/" + s) for k in table)]
    s10 = [k for k in table if table[k]["metrics"].get("S10 t1 -> first answer frame")]
    heights = [max(1, sum(k.endswith("/" + s) for k in table)) for s in sets] + [max(1, len(s10))]
    fig, axes = plt.subplots(len(heights), 1, figsize=(12, 1.2 + 0.45 * sum(heights) + 0.9 * len(heights)),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, setting in zip(axes[:-1, 0], sets, strict=True):
        ks = [k for k in table if k.endswith("/" + setting)]
        for y, k in enumerate(ks):
            m = table[k]["metrics"]
            dec, aft, tot = (m.get(n) for n in ("S8 onset -> VAD decision", "S8 VAD decision -> stopped",
                                                "S8 onset -> stopped"))
            if dec is None or aft is None or tot is None:
                ax.text(5, y, "no S8 stop measured", va="center", fontsize=8)
                continue
            d, a_ = dec["p50"] * 1000, aft["p50"] * 1000
            ax.barh(y, d, color="#9db4d6", label="onset -> first VAD crossing" if y == 0 else None)
            ax.barh(y, a_, left=d, color="#d98c5f", label="crossing -> audio stopped" if y == 0 else None)
            ax.plot([tot["p50"] * 1000, tot["p99"] * 1000], [y, y], color="k", lw=1.2)
            label = f"{tot['p50'] * 1000:.0f} ms (p99 {tot['p99'] * 1000:.0f})"
            ax.text(max(d + a_, tot["p99"] * 1000) + 6, y, label, va="center", fontsize=8)
        ax.set_yticks(range(len(ks)), [k.split("/")[0] for k in ks])
        ax.set_xlim(0, max(800.0, *(1.25 * 1000 * table[k]["metrics"]["S8 onset -> stopped"]["p99"]
                                     for k in ks if table[k]["metrics"].get("S8 onset -> stopped"))))
        ax.set_title(f"S8 barge-in, {setting} setting (min_interruption_duration {SETTINGS[setting]} s): "
                     "user's onset -> agent silent (p50, line to p99)", fontsize=9)
        ax.invert_yaxis()
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax = axes[-1, 0]
    for y, k in enumerate(s10):
        m = table[k]["metrics"]
        end, first = m.get("S10 t1 -> VAD end of speech received"), m["S10 t1 -> first answer frame"]
        e = end["p50"] * 1000 if end else 0.0
        ax.barh(y, e, color="#9db4d6", label="t1 -> VAD end of speech" if y == 0 else None)
        ax.barh(y, first["p50"] * 1000 - e, left=e, color="#7fb77e",
                label="-> first answer frame" if y == 0 else None)
        ax.text(first["p50"] * 1000 + 6, y, f"{first['p50'] * 1000:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(s10)), s10)
    ax.set_title("S10 answer: end of the user's speech (t1) -> first answer frame at the sink (p50)",
                 fontsize=9)
    ax.set_xlabel("ms")
    longest = max([table[k]["metrics"]["S10 t1 -> first answer frame"]["p50"] * 1000 for k in s10] or [1.0])
    ax.set_xlim(0, 1.3 * longest)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(out_dir: Path, results: dict[str, Any], run: dict[str, Any],
                 env: dict[str, Any] | None = None) -> None:
    """results.json (raw records, summary, environment), report.md and timeline.png.

    ``env`` is the run's environment (:func:`benchmarks.env.environment` by default,
    taken now: call this right after measuring).
    """
    if env is None:
        from benchmarks.env import environment

        env = environment()
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pk.summarise(results)
    doc = {"run": run, "environment": env, "summary": table, "results": results}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(results, table, run, env), encoding="utf-8")
    if table:
        plot(table, run, out_dir / "timeline.png")


def rerender(out_dir: Path) -> None:
    """Write ``out_dir``'s report again from its ``results.json`` (nothing is measured)."""
    doc = json.loads((out_dir / "results.json").read_text(encoding="utf-8"))
    write_report(out_dir, doc["results"], doc["run"], doc["environment"])
