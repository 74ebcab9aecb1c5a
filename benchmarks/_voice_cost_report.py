"""S6-voice, the report: the Markdown of one run of :mod:`benchmarks.voice_cost` from its JSON document."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any


def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def _trial_rows(trials: Sequence[dict[str, Any]]) -> list[str]:
    rows = ["| K | windows | lag p50 | lag p99 | lag max | later than max-lag | growing | process CPU | "
            "loop thread CPU | CPU per window | verdict |",
            "|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|:---:|"]
    for t in trials:
        rows.append(f"| {t['k']} | {t['windows']} | {t['lag_p50_ms']:.2f} ms | {t['lag_p99_ms']:.2f} ms | "
                    f"{t['lag_max_ms']:.2f} ms | {t['late_fraction']:.1%} | "
                    f"{'yes' if t['growing'] else 'no'} | "
                    f"{t['proc_cpu_util']:.0%} | {t['cpu_util']:.0%} | {t['cpu_per_window_us']:.0f} us | "
                    f"{'ok' if t['ok'] else 'behind'} |")
    return rows


def _batched_name(b: dict[str, Any]) -> str:
    return (f"trio-native, batched (`SileroBatcher`, max_batch {b['max_batch']}, "
            f"max_wait {b['max_wait'] * 1e3:g} ms)")


def markdown(doc: dict[str, Any]) -> str:
    """The report of one run (the JSON document of :func:`benchmarks.voice_cost.main`)."""
    env = doc["environment"]
    run = doc["run"]
    lines = [
        "# S6-voice: conversations one core holds with the Silero VAD on every input (real time)",
        "",
        f"Command: `{run['command']}`. {env['cpu_model']}, {env['cpu_count']} CPUs, "
        f"pinned to CPU {run['cpu'] if run['cpu'] is not None else '(not pinned)'}; Python {env['python']} "
        f"({env['platform']}); {env['date_utc']}. Versions: "
        + ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v) + ".",
        "",
        f"Audio: {doc['source']}, looped; each conversation starts at its own offset (the same offsets "
        "on both sides), 20 ms frames at 16 kHz paced on the real clock.",
        "",
        "Load average (1/5/15 min) at the start of each section: "
        + "; ".join(f"{name} {'/'.join(f'{x:.2f}' for x in la)}" for name, la in doc["loadavg"].items() if la)
        + ". The machine is shared: another process on the pinned CPU takes part of the core from "
        "either side, so K moves with the load; the ratio of two runs taken minutes apart is only "
        "as steady as the load between them.",
        "",
        f"Real time = at most 10% of the windows decided more than {run['max_lag'] * 1e3:.0f} ms after "
        "the frame completing them was delivered, and the lag not growing (median of the last second "
        "within max-lag of the second second's). K doubles, then bisects to within K/16. "
        f"Each trial is {run['seconds']:g} s of audio per conversation. With the batcher a window's lag "
        "includes its wait for the batch (up to max_wait): the same bound, with less of it left for "
        "everything else.",
        "",
        "## Side by side",
        "",
        "| implementation | K held in real time | process CPU at that K | K per fully used core "
        "(extrapolated) | process CPU per window at that K |",
        "|---|---:|---:|---:|---:|",
    ]
    sides = [("trio-native (`trio_playout.silero.SileroVAD`)", doc["trio_held"])]
    batched = doc.get("batched") or {}
    if "held" in batched:
        sides.append((_batched_name(batched), batched["held_summary"]))
    lk = doc.get("livekit") or {}
    if "held" in lk:
        sides.append(("livekit (`livekit.plugins.silero.VAD`, asyncio)", lk["held_summary"]))
    for name, h in sides:
        util = h.get("proc_cpu_util")
        lines.append(f"| {name} | {h['held']} | {_fmt(util * 100 if util is not None else None)}% | "
                     f"{_fmt(h.get('per_full_core'))} | {_fmt(h.get('cpu_per_window_us'))} us |")
    comp = doc.get("comparison")
    if comp:
        lines += ["", f"**trio-native holds {comp['trio_k']} conversations, livekit {comp['livekit_k']}: "
                  f"{_fmt(comp['ratio'], '.2f')}x.** Extrapolated to a fully used core: "
                  f"{_fmt(comp['per_full_core_ratio'], '.2f')}x. Same model file on both sides (sha256): "
                  f"{'yes' if comp.get('same_model_file') else 'NO'}."]
    elif lk.get("skipped"):
        lines += ["", f"livekit: skipped ({lk['skipped']})."]
    bc = doc.get("batched_comparison")
    if bc:
        vs_lk = (f", {_fmt(bc['vs_livekit'], '.2f')}x livekit's {bc['livekit_k']}"
                 if bc.get("vs_livekit") is not None else "")
        lines += ["", f"**Batched, trio-native holds {bc['batched_k']}: {_fmt(bc['vs_trio'], '.2f')}x its "
                  f"unbatched {bc['trio_k']}{vs_lk}** (same run, same audio and verdict; the batched lag "
                  "includes the batch wait). Extrapolated to a fully used core: "
                  f"{_fmt(bc.get('per_full_core'))} against {_fmt(bc.get('trio_per_full_core'))} unbatched."]
    w, c = doc["window_us"], doc["window_cpu_us"]
    lines += [
        "",
        "## Per window (trio-native)",
        "",
        "| what | N | min | p50 | p90 | p99 | max |",
        "|---|---:|---:|---:|---:|---:|---:|",
        f"| `SileroModel` call, wall | {w['n']:.0f} | {w['min']:.0f} us | {w['p50']:.0f} us | "
        f"{w['p90']:.0f} us | {w['p99']:.0f} us | {w['max']:.0f} us |",
        f"| `SileroModel` call, thread CPU | {c['n']:.0f} | {c['min']:.0f} us | {c['p50']:.0f} us | "
        f"{c['p90']:.0f} us | {c['p99']:.0f} us | {c['max']:.0f} us |",
        "",
        f"`SileroVAD.stream` from 48 kHz stereo (downmix, resampling, model, rules), unpaced: "
        f"{doc['stream_path']['cpu_mean_us']:.0f} us CPU per window (mean of "
        f"{doc['stream_path']['windows']:.0f}). Estimate 32 ms / cost: {doc['estimate']['cpu_p50']:.0f} "
        f"conversations per core at the model's CPU p50, {doc['estimate']['stream_cpu_mean']:.0f} with the "
        "whole stream path.",
        "",
        "## trio-native trials (sessions: "
        f"{'one per conversation' if doc['own_sessions'] else 'one shared'})",
        "",
        *_trial_rows(doc["trials"]),
    ]
    if "held" in batched:
        lines += ["", f"## {_batched_name(batched)} trials", "",
                  "One `SileroBatcher` for the K conversations (one shared session); the lag includes each "
                  "window's wait for its batch.", "", *_trial_rows(batched["trials"]), "",
                  "Windows per model call (mean, largest) per trial: "
                  + ", ".join(f"K={t['k']}: {t['extra'].get('mean_batch', 0):.1f}, "
                              f"{t['extra'].get('largest_batch', 0):.0f}" for t in batched["trials"]) + "."]
    if "held" in lk:
        plugin = lk.get("plugin", {})
        lines += ["", "## livekit trials", "", *_trial_rows(lk["trials"]), "",
                  "The plugin's own `inference_duration` (window start -> probability back on the loop, "
                  "through the executor) per trial, ms: "
                  + ", ".join(f"K={t['k']}: p50 {t['extra'].get('inference_p50_ms', 0):.2f}, "
                              f"p99 {t['extra'].get('inference_p99_ms', 0):.2f}" for t in lk["trials"]) + ".",
                  "", "What the plugin forces differently:", ""]
        lines += [f"- {d}" for d in lk.get("differences", [])]
        if plugin:
            lines += ["", f"Plugin setup: `{json.dumps(plugin)}`"]
    batch = doc.get("batch")
    if batch:
        from benchmarks._silero_batch import markdown_section

        lines += ["", *markdown_section(batch)]
        pr = batch.get("projection")
        if pr:
            lines += ["", f"Would it pay (estimate, not measured): at B={pr['batch']} the model costs "
                      f"{pr['saving_us']:.0f} us less per window than today's call; trio-native's "
                      f"{pr['cpu_per_window_us']:.0f} us of process CPU per window at the K it held would "
                      f"become {pr['projected_cpu_per_window_us']:.0f} us, about "
                      f"{pr['projected_per_full_core']:.0f} conversations per fully used core instead of "
                      f"{pr['per_full_core']:.0f}. "
                      + ("The batched trials above measure it." if "held" in batched else "")]
    return "\n".join(lines) + "\n"
