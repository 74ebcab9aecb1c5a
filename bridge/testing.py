"""Fakes of the livekit-agents model and sink base classes, for tests and benchmarks.

Everything here subclasses the SDK's *public* base classes (``llm.LLM``,
``llm.LLMStream``, ``tts.TTS``, ``tts.ChunkedStream``, ``voice.io.AudioOutput``) and
runs on whatever asyncio loop the SDK runs on: plain asyncio, or the bridge's
trio-asyncio loop. This module imports only livekit and the standard library, never
``trio`` or ``trio_asyncio``, so a process that measures stock livekit on plain
asyncio can use the same fakes as the bridge (importing :mod:`bridge.testing` does not
import the bridge's implementation).

The fakes, and why each one exists:

* :class:`ScriptedLLM` replays one :class:`Reply` per ``chat()`` call, in order: text
  chunks and function tool calls, with a time to first token and a delay between
  chunks. When the script runs out it answers with ``fallback`` (empty by default).
* :class:`SilentTTS` turns text into silent 16-bit PCM whose length follows the text
  (``words_per_second``), so an interrupt lands at a meaningful position.
* :class:`FakeAudioSink` plays captured audio in loop time and honours the SDK's
  segment contract (exactly one ``on_playback_finished`` per captured segment, except
  for a sink that never confirms). ``clear_delay`` is how long a ``clear_buffer()``
  takes to reach the sink: ``0`` stops and confirms inside ``clear_buffer()`` like a
  local device; ``0.15`` keeps playing 150 ms, then stops and confirms, like an avatar
  behind an RPC; ``math.inf`` means the clear never arrives (the #5359 worst case): the
  sink plays out what it had buffered and never confirms that segment. This is the
  same model as ``trio_playout.RealtimeAudioSink``. ``confirm_clear=False`` is the
  other sink that never confirms: the clear stops the audio, the confirmation is lost.
  ``buffer`` optionally bounds how far ahead of playback ``capture_frame`` accepts
  audio (back-pressure, as a real room output has). It records every segment: when it
  started, when playback *actually* stopped and when the stop was confirmed, so a
  caller can check that ``wait_for_playout()`` did not return before the audio stopped.
* :func:`attach_sink` wires a sink (optionally behind livekit's
  ``TranscriptSynchronizer``, so an interrupted assistant message holds only the heard
  words) into an ``AgentSession`` that has no room.

Times recorded by the sink are in *loop time* (``loop.time()``): real monotonic time on
plain asyncio, trio's clock (possibly a ``MockClock``) under the bridge. They also carry
``time.perf_counter_ns()`` stamps for benchmarks that measure real time.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit import rtc
from livekit.agents import llm, tts
from livekit.agents.types import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
)
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

__all__ = [
    "FakeAudioSink",
    "PlayedSegment",
    "Reply",
    "ScriptedLLM",
    "SilentTTS",
    "ToolCall",
    "attach_sink",
]

_ids = itertools.count(1)


# ---------------------------------------------------------------------------------------
# LLM


@dataclass(frozen=True)
class ToolCall:
    """One function tool call the fake LLM emits.

    ``arguments`` may be a JSON string or a dict (serialised with ``json.dumps``).
    ``call_id`` defaults to a fresh ``call_<n>``.
    """

    name: str
    arguments: str | dict[str, Any] = "{}"
    call_id: str = ""

    def to_livekit(self) -> llm.FunctionToolCall:
        args = self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)
        return llm.FunctionToolCall(
            name=self.name, arguments=args, call_id=self.call_id or f"call_{next(_ids)}"
        )


@dataclass(frozen=True)
class Reply:
    """One scripted LLM turn.

    ``text`` is streamed word by word (``chunk_delay`` seconds apart, after ``ttft``);
    ``tool_calls`` are emitted after the text, ``tool_call_delay`` seconds after the last
    text chunk, all in one chunk (as parallel tool calls).
    """

    text: str = ""
    tool_calls: Sequence[ToolCall] = ()
    ttft: float = 0.0
    chunk_delay: float = 0.0
    tool_call_delay: float = 0.0


class ScriptedLLM(llm.LLM[Any]):
    """An ``llm.LLM`` that replays :class:`Reply` objects, one per ``chat()`` call.

    A reply step after tools is a separate ``chat()`` call, so script it as the next
    reply. ``requests`` keeps the chat context of every call for assertions.
    """

    def __init__(self, replies: Iterable[Reply] = (), *, fallback: Reply | None = None) -> None:
        super().__init__()
        self._script: list[Reply] = list(replies)
        self._fallback = fallback if fallback is not None else Reply()
        self.requests: list[llm.ChatContext] = []

    def push(self, *replies: Reply) -> None:
        """Append replies to the script."""
        self._script.extend(replies)

    @property
    def remaining(self) -> int:
        """How many scripted replies are still unused."""
        return len(self._script)

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        reply = self._script.pop(0) if self._script else self._fallback
        self.requests.append(chat_ctx.copy())
        return _ScriptedStream(self, reply, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


class _ScriptedStream(llm.LLMStream):
    def __init__(
        self,
        owner: ScriptedLLM,
        reply: Reply,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
    ) -> None:
        super().__init__(owner, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._reply = reply

    async def _run(self) -> None:
        reply = self._reply
        request_id = f"req_{next(_ids)}"
        if reply.ttft > 0:
            await asyncio.sleep(reply.ttft)
        words = reply.text.split(" ") if reply.text else []
        for i, word in enumerate(words):
            if i and reply.chunk_delay > 0:
                await asyncio.sleep(reply.chunk_delay)
            piece = word if i == len(words) - 1 else word + " "
            self._event_ch.send_nowait(
                llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=piece))
            )
        if reply.tool_calls:
            if reply.tool_call_delay > 0:
                await asyncio.sleep(reply.tool_call_delay)
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=request_id,
                    delta=llm.ChoiceDelta(
                        role="assistant", tool_calls=[c.to_livekit() for c in reply.tool_calls]
                    ),
                )
            )


# ---------------------------------------------------------------------------------------
# TTS


class SilentTTS(tts.TTS[Any]):
    """A non-streaming ``tts.TTS`` producing silence as long as the text takes to say.

    Duration is ``max(1, words) / words_per_second`` seconds; ``ttfb`` delays the audio.
    The session wraps a non-streaming TTS in livekit's ``StreamAdapter``, which calls
    :meth:`synthesize` once per sentence. ``requests`` lists the texts synthesised.
    """

    def __init__(
        self,
        *,
        words_per_second: float = 2.0,
        ttfb: float = 0.0,
        sample_rate: int = 16000,
        frame_ms: int = 100,
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self.words_per_second = words_per_second
        self.ttfb = ttfb
        self.frame_ms = frame_ms
        self.requests: list[str] = []

    def duration_of(self, text: str) -> float:
        """Seconds of audio this TTS produces for ``text``."""
        return max(1, len(text.split())) / self.words_per_second

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.requests.append(text)
        return _SilentStream(tts=self, input_text=text, conn_options=conn_options)


class _SilentStream(tts.ChunkedStream):
    _tts: SilentTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner = self._tts
        if owner.ttfb > 0:
            await asyncio.sleep(owner.ttfb)
        output_emitter.initialize(
            request_id=f"tts_{next(_ids)}",
            sample_rate=owner.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
            frame_size_ms=owner.frame_ms,
        )
        if not self.input_text.strip():
            return
        samples = int(owner.duration_of(self.input_text) * owner.sample_rate)
        output_emitter.push(b"\x00\x00" * samples)
        output_emitter.flush()


# ---------------------------------------------------------------------------------------
# Audio sink


@dataclass
class PlayedSegment:
    """What the sink did with one segment (one ``capture_frame``... ``flush()`` run).

    Loop times are ``None`` until the thing happened. ``stopped_at`` is when audio
    actually stopped coming out (end of playout, or when a clear took effect:
    ``clear_delay`` after ``clear_buffer()``); ``cleared_at`` is when ``clear_buffer()``
    was called; ``confirmed_at`` is when the sink reported ``on_playback_finished`` for
    it (``None`` forever for a sink that never confirms). ``clear_ignored`` marks a
    segment a never-confirming sink went on playing after a clear.
    """

    index: int
    started_at: float
    captured: float = 0.0
    frames: int = 0
    dropped_frames: int = 0
    flushed: bool = False
    interrupted: bool = False
    position: float | None = None
    stopped_at: float | None = None
    stopped_at_ns: int | None = None
    cleared_at: float | None = None
    confirmed_at: float | None = None
    confirmed_at_ns: int | None = None
    clear_ignored: bool = False
    _timer: asyncio.TimerHandle | None = field(default=None, repr=False)

    @property
    def playing(self) -> bool:
        """Audio of this segment is still coming out (or queued to)."""
        return self.stopped_at is None

    @property
    def confirmed(self) -> bool:
        return self.confirmed_at is not None


class FakeAudioSink(AudioOutput):
    """An ``AudioOutput`` leaf that plays audio in loop time and reports honestly.

    Parameters:
        clear_delay: seconds a ``clear_buffer()`` takes to reach the sink, which keeps
            playing until then and then stops and confirms (``0`` = inside
            ``clear_buffer()``). ``math.inf``: the clear never arrives, like a remote
            sink that lost the message: the buffered audio plays out (``stopped_at`` is
            when it actually ended) and ``on_playback_finished`` is never called for
            that segment.
        buffer: if set, seconds of audio ``capture_frame`` accepts ahead of playback
            before it blocks (a ``clear_buffer()`` releases blocked writers at once);
            ``None`` (default) accepts everything at once.
        confirm_clear: ``False`` models a sink that obeys a clear (the audio stops
            ``clear_delay`` after it) but whose confirmation is lost:
            ``on_playback_finished`` never comes for a segment it stopped that way.
        label: the sink's label.

    Contract kept (``voice/io.py``): a segment opens at the first ``capture_frame``
    after ``flush()``; every opened segment gets exactly one ``on_playback_finished``:
    ``interrupted=False`` with its full duration when it plays out, or
    ``interrupted=True`` with the seconds actually heard when a clear took effect;
    none for a segment a never-confirming sink played on after a clear.
    ``clear_buffer()`` is safe to call twice or with nothing playing. Frames captured
    into a cleared, not yet flushed segment are dropped.
    """

    def __init__(
        self,
        *,
        clear_delay: float = 0.0,
        buffer: float | None = None,
        confirm_clear: bool = True,
        label: str = "FakeAudioSink",
    ) -> None:
        super().__init__(label=label, capabilities=AudioOutputCapabilities(pause=False))
        if clear_delay < 0 or math.isnan(clear_delay):
            raise ValueError("clear_delay must be >= 0 (math.inf: never confirm)")
        if buffer is not None and not buffer > 0:
            raise ValueError("buffer must be positive (or None: unbounded)")
        self.clear_delay = clear_delay
        self.buffer = buffer
        self.confirm_clear = confirm_clear
        self._blocked: set[asyncio.Future[None]] = set()
        self.segments: list[PlayedSegment] = []
        self.clear_calls: list[float] = []
        self._current: PlayedSegment | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- queries -------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        """Some audio is still coming out of the sink."""
        return any(s.playing for s in self.segments)

    @property
    def unconfirmed(self) -> list[PlayedSegment]:
        """Segments whose ``on_playback_finished`` is still owed."""
        return [s for s in self.segments if not s.confirmed]

    @property
    def last_stop(self) -> float | None:
        """Loop time the most recent segment stopped playing, if it has."""
        return self.segments[-1].stopped_at if self.segments else None

    def heard_seconds(self) -> float:
        """Total seconds of audio that came out of the sink so far."""
        now = self._now()
        total = 0.0
        for s in self.segments:
            if s.position is not None:
                total += s.position
            else:
                total += min(s.captured, max(0.0, now - s.started_at))
        return total

    # -- AudioOutput ---------------------------------------------------------------

    def _now(self) -> float:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop.time()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        seg = self._current
        if seg is None:
            now = self._now()
            prev_end = max((s.started_at + s.captured for s in self.segments if s.playing), default=now)
            seg = PlayedSegment(index=len(self.segments), started_at=max(now, prev_end))
            self.segments.append(seg)
            self._current = seg
            self.on_playback_started(created_at=time.time())
        if seg.stopped_at is not None or seg.cleared_at is not None:
            seg.dropped_frames += 1
            return
        seg.frames += 1
        seg.captured += frame.duration
        if self.buffer is not None:
            ahead = seg.started_at + seg.captured - self._now() - self.buffer
            if ahead > 0:
                await self._hold(ahead)

    async def _hold(self, seconds: float) -> None:
        """Back-pressure: wait ``seconds``, or until the next ``clear_buffer()``."""
        loop = self._loop or asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._blocked.add(waiter)
        timer = loop.call_later(seconds, _resolve, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._blocked.discard(waiter)

    def flush(self) -> None:
        super().flush()
        seg, self._current = self._current, None
        if seg is None:
            return
        seg.flushed = True
        if seg.stopped_at is not None or seg.cleared_at is not None:
            return  # cleared while capturing: clear_buffer() already decided its end
        loop = self._loop or asyncio.get_running_loop()
        seg._timer = loop.call_at(seg.started_at + seg.captured, self._played_out, seg)

    def clear_buffer(self) -> None:
        now = self._now()
        self.clear_calls.append(now)
        for waiter in list(self._blocked):
            _resolve(waiter)
        loop = self._loop or asyncio.get_running_loop()
        for seg in self.segments:
            if not seg.playing or seg.cleared_at is not None:
                continue  # over, or a clear is already on its way
            seg.cleared_at = now
            if math.isinf(self.clear_delay):
                # the clear never arrives: what was buffered plays out, never confirmed
                seg.clear_ignored = True
                if seg._timer is None:
                    seg._timer = loop.call_at(seg.started_at + seg.captured, self._played_out, seg)
                continue
            if self.clear_delay == 0:
                self._stop(seg, now)
            elif seg.started_at + seg.captured > now + self.clear_delay or not seg.flushed:
                loop.call_later(self.clear_delay, self._clear_arrives, seg)
            # else: it plays out on its own before the clear would take effect

    # -- internals -----------------------------------------------------------------

    def _clear_arrives(self, seg: PlayedSegment) -> None:
        if seg.playing:
            self._stop(seg, self._now())

    def _stop(self, seg: PlayedSegment, now: float) -> None:
        """A clear took effect: the audio stops now and the stop is confirmed."""
        if seg._timer is not None:
            seg._timer.cancel()
            seg._timer = None
        seg.interrupted = True
        seg.position = min(seg.captured, max(0.0, now - seg.started_at))
        seg.stopped_at = now
        seg.stopped_at_ns = time.perf_counter_ns()
        if self.confirm_clear:
            self._confirm(seg)

    def _played_out(self, seg: PlayedSegment) -> None:
        seg._timer = None
        seg.position = seg.captured
        seg.stopped_at = self._now()
        seg.stopped_at_ns = time.perf_counter_ns()
        if seg.clear_ignored:
            return  # a never-confirming sink: the audio ended, no on_playback_finished
        self._confirm(seg)

    def _confirm(self, seg: PlayedSegment) -> None:
        if seg.confirmed:
            return
        seg.confirmed_at = self._now()
        seg.confirmed_at_ns = time.perf_counter_ns()
        self.on_playback_finished(playback_position=seg.position or 0.0, interrupted=seg.interrupted)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def attach_sink(session: Any, sink: AudioOutput, *, synchronize_transcript: bool = True) -> Any:
    """Set ``sink`` as the session's audio output (before ``session.start``).

    With ``synchronize_transcript`` (default) the sink sits behind livekit's
    ``TranscriptSynchronizer``, so an interrupted assistant message records only the
    words heard up to the playback position, as in a real room. Returns the
    synchronizer (or ``None``); close it with ``await sync.aclose()`` after the session.
    """
    if not synchronize_transcript:
        session.output.audio = sink
        return None
    from livekit.agents.voice.transcription.synchronizer import TranscriptSynchronizer

    sync = TranscriptSynchronizer(next_in_chain_audio=sink, next_in_chain_text=None)
    session.output.audio = sync.audio_output
    session.output.transcription = sync.text_output
    return sync
