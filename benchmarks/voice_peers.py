"""Issue 11's voice scenarios side by side: S8 barge-in, S9 false interruption, S10 answer.

``python -m benchmarks.voice_peers [--quick] [--settings default,fast]
[--impl trio,livekit,bridge,pipecat] [--out DIR]``

One run generates the user's audio (:mod:`benchmarks._peer_audio`), writes one
SPEC.json per configuration, runs each implementation (``benchmarks.peer_<impl>``)
in its own process, one after the other, and writes the report
(:mod:`benchmarks._peer_report`): ``report.md``, ``results.json`` (raw per-trial
records and the environment) and ``timeline.png`` into ``benchmarks/results/peers/``
(``--out`` to change). The contract between this harness and the peers is
/work/notes/PEER_CONTRACT.md.

Configurations: each implementation at each setting (livekit's defaults:
``min_interruption_duration`` 0.5 s; fast: 0.2 s; false-interruption timeout 2 s in
both), and trio-native a second time with ``pause_on_speech_start`` (issue 12;
shown as ``trio+pos``, S8 and S9 only). The first S8 trial of every process is a
warm-up and is discarded. An implementation whose module does not import is
skipped with the reason.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import _peer_audio as audio
from benchmarks import _peer_sink as pk

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "peers"
IMPLS = ("trio", "livekit", "bridge", "pipecat")
SETTINGS = {"default": 0.5, "fast": 0.2}
FALSE_TIMEOUT = 2.0
# 8.3 s of agent audio: it outlasts every trial's playout (S9 plays ~2 s of it, around a ~3 s pause)
AGENT_TEXT = ("this is a long answer that keeps the agent talking while the user decides to speak "
              "and it goes on and on without a full stop anywhere in it")
SECONDS_PER_CHAR = 0.06
VAD = {
    "activation_threshold": 0.5,
    "min_speech_duration": 0.05,
    "min_silence_duration": 0.55,
    "sample_rate": 16000,
}


@dataclass(frozen=True)
class Plan:
    """Trials per configuration (the warm-up S8 trial comes on top)."""

    s8: int = 12
    s9_burst: int = 2
    s9_click: int = 1
    s10: int = 3
    false_timeout: float = FALSE_TIMEOUT
    warmup: bool = True
    tail: float = 0.8  # audio after the resume is due (S9), after the answer is due (S10)


DEFAULT_PLAN = Plan()
QUICK_PLAN = Plan(s8=1, s9_burst=1, s9_click=0, s10=1, false_timeout=0.5, warmup=True, tail=0.4)


@dataclass(frozen=True)
class Config:
    impl: str
    setting: str
    pause_on_speech_start: bool = False

    @property
    def label(self) -> str:
        return self.impl + ("+pos" if self.pause_on_speech_start else "")

    @property
    def key(self) -> str:
        return f"{self.label}/{self.setting}"


def settings_of(name: str, plan: Plan, pos: bool) -> dict[str, Any]:
    return {
        "name": name,
        "min_interruption_duration": SETTINGS[name],
        "false_interruption_timeout": plan.false_timeout,
        "pause_on_speech_start": pos,
        "vad": dict(VAD),
    }


def build_trials(
    plan: Plan, mid: float, wav_dir: Path, rng: random.Random, *, s10: bool = True
) -> list[dict[str, Any]]:
    """The trials of one configuration (fresh onsets, so VAD windows fall at every phase)."""
    trials: list[dict[str, Any]] = []
    # S9 trials share one length, so one silent reference run serves both kinds
    s9_len = 0.6 + 0.1 + 0.7 + VAD["min_silence_duration"] + plan.false_timeout + plan.tail

    def add(
        tid: str,
        scenario: str,
        kind: str,
        onset: float,
        speak_at: float | None,
        transcript: str | None,
        tail: float | None,
        duration: float | None = None,
    ) -> None:
        a = audio.make(kind, onset, wav_dir, tid, seed=rng.randrange(1 << 30))
        trials.append(
            {
                "id": tid,
                "scenario": scenario,
                "wav": str(a.path),
                "speak_at": speak_at,
                "onset": round(a.onset, 6),
                "end": round(a.end, 6),
                "transcript": transcript,
                "duration": round(duration if duration is not None else a.end + (tail or 0.0), 3),
            }
        )

    # S8 ends 0.8 s after the barge-in is due: a later stop counts as none
    if plan.warmup:
        add(
            "warmup-s8",
            "S8",
            "speech-s8",
            0.6 + rng.uniform(0, 0.1),
            0.0,
            audio.S8_TEXT,
            None,
            duration=0.6 + 0.1 + mid + 0.8,
        )
    for i in range(plan.s8):
        onset = 0.6 + rng.uniform(0, 0.1)
        add(f"s8-{i}", "S8", "speech-s8", onset, 0.0, audio.S8_TEXT, None, duration=onset + mid + 0.8)
    for i in range(plan.s9_burst):
        add(f"s9b-{i}", "S9-burst", "burst", 0.6 + rng.uniform(0, 0.1), 0.0, None, None, duration=s9_len)
    for i in range(plan.s9_click):
        add(f"s9c-{i}", "S9-click", "click", 0.6 + rng.uniform(0, 0.1), 0.0, None, None, duration=s9_len)
    if s10:
        for i in range(plan.s10):
            add(
                f"s10-{i}",
                "S10",
                "speech-s10",
                0.3 + rng.uniform(0, 0.1),
                None,
                audio.S10_TEXT,
                VAD["min_silence_duration"] + 0.5 + plan.tail + 0.1,
            )
    return trials


def available(impl: str) -> str | None:
    """None if ``benchmarks.peer_<impl>`` can be found, else why not."""
    try:
        found = importlib.util.find_spec(f"benchmarks.peer_{impl}")
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None if found is not None else f"benchmarks/peer_{impl}.py does not exist"


def run_config(cfg: Config, spec: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run one peer process; its OUT.json, or a record of why it failed."""
    spec_path = work / f"spec-{cfg.label}-{cfg.setting}.json"
    out_path = work / f"out-{cfg.label}-{cfg.setting}.json"
    spec_path.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        f"benchmarks.peer_{cfg.impl}",
        "--spec",
        str(spec_path),
        "--out",
        str(out_path),
    ]
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"impl": cfg.impl, "skipped": f"timed out after {timeout:.0f} s", "wall_s": timeout}
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out_path.exists():
        tail = (proc.stderr or proc.stdout or "").strip().splitlines()[-12:]
        return {"impl": cfg.impl, "skipped": f"exit {proc.returncode}: " + " | ".join(tail), "wall_s": wall}
    out: dict[str, Any] = json.loads(out_path.read_text(encoding="utf-8"))
    out["wall_s"] = wall
    return out


def source_state() -> dict[str, Any]:
    """The commit measured and the tracked files that differed from it (other work in the tree)."""
    def git(*args: str) -> str:
        try:
            proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10)
            return proc.stdout  # not stripped: porcelain lines start with a status column
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD").strip(),
            "modified": [ln[3:] for ln in git("status", "--porcelain", "--untracked-files=no").splitlines()
                         if len(ln) > 3]}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.voice_peers", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="one trial per scenario, fast setting, 1 s false timeout"
    )
    ap.add_argument("--settings", default=None, help="comma list of default,fast (quick: fast)")
    ap.add_argument("--impl", default=",".join(IMPLS), help="comma list of " + ",".join(IMPLS))
    ap.add_argument("--out", default=str(RESULTS), help="directory for report.md, results.json, timeline.png")
    ap.add_argument("--s8", type=int, default=None, help="S8 trials per configuration")
    ap.add_argument("--no-pos", action="store_true", help="skip trio with pause_on_speech_start")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="configurations run at once (default 1; --quick: 2, a smoke test, not a measurement)",
    )
    a = ap.parse_args(argv)
    plan = QUICK_PLAN if a.quick else DEFAULT_PLAN
    if a.s8 is not None:
        plan = dataclasses.replace(plan, s8=a.s8)
    settings = (a.settings or ("fast" if a.quick else "default,fast")).split(",")
    impls = [i for i in a.impl.split(",") if i]
    for name in settings:
        if name not in SETTINGS:
            ap.error(f"unknown setting {name!r}")
    for i in impls:
        if i not in IMPLS:
            ap.error(f"unknown implementation {i!r}")
    configs = [Config(i, s) for s in settings for i in impls]
    if "trio" in impls and not a.no_pos:
        configs += [Config("trio", s, True) for s in settings]
    configs.sort(key=lambda c: (settings.index(c.setting), IMPLS.index(c.impl), c.pause_on_speech_start))
    rng = random.Random(a.seed)
    started = time.time()
    source = source_state()
    load_before = load_average()
    results: dict[str, Any] = {}
    jobs = a.jobs if a.jobs is not None else (2 if a.quick else 1)
    with tempfile.TemporaryDirectory(prefix="voice_peers_") as tmp:
        work = Path(tmp)
        todo: list[tuple[Config, dict[str, Any]]] = []
        for cfg in configs:
            why = available(cfg.impl)
            if why is not None:
                results[cfg.key] = {"impl": cfg.impl, "skipped": why}
                print(f"[voice_peers] {cfg.key}: skipped ({why})", flush=True)
                continue
            wav_dir = work / cfg.label / cfg.setting
            wav_dir.mkdir(parents=True)
            trials = build_trials(
                plan, SETTINGS[cfg.setting], wav_dir, rng, s10=not cfg.pause_on_speech_start
            )
            todo.append(
                (
                    cfg,
                    {
                        "settings": settings_of(cfg.setting, plan, cfg.pause_on_speech_start),
                        "agent_text": AGENT_TEXT,
                        "agent_seconds_per_char": SECONDS_PER_CHAR,
                        "trials": trials,
                    },
                )
            )

        def one(item: tuple[Config, dict[str, Any]]) -> None:
            cfg, spec = item
            budget = sum(t["duration"] for t in spec["trials"]) * 2.5 + 60
            print(f"[voice_peers] {cfg.key}: {len(spec['trials'])} trials ...", flush=True)
            out = run_config(cfg, spec, work, budget)
            out["config"] = {
                "impl": cfg.impl,
                "label": cfg.label,
                "setting": cfg.setting,
                "pause_on_speech_start": cfg.pause_on_speech_start,
            }
            out["spec_trials"] = spec["trials"]
            results[cfg.key] = out
            done = out.get("skipped") or f"{out.get('wall_s', 0.0):.1f} s"
            print(f"[voice_peers] {cfg.key}: {done}", flush=True)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, todo))
    results = {c.key: results[c.key] for c in configs if c.key in results}
    run_info = {
        "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "quick": a.quick,
        "jobs": jobs,
        "source": source,
        "plan": plan.__dict__,
        "settings": settings,
        "impls": impls,
        "load_before": load_before,
        "load_after": load_average(),
        "agent_text_chars": len(AGENT_TEXT),
        "seconds_per_char": SECONDS_PER_CHAR,
    }
    write_report(Path(a.out), results, run_info)
    print(f"[voice_peers] report in {a.out} ({run_info['wall_s']} s)", flush=True)
    return 0


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


def markdown(results: dict[str, Any], table: dict[str, Any], run: dict[str, Any]) -> str:
    from benchmarks.env import environment

    env = environment()
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


def write_report(out_dir: Path, results: dict[str, Any], run: dict[str, Any]) -> None:
    """results.json (raw records, summary, environment), report.md and timeline.png."""
    from benchmarks.env import environment

    out_dir.mkdir(parents=True, exist_ok=True)
    table = pk.summarise(results)
    doc = {"run": run, "environment": environment(), "summary": table, "results": results}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
    (out_dir / "report.md").write_text(markdown(results, table, run), encoding="utf-8")
    if table:
        plot(table, run, out_dir / "timeline.png")


if __name__ == "__main__":
    raise SystemExit(main())
