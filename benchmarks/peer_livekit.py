"""Voice peer ``livekit``: a stock livekit-agents ``AgentSession`` with its Silero VAD.

``python -m benchmarks.peer_livekit --spec SPEC.json --out OUT.json`` (the contract in
``benchmarks/PEERS.md``). One fresh ``AgentSession`` per trial, on plain asyncio:

- the user's audio through the public input API (``session.input.audio``, an
  ``io.AudioInput`` paced on the real clock);
- ``livekit-plugins-silero``'s VAD (the same model file as trio_playout's
  ``SileroVAD``, same thresholds), wrapped only to stamp each event when livekit's
  audio recognition reads it;
- a scripted streaming ``stt.STT`` (final transcript at end + 0.2 s), the instant
  ``bridge.testing.ScriptedLLM`` (livekit base classes only, no trio), a TTS giving
  the marked frames of :mod:`benchmarks._peer_sink`;
- :class:`PausableSpeaker`, an ``io.AudioOutput`` that *can pause* (as a local
  speaker can), behind livekit's ``TranscriptSynchronizer`` (as in a room), so
  livekit's own pause / false-interruption resume path runs.

livekit's interruption options are set through ``turn_handling`` (min_duration,
false_interruption_timeout, resume_false_interruption), turn detection "vad",
interruption mode "vad". Its AEC warm-up (3 s by default: no barge-in in the first
3 s of agent speech) is switched off, as for a local speaker with no echo; every
other option is livekit's default (preemptive generation on).

:func:`run_all` is a plain asyncio coroutine so that ``benchmarks.peer_bridge`` runs
the very same code on the bridge's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from typing import Any, cast

from livekit import rtc
from livekit.agents import Agent, AgentSession, stt, tts, vad
from livekit.agents.llm import ChatMessage
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.voice.io import AudioInput, AudioOutput, AudioOutputCapabilities

from benchmarks import _peer_sink as ps
from benchmarks._peer_audio import read_wav

ANSWER_TEXT = "It is ten past one and the weather is fine"
SETTLE = 0.3  # after session.start, before the trial's first frame: start-up work is not measured
FORCED = [
    "livekit's Silero stream smooths probabilities (exponential filter, alpha 0.35) and runs the model "
    "in a thread pool executor; the decision stamp is the first smoothed probability >= threshold",
    "aec_warmup_duration=None (livekit's default 3 s would ignore every barge-in in the first 3 s of "
    "agent speech); interruption mode 'vad' (adaptive needs LiveKit Cloud); turn_detection 'vad'",
    "prefix_padding_duration stays livekit's 0.5 s (it only pads the audio handed to the STT)",
]


class PacedInput(AudioInput):
    """The trial's WAV in 20 ms frames, frame *k* at ``w0 + k * 0.02``; silence after it."""

    def __init__(self, frames: list[bytes], clock: ps.Clock) -> None:
        super().__init__(label="PacedInput")
        self.frames, self.clock = frames, clock
        self.k = 0
        self.late_max = 0.0  # worst delivery of a frame after its due time (s)
        self.go = asyncio.Event()  # set once the session has settled: the trial starts
        self.started = asyncio.Event()
        self._w0 = 0.0
        self._silence = bytes(2 * ps.MIC_FRAME)

    async def __anext__(self) -> rtc.AudioFrame:
        if self.k == 0:
            await self.go.wait()
            self._w0 = self.clock.start()
            self.started.set()
        else:
            delay = self._w0 + self.k * 0.02 - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.late_max = max(self.late_max, time.perf_counter() - self._w0 - self.k * 0.02)
        data = self.frames[self.k] if self.k < len(self.frames) else self._silence
        self.k += 1
        return rtc.AudioFrame(data=data, sample_rate=ps.MIC_RATE, num_channels=1,
                              samples_per_channel=ps.MIC_FRAME)


class _StampStream:
    """Forwards to livekit's VAD stream; stamps each event as audio recognition reads it."""

    def __init__(self, inner: vad.VADStream, clock: ps.Clock, stamps: list[ps.VadStamp]) -> None:
        self.inner, self.clock, self.stamps = inner, clock, stamps

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        self.inner.push_frame(frame)

    def flush(self) -> None:
        self.inner.flush()

    def end_input(self) -> None:
        self.inner.end_input()

    async def aclose(self) -> None:
        await self.inner.aclose()

    def __aiter__(self) -> _StampStream:
        return self

    async def __anext__(self) -> vad.VADEvent:
        ev = await self.inner.__anext__()
        kind = {vad.VADEventType.INFERENCE_DONE: "inference", vad.VADEventType.START_OF_SPEECH: "start",
                vad.VADEventType.END_OF_SPEECH: "end"}[ev.type]
        self.stamps.append(ps.VadStamp(self.clock(), kind, ev.probability if kind == "inference" else None,
                                       ev.speech_duration))
        return ev


class StampVAD(vad.VAD):
    """livekit's Silero VAD, its stream wrapped by :class:`_StampStream`."""

    def __init__(self, inner: vad.VAD, clock: ps.Clock, stamps: list[ps.VadStamp]) -> None:
        super().__init__(capabilities=inner.capabilities)
        self.inner, self.clock, self.stamps = inner, clock, stamps

    def stream(self) -> vad.VADStream:
        return cast(vad.VADStream, _StampStream(self.inner.stream(), self.clock, self.stamps))


class ScriptedSTT(stt.STT[Any]):
    """A streaming STT that gives ``text`` as one final transcript at ``at`` (since w0)."""

    def __init__(self, clock: ps.Clock, at: float | None, text: str | None) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self.clock, self.at, self.text = clock, at, text
        self.delivered: float | None = None

    async def _recognize_impl(
        self, buffer: Any, *, language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[])

    def stream(self, *, language: NotGivenOr[str] = NOT_GIVEN,
               conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS) -> stt.RecognizeStream:
        return _ScriptedStream(stt=self, conn_options=conn_options)


class _ScriptedStream(stt.RecognizeStream):
    _stt: ScriptedSTT

    async def _run(self) -> None:
        owner = self._stt
        async for _item in self._input_ch:
            if (owner.at is not None and owner.text and owner.delivered is None
                    and owner.clock() >= owner.at):
                owner.delivered = owner.clock()
                data = stt.SpeechData(language=cast(Any, "en"), text=owner.text, confidence=1.0)
                self._event_ch.send_nowait(stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                                                           alternatives=[data]))


class MarkTTS(tts.TTS[Any]):
    """Non-streaming TTS: the marked 24 kHz frames, ``spc`` seconds per character."""

    def __init__(self, agent_text: str, spc: float) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=ps.TTS_RATE,
                         num_channels=1)
        self.agent_text, self.spc = agent_text, spc

    def synthesize(self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
                   ) -> tts.ChunkedStream:
        return _MarkStream(tts=self, input_text=text, conn_options=conn_options)


class _MarkStream(tts.ChunkedStream):
    _tts: MarkTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        owner, text = self._tts, self.input_text.strip()
        output_emitter.initialize(request_id=f"mark{id(self)}", sample_rate=ps.TTS_RATE, num_channels=1,
                                  mime_type="audio/pcm", frame_size_ms=20)
        if not text:
            return
        # the agent's text may arrive in pieces (sentences): keep its content positions global
        at = owner.agent_text.find(text)
        sign, first = (ps.AGENT, round(at * owner.spc / 0.02)) if at >= 0 else (ps.ANSWER, 0)
        output_emitter.push(b"".join(ps.tts_pcm(len(text) * owner.spc, sign, first)))
        output_emitter.flush()


class PausableSpeaker(AudioOutput):
    """A local speaker for livekit: plays in real time, can pause, clears at once.

    Accepts at most 0.2 s of audio ahead of playback (back-pressure, as
    ``trio_playout.RealtimeAudioSink``'s default), reports every segment exactly once.
    """

    BUFFER = 0.2

    def __init__(self, head: ps.PlayHead, clock: ps.Clock) -> None:
        super().__init__(label="PausableSpeaker", capabilities=AudioOutputCapabilities(pause=True),
                         sample_rate=ps.TTS_RATE)
        self.head, self.clock = head, clock
        self.seg = 0
        self.capturing = False
        self.open: set[int] = set()  # segments started, not yet reported
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self.flushed: set[int] = set()

    def _kick(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        if not self.capturing:
            self.capturing = True
            self.seg += 1
            self.open.add(self.seg)
            self.on_playback_started(created_at=time.time())
        seg = self.seg
        self.head.push(self.clock(), bytes(frame.data), seg)
        while seg in self.open and self.head.ahead(self.clock()) > self.BUFFER:
            wake = self._wake
            wait = None if self.head.paused else self.head.ahead(self.clock()) - self.BUFFER
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)

    def flush(self) -> None:
        super().flush()
        if not self.capturing:
            return
        self.capturing = False
        self.flushed.add(self.seg)
        self._schedule()

    def _schedule(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.head.paused:
            return
        now = self.clock()
        for seg in sorted(self.flushed & self.open):
            left = self.head.segment_pending(seg, now)
            if left <= 0:
                self._finish(seg, interrupted=False)
            else:
                self._timer = asyncio.get_running_loop().call_later(left, self._schedule)
                return

    def _finish(self, seg: int, *, interrupted: bool) -> None:
        if seg not in self.open:
            return
        self.open.discard(seg)
        self.flushed.discard(seg)
        self.on_playback_finished(playback_position=self.head.segment_position(seg), interrupted=interrupted)

    def clear_buffer(self) -> None:
        self.head.clear(self.clock())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for seg in sorted(self.open):
            self._finish(seg, interrupted=True)
        self.capturing = False
        self._kick()

    def pause(self) -> None:
        self.head.pause(self.clock())
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def resume(self) -> None:
        self.head.resume(self.clock())
        self._kick()
        self._schedule()


def history_of(session: Any) -> list[Any]:
    out: list[Any] = []
    for item in session.history.items:
        if isinstance(item, ChatMessage):
            out.append([item.role, item.text_content or "", bool(item.interrupted)])
        else:
            out.append([type(item).__name__])
    return out


async def run_trial(spec: dict[str, Any], trial: dict[str, Any], silero: vad.VAD, *,
                    silent: bool = False
                    ) -> tuple[ps.PlayHead, list[ps.VadStamp], ScriptedSTT, list[Any], dict[str, Any]]:
    from bridge.testing import Reply, ScriptedLLM, attach_sink

    st = spec["settings"]
    clock = ps.Clock()
    head = ps.PlayHead()
    stamps: list[ps.VadStamp] = []
    samples = read_wav(trial["wav"])
    if silent:
        samples = samples[:0]
    mic = PacedInput(ps.mic_frames(samples, float(trial["duration"])), clock)
    at = float(trial["end"]) + 0.2 if trial.get("transcript") and not silent else None
    scripted = ScriptedSTT(clock, at, trial.get("transcript"))
    session: Any = AgentSession(
        vad=StampVAD(silero, clock, stamps), stt=scripted, llm=ScriptedLLM(fallback=Reply(text=ANSWER_TEXT)),
        tts=MarkTTS(spec["agent_text"], float(spec["agent_seconds_per_char"])), aec_warmup_duration=None,
        user_away_timeout=None, session_close_transcript_timeout=0.0,
        turn_handling={"turn_detection": "vad", "endpointing": {"min_delay": 0.5, "max_delay": 3.0},
                       "interruption": {"mode": "vad", "min_duration": st["min_interruption_duration"],
                                        "false_interruption_timeout": st["false_interruption_timeout"],
                                        "resume_false_interruption": True}})
    sink = PausableSpeaker(head, clock)
    sync = attach_sink(session, sink)
    session.input.audio = mic
    await session.start(agent=Agent(instructions="You are a benchmark."))
    try:
        await asyncio.sleep(SETTLE)
        mic.go.set()
        await asyncio.wait_for(mic.started.wait(), 5)
        w0 = clock.w0 or time.perf_counter()
        if trial.get("speak_at") is not None:
            await asyncio.sleep(max(0.0, w0 + float(trial["speak_at"]) - time.perf_counter()))
            session.say(spec["agent_text"])
        await asyncio.sleep(max(0.0, w0 + float(trial["duration"]) - time.perf_counter()))
        history = history_of(session)
        head.advance(clock())
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(session.aclose(), 3)
        if sync is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(sync.aclose(), 2)
    return head, stamps, scripted, history, {"mic_late_max": mic.late_max, "vad_events": len(stamps)}


async def run_all(spec: dict[str, Any], impl: str = "livekit") -> dict[str, Any]:
    """Every trial of ``spec``, one fresh AgentSession each; the OUT.json dict."""
    from livekit.plugins import silero

    logging.getLogger("livekit.agents").setLevel(logging.ERROR)
    st = spec["settings"]
    v = st["vad"]
    model = silero.VAD.load(min_speech_duration=v["min_speech_duration"],
                            min_silence_duration=v["min_silence_duration"],
                            activation_threshold=v["activation_threshold"], sample_rate=v["sample_rate"])
    trials, refs = await ps.run_trials(
        spec, lambda trial, silent=False: run_trial(spec, trial, model, silent=silent))
    return {"impl": impl, "versions": ps.versions("livekit-agents", "livekit-plugins-silero", "livekit",
                                                 "onnxruntime", "trio-asyncio"),
            "settings": {**st, "forced_differences": list(FORCED)}, "trials": trials,
            "reference_histories": refs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    spec = ps.load_spec(a.spec)
    ps.write_out(a.out, asyncio.run(run_all(spec)))


if __name__ == "__main__":
    main()
