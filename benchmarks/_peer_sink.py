"""Shared parts of the voice-peer processes (``benchmarks.peer_*``): the fake sink's
play head, the marked TTS audio, the paced microphone's frames, and the analysis of
one trial into the OUT.json record of the contract (``benchmarks/PEERS.md``).

Framework-neutral on purpose (numpy and the standard library only): each peer wraps
:class:`PlayHead` in its framework's sink class and calls it with
:func:`now` stamps, so "stopped", "resumed", "skipped" and "replayed" are computed by
the same code for every framework.

**Marked audio.** The fake TTS fills 20 ms frame *k* (24 kHz, 480 samples) with the
constant sample value ``sign * (k + 1)``: ``+`` for the agent's long speech, ``-``
for an answer. The sink decodes what it receives back into *content positions*
(samples since the start of that speech), so it knows exactly which part of the
speech it played when; a resume that skips or repeats audio shows up as a jump of
content position. Nobody listens to these frames, and frameworks pass PCM through
untouched when the output's rate is the TTS's rate.

**The play head** models a local speaker: audio plays at real time from the moment
it arrives (or the previous audio ends), a pause freezes it at once, a resume
continues from the same sample, a clear drops everything queued at once. Every
call is stamped by the caller in seconds since ``w0`` (the first microphone frame).
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

TTS_RATE = 24000
TTS_FRAME = 480  # 20 ms at 24 kHz
MIC_RATE = 16000
MIC_FRAME = 320  # 20 ms at 16 kHz
AGENT, ANSWER = 1, -1


class Clock:
    """Seconds since ``w0`` on ``time.perf_counter`` (the contract's time base)."""

    def __init__(self) -> None:
        self.w0: float | None = None

    def start(self) -> float:
        self.w0 = time.perf_counter()
        return self.w0

    def __call__(self) -> float:
        return time.perf_counter() - self.w0 if self.w0 is not None else float("nan")


def tts_pcm(seconds: float, sign: int, first_frame: int = 0) -> list[bytes]:
    """Marked 20 ms frames (int16 LE bytes) for ``seconds`` of speech."""
    n = max(1, round(seconds / 0.02))
    return [np.full(TTS_FRAME, sign * (first_frame + k + 1), dtype=np.int16).tobytes() for k in range(n)]


def mic_frames(samples: np.ndarray[Any, Any], duration: float) -> list[bytes]:
    """The microphone's 20 ms frames: the WAV, then silence up to ``duration``."""
    total = max(len(samples), round(duration * MIC_RATE))
    total = -(-total // MIC_FRAME) * MIC_FRAME
    pcm = np.zeros(total, dtype=np.int16)
    pcm[: len(samples)] = samples
    return [pcm[i: i + MIC_FRAME].tobytes() for i in range(0, total, MIC_FRAME)]


@dataclass
class Played:
    """A stretch of audio the speaker played: wall ``t0..t1``, content ``c0..c1`` (samples)."""

    t0: float
    t1: float
    kind: int
    c0: int
    c1: int
    seg: int


@dataclass
class _Chunk:
    kind: int
    c0: int
    n: int
    seg: int


@dataclass
class PlayHead:
    """What a local speaker plays, when (see the module docstring)."""

    rate: int = TTS_RATE
    queue: list[_Chunk] = field(default_factory=list)
    played: list[Played] = field(default_factory=list)
    # (t, "pause" | "clear"), only while audio was playing
    stops: list[tuple[float, str]] = field(default_factory=list)
    resumes: list[float] = field(default_factory=list)
    received: list[tuple[float, int, int, int]] = field(default_factory=list)  # (t, kind, c0, n)
    paused: bool = False
    cursor: float = 0.0  # wall time at which the head of the queue (at head_off) plays
    head_off: int = 0
    _last: tuple[int, int] = (0, 0)  # (value, samples of it seen) of the received stream

    # -- content decoding ------------------------------------------------------------
    def _decode(self, pcm: bytes) -> list[tuple[int, int, int]]:
        """(kind, c0, n) runs of a received chunk."""
        x = np.frombuffer(pcm, dtype=np.int16)
        if not len(x):
            return []
        cuts = np.flatnonzero(np.diff(x)) + 1
        out: list[tuple[int, int, int]] = []
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(x)], strict=True):
            v = int(x[a])
            n = int(b - a)
            seen = self._last[1] if self._last[0] == v else 0
            kind = AGENT if v > 0 else ANSWER if v < 0 else 0
            c0 = (abs(v) - 1) * TTS_FRAME + seen if v else 0
            self._last = (v, seen + n)
            out.append((kind, c0, n))
        return out

    # -- the speaker -----------------------------------------------------------------
    def advance(self, now: float) -> None:
        """Play everything due up to ``now``."""
        if self.paused:
            return
        while self.queue and self.cursor < now:
            ch = self.queue[0]
            left = ch.n - self.head_off
            end = self.cursor + left / self.rate
            upto = min(end, now)
            n = left if upto >= end else int((upto - self.cursor) * self.rate)
            if n <= 0:
                break
            self._record(self.cursor, self.cursor + n / self.rate, ch, n)
            self.cursor += n / self.rate
            self.head_off += n
            if self.head_off >= ch.n:
                self.queue.pop(0)
                self.head_off = 0

    def _record(self, t0: float, t1: float, ch: _Chunk, n: int) -> None:
        c0 = ch.c0 + self.head_off
        last = self.played[-1] if self.played else None
        if (last is not None and last.kind == ch.kind and last.seg == ch.seg and last.c1 == c0
                and abs(last.t1 - t0) < 1e-6):
            last.t1, last.c1 = t1, c0 + n
        else:
            self.played.append(Played(t0, t1, ch.kind, c0, c0 + n, ch.seg))

    def push(self, now: float, pcm: bytes, seg: int) -> None:
        """Audio of segment ``seg`` arrived."""
        self.advance(now)
        if not self.queue and not self.paused:
            self.cursor = max(self.cursor, now)  # the speaker was idle: it starts now
        for kind, c0, n in self._decode(pcm):
            self.received.append((now, kind, c0, n))
            self.queue.append(_Chunk(kind, c0, n, seg))

    def ahead(self, now: float) -> float:
        """Seconds of queued audio not yet played."""
        self.advance(now)
        return sum(c.n for c in self.queue) / self.rate - self.head_off / self.rate

    def pause(self, now: float) -> None:
        self.advance(now)
        if not self.paused and self.queue:
            self.stops.append((now, "pause"))
        self.paused = True

    def resume(self, now: float) -> None:
        if not self.paused:
            return
        self.paused = False
        self.cursor = now
        if self.queue:
            self.resumes.append(now)

    def clear(self, now: float) -> None:
        self.advance(now)
        if self.queue and not self.paused:
            self.stops.append((now, "clear"))
        self.queue.clear()
        self.head_off = 0
        self.paused = False
        self.cursor = now

    def segment_position(self, seg: int) -> float:
        """Seconds of segment ``seg`` played so far."""
        return sum(p.c1 - p.c0 for p in self.played if p.seg == seg) / self.rate

    def segment_pending(self, seg: int, now: float) -> float:
        """Seconds of segment ``seg`` still queued (``ahead`` for that segment)."""
        self.advance(now)
        total = 0
        for i, c in enumerate(self.queue):
            if c.seg == seg:
                total += c.n - (self.head_off if i == 0 else 0)
        return total / self.rate


# -- VAD stamps ---------------------------------------------------------------------


@dataclass
class VadStamp:
    """One VAD event as the framework received it: ``t`` since w0."""

    t: float
    kind: str  # "inference" | "start" | "end"
    probability: float | None
    speech_duration: float | None = None


# -- one trial's record ---------------------------------------------------------------


def analyse(trial: dict[str, Any], threshold: float, head: PlayHead, vad: Sequence[VadStamp],
            *, transcript_at: float | None = None, history: list[Any] | None = None,
            reference_history: list[Any] | None = None, error: str | None = None,
            extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The OUT.json record of one trial (contract fields, plus a few extras)."""
    onset = float(trial["onset"])
    rate = head.rate
    crossings = [s for s in vad if s.kind == "inference" and s.probability is not None
                 and s.probability >= threshold]
    decision = next((s.t for s in crossings if s.t >= onset - 0.02), None)
    early = [s.t for s in crossings if s.t < onset - 0.02]
    closing = float(trial["duration"])  # stops from closing the session are not the framework's
    stop = next(((t, k) for t, k in head.stops if onset - 0.02 <= t < closing), None)
    stopped = stop[0] if stop else None
    rec: dict[str, Any] = {
        "id": trial["id"], "scenario": trial["scenario"], "onset": onset, "end": trial["end"],
        "vad_decision": decision, "stopped": stopped, "stop_kind": stop[1] if stop else None,
        "played_after_decision": None, "resumed": None, "resumed_at": None,
        "skipped": None, "replayed": None, "history_equal": None,
        "reply_first_frame": None, "replies": 0, "error": error,
    }
    # the VAD event received last before the stop: what set it off (framework overhead after it)
    if stopped is not None:
        before = [s for s in vad if s.t <= stopped]
        if before:
            rec["decisive_event"] = {"t": before[-1].t, "kind": before[-1].kind,
                                     "speech_duration": before[-1].speech_duration}
            rec["decisive_to_stopped"] = stopped - before[-1].t
    if decision is not None and stopped is not None:
        lo, hi = decision, stopped
        rec["played_after_decision"] = sum(
            max(0.0, min(p.t1, hi) - max(p.t0, lo)) for p in head.played if p.kind == AGENT)
    agent = [p for p in head.played if p.kind == AGENT]
    if stopped is not None:
        after = [p for p in agent if p.t0 >= stopped - 1e-9]
        before_p = [p for p in agent if p.t1 <= stopped + 1e-9]
        rec["resumed"] = bool(after)
        if after:
            rec["resumed_at"] = after[0].t0
            if before_p:
                jump = (after[0].c0 - before_p[-1].c1) / rate
                rec["skipped"], rec["replayed"] = max(0.0, jump), max(0.0, -jump)
        rec["paused_for"] = (rec["resumed_at"] - stopped) if rec["resumed_at"] is not None else None
    starts = [(t, c0) for t, kind, c0, _n in head.received if kind == ANSWER and c0 == 0 and t >= onset]
    rec["replies"] = len(starts)
    first = next((p.t0 for p in head.played if p.kind == ANSWER and p.t0 >= onset), None)
    rec["reply_first_frame"] = first
    if history is not None:
        rec["history"] = history
        if reference_history is not None:
            rec["history_equal"] = history == reference_history
    rec["transcript_at"] = transcript_at
    rec["early_crossings"] = len(early)
    ends = [s.t for s in vad if s.kind == "end" and s.t >= onset]
    rec["vad_end"] = ends[0] if ends else None
    rec["vad_start"] = next((s.t for s in vad if s.kind == "start" and s.t >= onset - 0.02), None)
    if extra:
        rec.update(extra)
    return rec


def versions(*dists: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for d in dists:
        try:
            out[d] = metadata.version(d)
        except metadata.PackageNotFoundError:
            out[d] = None
    return out


def load_spec(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        spec: dict[str, Any] = json.load(fh)
    return spec


def write_out(path: str, out: dict[str, Any]) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(out, fh, indent=1)


def agent_seconds(spec: dict[str, Any], text: str) -> float:
    return len(text) * float(spec["agent_seconds_per_char"])


# -- summaries of OUT records (used by the harness) -------------------------------------


def _sub(a: str, b: str) -> Callable[[dict[str, Any]], float | None]:
    def f(r: dict[str, Any]) -> float | None:
        x, y = r.get(a), r.get(b)
        return None if x is None or y is None else float(x) - float(y)
    return f


def _s10_overhead(r: dict[str, Any]) -> float | None:
    """First answer frame after the moment trio's endpointing rule allows it: END_OF_SPEECH
    received (0.5 s after the end of the voice has passed: Silero waited 0.55 s), or the
    final received + late_final_delay 0.2 s if it came after that."""
    first, end, tr = r.get("reply_first_frame"), r.get("vad_end"), r.get("transcript_at")
    if first is None or end is None:
        return None
    allowed = float(end) if tr is None or float(tr) <= float(end) else float(tr) + 0.2
    return float(first) - allowed


def _resume_late(r: dict[str, Any]) -> float | None:
    a, e, t = r.get("resumed_at"), r.get("vad_end"), r.get("false_interruption_timeout")
    return None if a is None or e is None or t is None else float(a) - float(e) - float(t)


LATE_MIC = 0.05  # a microphone frame this late (s): the process was starved in that trial

# (name, scenario, value in seconds from one trial record)
METRICS: list[tuple[str, str, Callable[[dict[str, Any]], float | None]]] = [
    ("S8 onset -> VAD decision", "S8", _sub("vad_decision", "onset")),
    ("S8 VAD decision -> stopped", "S8", _sub("stopped", "vad_decision")),
    ("S8 onset -> stopped", "S8", _sub("stopped", "onset")),
    ("S8 deciding VAD event -> stopped", "S8", lambda r: r.get("decisive_to_stopped")),
    ("S8 audio played after decision", "S8", lambda r: r.get("played_after_decision")),
    ("S9 burst: onset -> stopped", "S9-burst", _sub("stopped", "onset")),
    ("S9 burst: paused for", "S9-burst", lambda r: r.get("paused_for")),
    ("S9 burst: resume late vs VAD end + timeout", "S9-burst", _resume_late),
    ("S10 t1 -> first answer frame", "S10", _sub("reply_first_frame", "end")),
    ("S10 t1 -> VAD end of speech received", "S10", _sub("vad_end", "end")),
    ("S10 VAD end received -> first answer frame", "S10", _sub("reply_first_frame", "vad_end")),
    ("S10 first frame - trio's endpoint rule", "S10", _s10_overhead),
]


def measured(out: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    """The measured trials of one scenario (no warm-up), with the spec's onset, end and
    duration and the false-interruption timeout filled in (a peer may omit them)."""
    spec = {t["id"]: t for t in out.get("spec_trials", [])}
    timeout = out.get("settings", {}).get("false_interruption_timeout")
    rows = []
    for t in out.get("trials", []):
        if t.get("scenario") != scenario or str(t.get("id", "")).startswith("warmup"):
            continue
        s = spec.get(t.get("id"), {})
        rows.append({**{k: s.get(k) for k in ("onset", "end", "duration")},
                     "false_interruption_timeout": timeout, **t})
    return rows


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    """Per configuration: each metric's summary (seconds) and the scenario counts."""
    from benchmarks.stats import summarize

    table: dict[str, Any] = {}
    for key, out in results.items():
        if out.get("skipped"):
            continue
        metrics: dict[str, Any] = {}
        for name, scen, get in METRICS:
            vals = [v for t in measured(out, scen) if not t.get("error") and (v := get(t)) is not None]
            s = summarize(vals)
            metrics[name] = s.as_dict() if s is not None else None
        counts: dict[str, Any] = {}
        for scen in ("S8", "S9-burst", "S9-click", "S10"):
            ts = measured(out, scen)
            counts[scen] = {
                "n": len(ts), "errors": sum(bool(t.get("error")) for t in ts),
                "stopped": sum(t.get("stopped") is not None for t in ts),
                "resumed": sum(bool(t.get("resumed")) for t in ts),
                "skipped_or_replayed": sum(bool(t.get("skipped")) or bool(t.get("replayed")) for t in ts),
                "history_equal": sum(t.get("history_equal") is True for t in ts),
                "one_reply": sum(t.get("replies") == 1 for t in ts),
                "replies": [t.get("replies") for t in ts],
            }
        every = [t for s in ("S8", "S9-burst", "S9-click", "S10") for t in measured(out, s)]
        known = [t for t in every if t.get("mic_late_max") is not None]  # a peer may not report it
        counts["all"] = {"n": len(every),
                         "late_mic": sum(t["mic_late_max"] > LATE_MIC for t in known) if known else "-"}
        table[key] = {"metrics": metrics, "counts": counts}
    return table


TrialRunner = Callable[..., Awaitable[tuple[Any, Any, Any, list[Any], dict[str, Any]]]]


async def run_trials(spec: dict[str, Any], run_trial: TrialRunner
                     ) -> tuple[list[dict[str, Any]], dict[str, list[Any]]]:
    """Every trial of ``spec`` through ``run_trial(trial, silent=False)``, analysed, and
    the reference histories by trial length.

    ``run_trial`` returns (play head, VAD stamps, scripted STT, history, diagnostics).
    An S9 trial is compared with the same trial without its sound (one reference per
    trial length); a trial that raises records its error and the others go on.
    """
    threshold = spec["settings"]["vad"]["activation_threshold"]
    refs: dict[float, list[Any]] = {}
    records = []
    for trial in spec["trials"]:
        ref = None
        try:
            if trial["scenario"].startswith("S9"):
                key = float(trial["duration"])
                if key not in refs:  # the same trial without the sound
                    refs[key] = (await run_trial(trial, silent=True))[3]
                ref = refs[key]
            head, stamps, stt, history, diag = await run_trial(trial)
            rec = analyse(trial, threshold, head, stamps, transcript_at=stt.delivered,
                          history=history, reference_history=ref, extra=diag)
        except Exception as exc:  # one broken trial must not lose the others
            rec = {"id": trial["id"], "scenario": trial["scenario"], "error": f"{type(exc).__name__}: {exc}"}
        records.append(rec)
    return records, {str(k): v for k, v in refs.items()}
