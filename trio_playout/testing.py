"""Fakes for testing agents built on trio_playout: both sides of a conversation.

The agent's side: :class:`ScriptedLLM` (replies step by step) and :class:`FakeTTS`
(silent audio with word timings). The user's side: :class:`ScriptedVAD` and
:class:`ScriptedSTT` (speech and transcripts at scripted times), and two paced
microphones, :class:`SilentInput` (silence) and :class:`PacedAudio` (given audio,
e.g. speech rendered with :meth:`trio_playout.espeak.EspeakTTS.render_sync`, placed
at chosen times, then silence).

Everything paces itself on trio's clock, so it runs under
``trio.testing.MockClock`` (pytest-trio's ``autojump_clock``) as well as in real time.
The microphones deliver each frame when its audio has elapsed, as a real one does;
the scripted VAD and STT read every frame they are given (so a session's audio
queues never overflow) and deliver what is due when a frame arrives: a real VAD also
only answers as audio comes in. Use them with :class:`~trio_playout.RealtimeAudioSink`
(``clear_delay`` 0, 0.15 or ``math.inf`` for an immediate, an avatar-like or a deaf
sink). The real models live in :mod:`trio_playout.silero` and
:mod:`trio_playout.espeak`.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import trio

from ._audio import AudioFrame
from ._input import Transcript, VADEvent, VADEventType
from ._models import LLMChunk, LLMRequest, SynthesizedAudio, TextDelta, ToolCall, WordTiming

__all__ = ["FakeTTS", "LLMReply", "PacedAudio", "ScriptExhausted", "ScriptedLLM", "ScriptedSTT",
           "ScriptedVAD", "SilentInput", "ToolCall"]

_EPS = 1e-9  # clock comparisons: 50 * 0.02 must count as 1.0


class ScriptExhausted(LookupError):
    """The :class:`ScriptedLLM` was asked for more steps than its script has."""


@dataclass(frozen=True)
class LLMReply:
    """One scripted step: text, then tool calls.

    ``ttft`` is the delay before the first chunk, ``chunk_delay`` the delay between
    text chunks (the text is streamed word by word).
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    ttft: float = 0.0
    chunk_delay: float = 0.0


@dataclass
class ScriptedLLM:
    """An LLM that replays ``replies``, one per step, in order.

    A step whose tools all finished un-interrupted asks for the next reply as its tool
    reply. :attr:`requests` keeps what each step saw (history and tools), so tests can
    check that an error output reached the model.
    """

    replies: Sequence[LLMReply]
    requests: list[LLMRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._next = 0

    @property
    def remaining(self) -> int:
        return len(self.replies) - self._next

    async def stream(self, request: LLMRequest) -> AsyncIterator[LLMChunk]:
        self.requests.append(request)
        if self._next >= len(self.replies):
            raise ScriptExhausted(f"the script has {len(self.replies)} replies; step {self._next + 1} asked")
        reply = self.replies[self._next]
        self._next += 1
        await trio.sleep(reply.ttft)
        for i, word in enumerate(re.findall(r"\S+\s*", reply.text)):
            if i and reply.chunk_delay:
                await trio.sleep(reply.chunk_delay)
            yield TextDelta(word)
        for call in reply.tool_calls:
            yield call


@dataclass
class FakeTTS:
    """Silent audio whose length follows the words, with word timings.

    Each word lasts ``1 / words_per_second`` seconds; audio comes in frames of
    ``frame_duration``. ``synthesis_delay`` is a pause before the first frame (time
    to first byte).
    """

    words_per_second: float = 3.0
    frame_duration: float = 0.02
    sample_rate: int = 16000
    synthesis_delay: float = 0.0

    def __post_init__(self) -> None:
        if self.words_per_second <= 0 or self.frame_duration <= 0:
            raise ValueError("words_per_second and frame_duration must be positive")

    async def synthesize(self, text: str) -> AsyncIterator[SynthesizedAudio]:
        words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        per_word = 1.0 / self.words_per_second
        timings = [WordTiming(i * per_word, (i + 1) * per_word, s, e) for i, (s, e) in enumerate(words)]
        total = len(words) * per_word
        frame_samples = max(1, round(self.frame_duration * self.sample_rate))
        total_samples = round(total * self.sample_rate)
        await trio.sleep(self.synthesis_delay)
        start = 0
        pending = list(timings)
        while start < total_samples:
            n = min(frame_samples, total_samples - start)
            frame = AudioFrame(bytes(2 * n), self.sample_rate)
            end_t = (start + n) / self.sample_rate
            in_frame = tuple(w for w in pending if w.start < end_t)
            pending = pending[len(in_frame):]
            start += n
            yield SynthesizedAudio(frame, in_frame)


# -- the user's side ------------------------------------------------------------------


def _check_seconds(name: str, value: float | None, *, allow_none: bool = False,
                   positive: bool = False) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0 or (
            positive and value == 0):
        raise ValueError(f"{name} must be a finite number of seconds {'> 0' if positive else '>= 0'}, "
                         f"got {value!r}")


@dataclass
class ScriptedVAD:
    """A :class:`~trio_playout.VAD` that hears speech in scripted intervals.

    ``speech`` holds ``(start, end)`` intervals in seconds of trio's clock since its
    stream started (sorted, not overlapping). The stream yields ``START_OF_SPEECH`` at
    each ``start``, ``END_OF_SPEECH`` at each ``end`` (carrying the interval's length as
    its voiced ``speech_duration``), and an ``INFERENCE`` at the end of every
    ``window`` with the current ``speech_duration`` (time since the start, in speech:
    the whole interval is voiced) or ``silence_duration`` (time since the last end,
    outside speech);
    probability 1.0 in speech, 0.0 outside. An event at the same time as a window end
    comes before that window's ``INFERENCE``. Event timestamps are the scripted times.

    It reads every frame it is given and yields what has fallen due whenever a frame
    arrives, so with a microphone paced in 20 ms frames events come at most one
    frame late, and exactly on time when the script's times are multiples of the
    frame duration. It ends when its input ends. :attr:`frames` counts the frames
    it read.
    """

    speech: Sequence[tuple[float, float]] = ()
    window: float = 0.032
    frames: int = 0

    def __post_init__(self) -> None:
        _check_seconds("window", self.window, positive=True)
        previous_end = 0.0
        for start, end in self.speech:
            _check_seconds("start", start)
            _check_seconds("end", end)
            if not start < end:
                raise ValueError(f"speech interval ({start}, {end}) must have start < end")
            if start < previous_end:
                raise ValueError("speech intervals must be sorted and must not overlap")
            previous_end = end

    def _marks(self) -> list[tuple[float, int, VADEvent]]:
        # (time, order, event): START/END sort before an INFERENCE at the same time.
        out: list[tuple[float, int, VADEvent]] = []
        for start, end in self.speech:
            out.append((start, 0, VADEvent(VADEventType.START_OF_SPEECH, start, 0.0, 0.0, 1.0)))
            out.append((end, 0, VADEvent(VADEventType.END_OF_SPEECH, end, end - start, 0.0, 0.0)))
        return out

    def _inference(self, t: float) -> VADEvent:
        last_end = 0.0
        for start, end in self.speech:
            if start - _EPS <= t < end - _EPS:
                return VADEvent(VADEventType.INFERENCE, t, max(0.0, t - start), 0.0, 1.0)
            if end <= t + _EPS:
                last_end = end
        return VADEvent(VADEventType.INFERENCE, t, 0.0, max(0.0, t - last_end), 0.0)

    async def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[VADEvent]:
        t0 = trio.current_time()
        marks = self._marks()
        next_mark = 0
        windows = 0
        async for _frame in frames:
            self.frames += 1
            now = trio.current_time() - t0
            due: list[tuple[float, int, VADEvent]] = []
            while next_mark < len(marks) and marks[next_mark][0] <= now + _EPS:
                due.append(marks[next_mark])
                next_mark += 1
            while (windows + 1) * self.window <= now + _EPS:
                windows += 1
                t = windows * self.window
                due.append((t, 1, self._inference(t)))
            due.sort(key=lambda item: (item[0], item[1]))
            for _t, _order, event in due:
                yield event


@dataclass
class ScriptedSTT:
    """An :class:`~trio_playout.STT` that hears scripted text at scripted times.

    ``transcripts`` holds ``(at, text)`` or ``(at, text, final)`` in seconds of trio's
    clock since its stream started (``final`` defaults to True). Like
    :class:`ScriptedVAD` it reads every frame and yields what has fallen due when a
    frame arrives; it ends when its input ends.
    """

    transcripts: Sequence[tuple[float, str] | tuple[float, str, bool]] = ()
    frames: int = 0

    def __post_init__(self) -> None:
        self._script: list[tuple[float, Transcript]] = []
        for entry in self.transcripts:
            at, text = entry[0], entry[1]
            final = bool(entry[2]) if len(entry) > 2 else True
            _check_seconds("at", at)
            self._script.append((at, Transcript(text, final)))
        self._script.sort(key=lambda item: item[0])  # stable: equal times keep their order

    async def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[Transcript]:
        t0 = trio.current_time()
        next_item = 0
        async for _frame in frames:
            self.frames += 1
            now = trio.current_time() - t0
            while next_item < len(self._script) and self._script[next_item][0] <= now + _EPS:
                yield self._script[next_item][1]
                next_item += 1


@dataclass
class SilentInput:
    """A microphone that hears silence: frames of ``frame_duration`` on trio's clock.

    Each iteration starts its own clock and delivers frame *k* when its audio has
    elapsed (at ``(k + 1) * frame_duration``, without drift), for ``duration``
    seconds or forever (None).
    """

    frame_duration: float = 0.02
    sample_rate: int = 16000
    duration: float | None = None
    num_channels: int = 1

    def __post_init__(self) -> None:
        _check_seconds("frame_duration", self.frame_duration, positive=True)
        _check_seconds("duration", self.duration, allow_none=True)

    def __aiter__(self) -> AsyncIterator[AudioFrame]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[AudioFrame]:
        n = max(1, round(self.frame_duration * self.sample_rate))
        total = math.inf if self.duration is None else round(self.duration * self.sample_rate)
        frame = AudioFrame(bytes(2 * n * self.num_channels), self.sample_rate, self.num_channels)
        t0 = trio.current_time()
        sent = 0
        while sent < total:
            take = int(min(n, total - sent))
            sent += take
            await trio.sleep_until(t0 + sent / self.sample_rate)
            yield frame if take == n else AudioFrame(bytes(2 * take * self.num_channels), self.sample_rate,
                                                     self.num_channels)


class PacedAudio:
    """A microphone that plays given audio on trio's clock, then (optionally) silence.

    ``audio`` is one :class:`~trio_playout.AudioFrame` (played from the start) or a
    sequence of ``(at, frame)`` placing each frame at ``at`` seconds on a silent
    timeline (all at one sample rate and channel count, not overlapping). Frames of
    ``frame_duration`` are delivered when their audio has elapsed, like
    :class:`SilentInput`. After the last audio it goes on with silence forever when
    ``then_silence`` (a live microphone), else it ends; ``duration`` caps the total.
    Each iteration starts over with its own clock.
    """

    def __init__(self, audio: AudioFrame | Sequence[tuple[float, AudioFrame]], *,
                 frame_duration: float = 0.02, then_silence: bool = True,
                 duration: float | None = None) -> None:
        _check_seconds("frame_duration", frame_duration, positive=True)
        _check_seconds("duration", duration, allow_none=True)
        placed = [(0.0, audio)] if isinstance(audio, AudioFrame) else sorted(audio, key=lambda p: p[0])
        if not placed:
            raise ValueError("PacedAudio needs at least one frame of audio")
        first = placed[0][1]
        self.sample_rate = first.sample_rate
        self.num_channels = first.num_channels
        self.frame_duration = frame_duration
        self.then_silence = then_silence
        self.duration = duration
        self._segments: list[tuple[int, bytes]] = []  # (first sample, data)
        previous_end = 0
        for at, frame in placed:
            _check_seconds("at", at)
            if (frame.sample_rate, frame.num_channels) != (self.sample_rate, self.num_channels):
                raise ValueError("all audio must share one sample rate and channel count")
            start = round(at * self.sample_rate)
            if start < previous_end:
                raise ValueError("the placed audio must not overlap")
            self._segments.append((start, frame.data))
            previous_end = start + frame.samples_per_channel
        self.audio_end = previous_end / self.sample_rate
        """Seconds from the start of the iteration to the end of the last audio."""

    def __aiter__(self) -> AsyncIterator[AudioFrame]:
        return self._frames()

    def _slice(self, a: int, b: int) -> bytes:
        width = 2 * self.num_channels
        out = bytearray(width * (b - a))
        for start, data in self._segments:
            end = start + len(data) // width
            lo, hi = max(a, start), min(b, end)
            if lo < hi:
                out[(lo - a) * width:(hi - a) * width] = data[(lo - start) * width:(hi - start) * width]
        return bytes(out)

    async def _frames(self) -> AsyncIterator[AudioFrame]:
        n = max(1, round(self.frame_duration * self.sample_rate))
        end: float = math.inf if self.then_silence else round(self.audio_end * self.sample_rate)
        if self.duration is not None:
            end = min(end, round(self.duration * self.sample_rate))
        t0 = trio.current_time()
        sent = 0
        while sent < end:
            take = int(min(n, end - sent))
            data = self._slice(sent, sent + take)
            sent += take
            await trio.sleep_until(t0 + sent / self.sample_rate)
            yield AudioFrame(data, self.sample_rate, self.num_channels)
