"""Voice peer ``trio``: trio_playout with :class:`trio_playout.silero.SileroVAD`.

``python -m benchmarks.peer_trio --spec SPEC.json --out OUT.json`` (the contract in
``benchmarks/PEERS.md``). One fresh :func:`trio_playout.open_session` per
trial, on trio's real clock: the WAV paced in 20 ms frames, the Silero VAD inline
(shared onnxruntime session, livekit-plugins-silero's model file), a scripted STT
on the same clock, an instant LLM, a TTS producing marked frames at once, and a
:class:`~trio_playout.RealtimeAudioSink` (pausable, clears at once) that tells the
shared :class:`~benchmarks._peer_sink.PlayHead` what it was told, when.

VAD events are stamped when the session's driver receives them (right before the
wrapper yields them), like the livekit peer stamps them when its audio recognition
reads them.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from typing import Any

import trio

import trio_playout as tp
from benchmarks import _peer_sink as ps
from benchmarks._peer_audio import read_wav
from trio_playout.silero import SileroVAD

ANSWER_TEXT = "It is ten past one and the weather is fine"
SETTLE = 0.3  # after opening the session, before the trial's first frame (as the livekit peer)


class PacedMic:
    """The trial's WAV in 20 ms frames: frame *k* at ``w0 + k * 0.02`` (contract)."""

    def __init__(self, frames: list[bytes], clock: ps.Clock) -> None:
        self.frames = frames
        self.clock = clock
        self.go = trio.Event()  # set once the session has settled: the trial starts
        self.started = trio.Event()
        self.t0 = 0.0
        self.late_max = 0.0  # worst delivery of a frame after its due time (s)

    def __aiter__(self) -> AsyncIterator[tp.AudioFrame]:
        return self._run()

    async def _run(self) -> AsyncIterator[tp.AudioFrame]:
        await self.go.wait()
        self.t0 = trio.current_time()
        self.clock.start()
        self.started.set()
        for k, data in enumerate(self.frames):
            if k:
                await trio.sleep_until(self.t0 + k * 0.02)
                self.late_max = max(self.late_max, self.clock() - k * 0.02)
            yield tp.AudioFrame(data, ps.MIC_RATE)
        await trio.sleep_forever()


class StampVAD:
    """Stamps each event of the wrapped VAD as the session receives it."""

    def __init__(self, inner: tp.VAD, clock: ps.Clock, stamps: list[ps.VadStamp]) -> None:
        self.inner, self.clock, self.stamps = inner, clock, stamps

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        kinds = {tp.VADEventType.INFERENCE: "inference", tp.VADEventType.START_OF_SPEECH: "start",
                 tp.VADEventType.END_OF_SPEECH: "end"}
        async for ev in self.inner.stream(frames):
            self.stamps.append(ps.VadStamp(self.clock(), kinds[ev.type], ev.probability, ev.speech_duration))
            yield ev


class ClockSTT:
    """Gives ``text`` as a final transcript with the first frame at or after ``at``."""

    def __init__(self, clock: ps.Clock, at: float | None, text: str | None) -> None:
        self.clock, self.at, self.text = clock, at, text
        self.delivered: float | None = None

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.Transcript]:
        async for _frame in frames:
            if self.at is not None and self.text and self.delivered is None and self.clock() >= self.at:
                self.delivered = self.clock()
                yield tp.Transcript(self.text, True)


class InstantLLM:
    """Answers every request with one text chunk, at once."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def stream(self, request: tp.LLMRequest) -> AsyncIterator[tp.LLMChunk]:
        yield tp.TextDelta(self.text)


class MarkTTS:
    """Marked 24 kHz frames (see :mod:`benchmarks._peer_sink`), ``spc`` seconds per char."""

    def __init__(self, agent_text: str, spc: float) -> None:
        self.agent_text, self.spc = agent_text, spc

    async def synthesize(self, text: str) -> AsyncIterator[tp.SynthesizedAudio]:
        sign = ps.AGENT if text.strip() and text.strip() in self.agent_text else ps.ANSWER
        words: list[tp.WordTiming] = []
        pos = 0
        for w in text.split():
            i = text.index(w, pos)
            pos = i + len(w)
            words.append(tp.WordTiming(i * self.spc, pos * self.spc, i, pos))
        for k, pcm in enumerate(ps.tts_pcm(len(text) * self.spc, sign)):
            lo, hi = k * 0.02, (k + 1) * 0.02
            yield tp.SynthesizedAudio(tp.AudioFrame(pcm, ps.TTS_RATE),
                                      tuple(w for w in words if lo <= w.start < hi))
            await trio.lowlevel.checkpoint()


class RecSink(tp.RealtimeAudioSink):
    """The reference real-time sink, telling the play head what it was told."""

    def __init__(self, head: ps.PlayHead, clock: ps.Clock) -> None:
        super().__init__(clear_delay=0.0, buffer=0.2, can_pause=True)
        self.head, self.clock = head, clock

    async def write_frame(self, segment: tp.PlaybackSegment, frame: tp.AudioFrame) -> None:
        self.head.push(self.clock(), frame.data, segment.id)
        await super().write_frame(segment, frame)

    def on_pause(self) -> None:
        self.head.pause(self.clock())
        super().on_pause()

    def on_resume(self) -> None:
        self.head.resume(self.clock())
        super().on_resume()

    def on_clear(self, segments: Sequence[tp.PlaybackSegment]) -> None:
        self.head.clear(self.clock())
        super().on_clear(segments)


def history_of(session: tp.Session) -> list[Any]:
    out: list[Any] = []
    for item in session.history:
        if isinstance(item, tp.ChatMessage):
            out.append([item.role, item.text, item.interrupted])
        else:
            out.append([type(item).__name__])
    return out


async def run_trial(spec: dict[str, Any], trial: dict[str, Any], vad: SileroVAD, *,
                    silent: bool = False
                    ) -> tuple[ps.PlayHead, list[ps.VadStamp], ClockSTT, list[Any], dict[str, Any]]:
    st = spec["settings"]
    clock = ps.Clock()
    head = ps.PlayHead()
    stamps: list[ps.VadStamp] = []
    samples = read_wav(trial["wav"])
    if silent:
        samples = samples[:0]
    mic = PacedMic(ps.mic_frames(samples, float(trial["duration"])), clock)
    at = float(trial["end"]) + 0.2 if trial.get("transcript") and not silent else None
    stt = ClockSTT(clock, at, trial.get("transcript"))
    turn = tp.TurnOptions(min_interruption_duration=st["min_interruption_duration"],
                          false_interruption_timeout=st["false_interruption_timeout"],
                          pause_on_speech_start=bool(st.get("pause_on_speech_start", False)))
    sink = RecSink(head, clock)
    async with tp.open_session(llm=InstantLLM(ANSWER_TEXT), tts=MarkTTS(spec["agent_text"],
                               float(spec["agent_seconds_per_char"])), output=sink, audio_input=mic,
                               vad=StampVAD(vad, clock, stamps), stt=stt, turn=turn) as session:
        await trio.sleep(SETTLE)
        mic.go.set()
        await mic.started.wait()
        if trial.get("speak_at") is not None:
            await trio.sleep_until(mic.t0 + float(trial["speak_at"]))
            session.say(spec["agent_text"])
        await trio.sleep_until(mic.t0 + float(trial["duration"]))
        history = history_of(session)
        head.advance(clock())
    return head, stamps, stt, history, {"mic_late_max": mic.late_max, "vad_events": len(stamps)}


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    st = spec["settings"]
    v = st["vad"]
    vad = SileroVAD(min_speech_duration=v["min_speech_duration"],
                    min_silence_duration=v["min_silence_duration"],
                    activation_threshold=v["activation_threshold"], sample_rate=v["sample_rate"])
    trials, refs = await ps.run_trials(
        spec, lambda trial, silent=False: run_trial(spec, trial, vad, silent=silent))
    forced = [
        "Silero probabilities used raw (livekit smooths them with an exponential filter, alpha 0.35)",
        "VAD inference inline on the trio thread (livekit: in a thread pool executor)",
    ]
    return {"impl": "trio", "versions": ps.versions("trio", "trio-playout", "onnxruntime", "numpy"),
            "settings": {**st, "forced_differences": forced}, "trials": trials,
            "reference_histories": refs}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    spec = ps.load_spec(a.spec)
    out = trio.run(run, spec)
    ps.write_out(a.out, out)


if __name__ == "__main__":
    main()
