"""What the user heard: a realtime sink that keeps the audio it was given, and the WAV of it.

:class:`HeardSink` is the reference :class:`~trio_playout.RealtimeAudioSink` (it plays
on trio's clock, pauses, confirms clears) that also keeps every frame it was given,
per segment, and tells the demo's timeline about first frames, pauses, resumes and
clears. :func:`heard_audio` rebuilds, from that audio and the sink's own records,
what came out of the speaker: each segment from the moment it started, silence while
paused, cut at the position heard. Audio given but never played (cut by a clear)
is not in it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trio

from ._audio import AudioFrame, PlaybackSegment
from ._realtime_sink import PlayoutRecord, RealtimeAudioSink
from ._resample import FloatArray, StreamResampler, float_to_pcm16, pcm16_to_float_mono

__all__ = ["HeardSink", "heard_audio"]


class HeardSink(RealtimeAudioSink):
    """A :class:`RealtimeAudioSink` that keeps its audio and reports to ``log``.

    ``label()`` names what is being synthesized right now (the demo's TTS wrapper
    sets it), so each segment can be named after the reply it plays.
    """

    def __init__(self, log: Callable[[str, str], None], label: Callable[[], str], *,
                 clear_delay: float = 0.0) -> None:
        super().__init__(clear_delay)
        self._log = log
        self._label = label
        self.audio: dict[int, list[AudioFrame]] = {}
        self.labels: dict[int, str] = {}
        self.first_frame_at: dict[int, float] = {}
        self._clearing = False

    def segment_of(self, label: str) -> PlaybackSegment | None:
        for seg in self.pending_segments:
            if self.labels.get(seg.id) == label:
                return seg
        return None

    def record_of(self, label: str) -> PlayoutRecord | None:
        for rec in self.records:
            if self.labels.get(rec.segment_id) == label:
                return rec
        return None

    def heard(self, label: str) -> tuple[float, bool]:
        """Seconds of the segment named ``label`` heard so far, and whether it is over."""
        rec = self.record_of(label)
        if rec is None:
            return 0.0, False
        if rec.position is not None:
            return rec.position, True
        seg = self.segment_of(label)
        return (self.playback_position(seg), False) if seg is not None else (0.0, False)

    def on_segment_opened(self, segment: PlaybackSegment) -> None:
        self.labels[segment.id] = self._label()
        self.audio[segment.id] = []
        super().on_segment_opened(segment)

    async def write_frame(self, segment: PlaybackSegment, frame: AudioFrame) -> None:
        frames = self.audio[segment.id]
        if not frames:
            self.first_frame_at[segment.id] = trio.current_time()
            self._log("first_frame", f"sink: first frame of {self.labels[segment.id]}")
        frames.append(frame)
        await super().write_frame(segment, frame)

    def _where(self) -> str:
        seg = self.current_segment or next(iter(self.pending_segments), None)
        if seg is None:
            return "nothing playing"
        return f"{self.labels.get(seg.id, '?')} at {self.playback_position(seg):.2f} s"

    def on_pause(self) -> None:
        super().on_pause()
        self._log("pause", f"sink PAUSED ({self._where()})")

    def clear_buffer(self) -> None:
        self._clearing = True  # a clear also ends a pause: that is no resume
        try:
            super().clear_buffer()
        finally:
            self._clearing = False

    def on_resume(self) -> None:
        where = self._where()
        super().on_resume()
        if self._clearing:
            self._log("unpause", "sink: the clear ends the pause (the paused audio is dropped, not played)")
        else:
            self._log("resume", f"sink resumed ({where})")

    def on_clear(self, segments: Sequence[PlaybackSegment]) -> None:
        names = ", ".join(self.labels.get(s.id, "?") for s in segments)
        self._log("clear", f"sink: clear ({names}), confirmed after {self.clear_delay:g} s")
        super().on_clear(segments)


def _mono(frames: Sequence[AudioFrame], rate: int) -> FloatArray:
    if not frames:
        return np.zeros(0, dtype=np.float32)
    src = frames[0].sample_rate
    samples = np.concatenate([pcm16_to_float_mono(f.data, f.num_channels) for f in frames])
    return samples if src == rate else StreamResampler(src, rate).push(samples)


@dataclass(frozen=True)
class Heard:
    """The rebuilt audio and what went into it (seconds)."""

    frame: AudioFrame
    agent_seconds: float  # agent audio placed (the sum of the positions heard)
    end: float  # trio time at which the file ends


def _place(out: FloatArray, t0: float, rate: int, at: float, audio: FloatArray, gain: float) -> None:
    i = max(0, round((at - t0) * rate))
    n = max(0, min(len(audio), len(out) - i))
    out[i:i + n] += gain * audio[:n]


def heard_audio(sink: HeardSink, t0: float, *, mic: Sequence[tuple[float, AudioFrame]] = (),
                rate: int = 16000, mic_gain: float = 0.7) -> Heard:
    """The agent's audio as played from ``t0`` (trio time), plus ``mic`` clips if given.

    Each finished record is laid out from its ``started_at``: audio up to each pause,
    silence until the resume, on until its ``position`` (what was heard). The file ends
    where the last audio stopped.
    """
    pieces: list[tuple[float, FloatArray]] = []
    end = t0
    total = 0.0
    for rec in sink.records:
        if rec.position is None or rec.position <= 0:
            continue
        audio = _mono(sink.audio.get(rec.segment_id, []), rate)
        heard = min(round(rec.position * rate), len(audio))
        total += heard / rate
        at, pos = rec.started_at, 0
        for paused_at, resumed_at in rec.pauses:
            take = min(max(0, round((paused_at - at) * rate)), heard - pos)
            pieces.append((at, audio[pos:pos + take]))
            pos += take
            if resumed_at is None:
                break
            at = resumed_at
        if pos < heard and (not rec.pauses or rec.pauses[-1][1] is not None):
            pieces.append((at, audio[pos:heard]))
            pos = heard
        end = max(end, at + (len(pieces[-1][1]) / rate if pieces else 0.0))
    for at, frame in mic:
        end = max(end, at + frame.duration)
    out = np.zeros(round((end - t0) * rate), dtype=np.float32)
    for at, audio in pieces:
        _place(out, t0, rate, at, audio, 1.0)
    for at, frame in mic:
        _place(out, t0, rate, at, _mono([frame], rate), mic_gain)
    return Heard(AudioFrame(float_to_pcm16(np.clip(out, -1.0, 1.0)), rate), total, end)
