"""The fake speaker of :mod:`benchmarks.peer_pipecat` and what its record says (no pipecat import).

The speaker stands for a local loudspeaker behind pipecat's output transport: it
plays each chunk written to it on the real clock (back to back, one chunk of
device buffer, the way a blocking sound-card write behaves) and keeps a record of
what it played and when. Its record is the truth for the contract's "stopped",
"played_after_decision", "resumed", "skipped" and "replayed" fields.

Every agent audio frame carries its identity in its first samples (see
:func:`encode_frame`): which reply it belongs to and its index inside the reply.
Pipecat re-chunks and queues audio, but at one sample rate and whole 20 ms frames
the bytes reach the speaker unchanged, so the record shows exactly which frames
played, which were dropped by a clear and whether any played twice.
"""

from __future__ import annotations

import asyncio
import math
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

FRAME_S = 0.02
_MAGIC = 12345
_TONE_HZ = 220.0
_TONE_AMP = 3000.0


def encode_frame(reply: int, index: int, rate: int) -> bytes:
    """One 20 ms frame of agent audio: a quiet tone whose first samples name it.

    Sample 0 is ``_MAGIC``, sample 1 the reply number (1..32767), sample 2 the
    frame index inside the reply modulo 32768 (11 minutes at 20 ms a frame).
    The tone is computed once per rate: a frame costs a copy, so the TTS makes a
    sentence's audio in microseconds, as a fake that is "instant" should.
    """
    tone = _TONES.get(rate)
    if tone is None:
        n = round(rate * FRAME_S)
        samples = [round(_TONE_AMP * math.sin(2 * math.pi * _TONE_HZ * k / rate)) for k in range(n)]
        tone = _TONES[rate] = struct.pack(f"<{n}h", *samples)
    frame = bytearray(tone)
    struct.pack_into("<3h", frame, 0, _MAGIC, reply, index % 32768)
    return bytes(frame)


_TONES: dict[int, bytes] = {}


def decode_frame(audio: bytes) -> tuple[int, int] | None:
    """``(reply, index)`` of a frame made by :func:`encode_frame`, None for anything else."""
    if len(audio) < 6:
        return None
    magic, reply, index = struct.unpack_from("<3h", audio, 0)
    if magic != _MAGIC:
        return None
    return reply, index


@dataclass
class Played:
    """One chunk as the speaker played it (perf_counter seconds)."""

    start: float
    end: float
    reply: int  # 0: not agent audio (silence, padding)
    index: int


@dataclass
class Speaker:
    """A loudspeaker with one chunk of buffer, on the real clock.

    :meth:`write` queues a chunk right after the one playing and returns when it
    starts playing, so a writer that writes as fast as it can stays one chunk
    ahead. :meth:`clear` drops what is queued and cuts the chunk playing now:
    what a transport does when it forwards pipecat's interruption to the
    device (pipecat's websocket serializers send the client a "clear").
    """

    clock: Callable[[], float] = time.perf_counter
    played: list[Played] = field(default_factory=list)
    clears: list[float] = field(default_factory=list)
    _end: float = 0.0

    async def write(self, audio: bytes, rate: int) -> bool:
        now = self.clock()
        start = max(now, self._end)
        end = start + len(audio) / 2 / rate
        self._end = end
        ident = decode_frame(audio)
        reply, index = ident if ident is not None else (0, -1)
        self.played.append(Played(start, end, reply, index))
        delay = start - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        return True

    def clear(self) -> None:
        now = self.clock()
        self.clears.append(now)
        kept = [p for p in self.played if p.start < now]
        if kept and kept[-1].end > now:
            kept[-1].end = now
        self.played = kept
        self._end = min(self._end, now)


@dataclass
class SinkFacts:
    """The contract fields that come from the speaker's record (seconds since w0)."""

    stopped: float | None = None
    stop_kind: str | None = None
    played_after_decision: float | None = None
    resumed: bool | None = None
    resumed_at: float | None = None
    skipped: float | None = None
    replayed: float | None = None
    reply_first_frame: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


def _overlap(p: Played, lo: float, hi: float) -> float:
    return max(0.0, min(p.end, hi) - max(p.start, lo))


def analyse(
    played: Sequence[Played],
    *,
    w0: float,
    onset: float,
    trial_end: float,
    vad_decision: float | None,
    agent_reply: int | None,
    agent_frames: int | None,
    answer_replies: Sequence[int],
) -> SinkFacts:
    """Read the contract's sink fields off the record.

    ``agent_reply`` is the reply the agent was speaking when the user's sound
    began (None in S10) and ``agent_frames`` its whole length in frames; the
    answer replies are those started after the onset. "Stopped" is the end of
    the agent reply's contiguous run (consecutive indices, no gap over 0.1 s)
    that covers the onset, unless that run reaches the reply's end or the trial's
    end. Pipecat cannot resume a reply, so when the run is never continued,
    ``skipped`` is the agent audio lost to the stop: what would have played
    before the trial's end (capped by what was left of the reply).
    ``played_after_decision`` counts the agent reply's audio between the VAD
    decision and the stop (the trial's end when it never stopped).
    """
    rel = [Played(p.start - w0, p.end - w0, p.reply, p.index) for p in played]
    facts = SinkFacts()
    answer = set(answer_replies)
    firsts = [p.start for p in rel if p.reply in answer]
    facts.reply_first_frame = min(firsts) if firsts else None

    if agent_reply is not None:
        mine = [p for p in rel if p.reply == agent_reply]
        facts.details["agent_played_s"] = round(sum(p.end - p.start for p in mine), 4)
        at = [i for i, p in enumerate(mine) if p.end > onset]
        if mine and at:
            j = at[0]
            while (j + 1 < len(mine) and mine[j + 1].index == mine[j].index + 1
                   and mine[j + 1].start - mine[j].end < 0.1):
                j += 1
            last = mine[j]
            finished = agent_frames is not None and last.index >= agent_frames - 1
            if not finished and last.end < trial_end - 0.06:
                facts.stopped = last.end
                facts.stop_kind = "clear"
                later = mine[j + 1:]
                if later:
                    nxt = later[0]
                    facts.resumed = True
                    facts.resumed_at = nxt.start
                    facts.skipped = round(max(0, nxt.index - last.index - 1) * FRAME_S, 4)
                    facts.replayed = round(max(0, last.index - nxt.index + 1) * FRAME_S, 4)
                else:
                    facts.resumed = False
                    left = (agent_frames - 1 - last.index) if agent_frames is not None else 10**9
                    would = math.floor(max(0.0, trial_end - last.end) / FRAME_S)
                    facts.skipped = round(min(left, would) * FRAME_S, 4)
                    facts.replayed = 0.0
                    facts.details["agent_unplayed_s"] = (
                        round(left * FRAME_S, 4) if agent_frames is not None else None)
    if vad_decision is not None and agent_reply is not None:
        hi = facts.stopped if facts.stopped is not None else trial_end
        facts.played_after_decision = round(
            sum(_overlap(p, vad_decision, hi) for p in rel if p.reply == agent_reply), 4)
    return facts


def normalise_history(messages: Sequence[Any]) -> list[tuple[str, str]]:
    """(role, text) pairs of pipecat LLM context messages (dicts in the OpenAI shape)."""
    out: list[tuple[str, str]] = []
    for m in messages:
        if not isinstance(m, dict):
            out.append(("?", repr(m)))
            continue
        content = m.get("content")
        if isinstance(content, list):
            text = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        else:
            text = "" if content is None else str(content)
        out.append((str(m.get("role")), text))
    return out
