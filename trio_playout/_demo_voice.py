"""The voice demo: a user barges in on the agent, by voice, heard by the real Silero VAD.

The story (``python -m trio_playout.demo``): the user asks a question; the agent
replies; a noise on the user's microphone is not speech and changes nothing; a short
"hmm" (0.3 s of voice) is shorter than ``min_interruption_duration`` and changes
nothing either (with ``--pause-on-speech-start`` it pauses the agent for about 0.3 s,
which resumes as soon as the voice stops); a long thinking "hmmm" (0.9 s of voice)
pauses the agent, no words follow, and the reply resumes where it paused
``false_interruption_timeout`` later (a false interruption); "Wait, what about
London?" pauses it again, the words confirm the barge-in and end the reply where it
stopped; the user's turn is answered. Each step is printed with its time on trio's
clock, so the same code runs in real time and, in the tests, in virtual time.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import trio

import trio_playout as tp

from ._demo_data import (
    BARGE_IN,
    HMM,
    HUM,
    QUESTION,
    RATE,
    REPLY_LONDON,
    REPLY_PARIS,
    Voices,
    espeak_available,
    espeak_voices,
    recorded_voices,
    write_wav,
)
from ._demo_heard import HeardSink, heard_audio
from ._demo_user import ClipSTT, Cue, Placed, UserMic
from ._step import _aclosing
from .testing import LLMReply, ScriptedLLM

__all__ = ["VoiceDemo", "VoiceOptions", "run_voice_demo"]

MIN_INTERRUPTION = tp.TurnOptions().min_interruption_duration
LABELS = {REPLY_PARIS.text: "the Paris reply", REPLY_LONDON.text: "the London reply"}
NOISE_AT, HMM_AT, HUM_AT, BARGE_IN_AT = 0.8, 1.6, 3.0, 4.6  # seconds of the Paris reply heard


@dataclass(frozen=True)
class VoiceOptions:
    voice: str = "auto"  # "auto", "espeak" or "recorded"
    pause_on_speech_start: bool = False
    false_interruption_timeout: float = 2.0
    clear_delay: float = 0.15
    sink_grace: float = 2.0
    heard: Path | None = None
    heard_mic: bool = False
    timeout: float = 60.0  # a bound on the story (trio time); closing is bounded by the session


@dataclass
class Entry:
    t: float  # seconds since the start
    kind: str
    text: str


@dataclass
class VoiceDemo:
    """What happened, for the summary and the tests."""

    t0: float
    voices: str = ""
    timeline: list[Entry] = field(default_factory=list)
    speeches: dict[str, str] = field(default_factory=dict)  # speech id -> label
    # (label, resumed, provisional)
    false_interruptions: list[tuple[str, bool, bool]] = field(default_factory=list)
    vad_ends: list[tuple[float, float]] = field(default_factory=list)  # (t, voiced seconds) per end of speech
    interrupts: list[tuple[str, str | None]] = field(default_factory=list)  # (label, source)
    user_turns: list[str] = field(default_factory=list)
    history: list[tp.ChatItem] = field(default_factory=list)
    clips: list[Placed] = field(default_factory=list)
    records: list[tp.PlayoutRecord] = field(default_factory=list)
    labels: dict[int, str] = field(default_factory=dict)  # segment id -> label
    heard_file: Path | None = None
    heard_seconds: float = 0.0  # length of the file
    heard_agent_seconds: float = 0.0  # agent audio in it
    finished: bool = False  # the story reached the answer to the last turn

    def log(self, kind: str, text: str) -> None:
        t = trio.current_time() - self.t0
        self.timeline.append(Entry(t, kind, text))
        print(f"  {1000 * t:9.1f} ms  {text}", flush=True)

    def first(self, kind: str, after: float = -math.inf, contains: str = "") -> Entry | None:
        return next((e for e in self.timeline if e.kind == kind and e.t >= after and contains in e.text),
                    None)


class _LabelledTTS:
    """Passes synthesis through, noting what is being synthesized (to name sink segments)."""

    def __init__(self, inner: tp.TTS) -> None:
        self.inner = inner
        self.current = "speech"

    async def synthesize(self, text: str) -> AsyncIterator[tp.SynthesizedAudio]:
        self.current = LABELS.get(text.strip(), "a reply")
        async for chunk in self.inner.synthesize(text):
            yield chunk


class _LoggedVAD:
    """Passes the VAD's events through, logging its starts and ends as the model emits them
    (before the session acts on them, so the timeline's order is the real one)."""

    def __init__(self, inner: tp.VAD, demo: VoiceDemo) -> None:
        self.inner = inner
        self.demo = demo

    async def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        async with _aclosing(self.inner.stream(frames)) as events:
            async for ev in events:
                if ev.type is tp.VADEventType.START_OF_SPEECH:
                    self.demo.log("vad_start", f"VAD (Silero): start of speech (p={ev.probability:.2f})")
                elif ev.type is tp.VADEventType.END_OF_SPEECH:
                    self.demo.log("vad_end", f"VAD (Silero): end of speech ({ev.speech_duration:.2f} s of "
                                  f"voice, then {ev.silence_duration:.2f} s of silence)")
                    self.demo.vad_ends.append((self.demo.timeline[-1].t, ev.speech_duration))
                yield ev


class _DemoLLM:
    """Scripted: London for a turn that names it, else Paris (0.2 s to the first token)."""

    async def stream(self, request: tp.LLMRequest) -> AsyncIterator[tp.LLMChunk]:
        last = request.history[-1] if request.history else None
        london = isinstance(last, tp.ChatMessage) and "London" in last.text
        reply = LLMReply(REPLY_LONDON.text if london else REPLY_PARIS.text, ttft=0.2)
        async for chunk in ScriptedLLM([reply]).stream(request):
            yield chunk


def _noise(seconds: float = 0.2) -> tp.AudioFrame:
    """A burst of white noise (a chair scraping): loud, but not speech."""
    rng = np.random.default_rng(7)
    samples = (0.3 * rng.standard_normal(round(seconds * RATE))).clip(-1, 1)
    return tp.AudioFrame((samples * 32767).astype("<i2").tobytes(), RATE)


def pick_voices(kind: str) -> Voices:
    if kind == "espeak" or (kind == "auto" and espeak_available()):
        return espeak_voices()
    return recorded_voices()


async def _watch_events(demo: VoiceDemo, events: trio.MemoryReceiveChannel[tp.SessionEvent],
                        nursery: trio.Nursery, last_reply: trio.Event) -> None:
    async for ev in events:
        if isinstance(ev, tp.AgentStateChanged):
            demo.log("agent_state", f"agent: {ev.old} -> {ev.new}")
        elif isinstance(ev, tp.UserInputTranscribed):
            kind = "final" if ev.final else "interim"
            demo.log("stt_final" if ev.final else "stt_interim", f"STT (scripted), {kind}: {ev.text!r}")
        elif isinstance(ev, tp.FalseInterruption):
            label = demo.speeches.get(ev.speech.id, ev.speech.id)
            demo.false_interruptions.append((label, ev.resumed, ev.provisional))
            why = ("the voice stopped short of min_interruption_duration; " if ev.provisional
                   else "no words came; ")
            demo.log("false_interruption", f"FALSE INTERRUPTION{' (provisional)' if ev.provisional else ''}: "
                     f"{why}{label} {'resumes where it paused' if ev.resumed else 'could not resume'} "
                     f"(resumed={ev.resumed})")
        elif isinstance(ev, tp.UserTurnCompleted):
            demo.user_turns.append(ev.text)
            demo.log("user_turn", f"USER TURN: {ev.text!r}")
        elif isinstance(ev, tp.SpeechCreated):
            nursery.start_soon(_watch_speech, demo, ev.speech, len(demo.user_turns), last_reply)


async def _watch_speech(demo: VoiceDemo, speech: tp.SpeechHandle, turn: int, last_reply: trio.Event) -> None:
    label = "the London reply" if turn >= 2 else "the Paris reply"
    demo.speeches[speech.id] = label
    demo.log("speech", f"session: {label} scheduled (reply to user turn {turn})")
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            async def interrupted() -> None:
                await speech.wait_for_interrupt()
                demo.interrupts.append((label, speech.interrupt_source))
                demo.log("interrupt", f"{label} INTERRUPTED (source {speech.interrupt_source!r})")
            nursery.start_soon(interrupted)
            await speech.wait_for_playout()
            scope.cancel()
    heard = next((i.text for i in speech.chat_items
                  if isinstance(i, tp.ChatMessage) and i.role == "assistant"), "")
    how = "interrupted" if speech.interrupted else "played out"
    demo.log("done", f"{label} done ({how}); heard: {heard!r}")
    if turn >= 2:
        last_reply.set()


def _cues(voices: Voices, sink: HeardSink, t0: float) -> list[Cue]:
    def heard(at: float) -> Callable[[], bool]:
        def ready() -> bool:
            seconds, over = sink.heard(LABELS[REPLY_PARIS.text])
            return seconds >= at or over
        return ready

    return [
        Cue("user asks", voices.user[QUESTION.name], QUESTION.words,
            lambda: trio.current_time() >= t0 + 0.3, "at the start"),
        Cue("noise on the user's mic (0.2 s, a chair scraping)", _noise(), None, heard(NOISE_AT),
            f"{NOISE_AT:g} s into the reply"),
        Cue("user says 'hmm' (short, no words)", voices.user[HMM.name], HMM.words, heard(HMM_AT),
            f"{HMM_AT:g} s of the reply heard"),
        Cue("user says 'hmmm' (long, thinking aloud, no words)", voices.user[HUM.name], HUM.words,
            heard(HUM_AT), f"{HUM_AT:g} s of the reply heard"),
        Cue("user barges in", voices.user[BARGE_IN.name], BARGE_IN.words, heard(BARGE_IN_AT),
            f"{BARGE_IN_AT:g} s of the reply heard"),
    ]


async def run_voice_demo(options: VoiceOptions,
                         header: Callable[[str], None] = lambda kind: None) -> VoiceDemo:
    """Tell the story; returns what happened. Runs on trio's clock (MockClock in tests).

    ``header`` is called with the kind of voices ("espeak" or "recorded") before the
    clock starts.
    """
    from .silero import SileroVAD  # the vad extra; imported here so --help never needs it

    vad = SileroVAD()
    voices = pick_voices(options.voice)
    header(voices.kind)
    demo = VoiceDemo(trio.current_time(), voices.kind)
    tts = _LabelledTTS(voices.tts)
    sink = HeardSink(demo.log, lambda: tts.current, clear_delay=options.clear_delay)

    def on_clip(placed: Placed) -> None:
        demo.log("mic", f"mic: {placed.cue.label} ({placed.cue.audio.duration:.2f} s of audio"
                 f"{'' if placed.cue.words is None else ': ' + repr(placed.cue.words)}; "
                 f"cue: {'none came, said anyway' if placed.forced else placed.cue.why})")

    mic = UserMic(_cues(voices, sink, demo.t0), on_clip)
    turn = tp.TurnOptions(pause_on_speech_start=options.pause_on_speech_start,
                          false_interruption_timeout=options.false_interruption_timeout)
    last_reply = trio.Event()
    async with (
        tp.open_session(llm=_DemoLLM(), tts=tts, output=sink, audio_input=mic, vad=_LoggedVAD(vad, demo),
                        stt=ClipSTT(mic), turn=turn, sink_grace=options.sink_grace) as session,
        session.subscribe(buffer=1024) as events,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(_watch_events, demo, events, nursery, last_reply)
        with trio.move_on_after(options.timeout):
            await last_reply.wait()
            demo.finished = True
        if not demo.finished:
            stuck = session.speeches
            demo.log("bound", f"the story did not finish within {options.timeout:g} s"
                     + (f"; {len(stuck)} speech(es) still wait for the sink to confirm a clear "
                        f"(sink_grace={options.sink_grace:g} s): closing the session waits for that too"
                        if stuck else ""))
        nursery.cancel_scope.cancel()
    demo.history = list(session.history)
    demo.clips = list(mic.placed)
    demo.records = list(sink.records)
    demo.labels = dict(sink.labels)
    if options.heard is not None:
        mic_audio = [(p.start, p.cue.audio) for p in mic.placed] if options.heard_mic else []
        heard = heard_audio(sink, demo.t0, mic=mic_audio)
        write_wav(options.heard, heard.frame)
        demo.heard_file = options.heard
        demo.heard_seconds = heard.frame.duration
        demo.heard_agent_seconds = heard.agent_seconds
    return demo


# -- what is printed around the timeline -----------------------------------------------------
def setup_lines(kind: str, options: VoiceOptions) -> list[str]:
    if kind == "espeak":
        agent = "espeak-ng, live (trio_playout.espeak.EspeakTTS, word timings from the engine)"
        user = "espeak-ng speech rendered at start, played into the microphone on cue"
    else:
        agent = ("recorded: WAV files shipped in trio_playout/data (made with espeak-ng), "
                 "with their word timings")
        user = "recorded clips from trio_playout/data, played into the microphone on cue"
    pause = ("at the VAD's start of speech (--pause-on-speech-start), resumes as soon as the voice stops "
             "short of 0.5 s" if options.pause_on_speech_start
             else "once the user has spoken min_interruption_duration (0.5 s of voice)")
    return [
        f"  agent's voice:  {agent}",
        f"  user's mic:     {user}, 20 ms frames paced on trio's clock",
        "  VAD:            the real Silero model (onnxruntime), listening to the mic's audio",
        "  STT:            SCRIPTED: it is told the words of each clip and reports them 0.25 s after",
        "                  the clip ends (no real speech-to-text in this demo)",
        "  LLM:            scripted, 0.2 s to the first token",
        f"  barge-in:       the sink pauses {pause}; false_interruption_timeout="
        f"{options.false_interruption_timeout:g} s; sink clear_delay={options.clear_delay:g} s",
    ]


def _ms(t: float | None) -> str:
    return "never" if t is None else f"{1000 * t:.0f} ms"


def summary_lines(demo: VoiceDemo) -> list[str]:
    """The timeline's facts, clip by clip (only what really happened is claimed)."""
    out: list[str] = []
    clips = {p.cue.label.split(" (")[0]: p for p in demo.clips}
    noise = clips.get("noise on the user's mic")
    if noise is not None:
        s = noise.start - demo.t0
        heard = demo.first("vad_start", s)
        quiet = heard is None or heard.t > s + noise.cue.audio.duration + 0.6
        out.append(f"  the noise at {_ms(s)}: " + (
            "the VAD heard no speech in it; nothing paused" if quiet else
            f"the VAD took it for speech at {_ms(heard.t if heard else None)}"))
    starts = sorted(p.start - demo.t0 for p in demo.clips)
    for name, what in (("user says 'hmm'", "the 'hmm'"), ("user says 'hmmm'", "the 'hmmm'"),
                       ("user barges in", "the barge-in")):
        placed = clips.get(name)
        if placed is None:
            continue
        s = placed.start - demo.t0
        until = next((t for t in starts if t > s), math.inf)  # the next clip

        def within(kind: str, s: float = s, until: float = until) -> Entry | None:
            found = demo.first(kind, s)
            return found if found is not None and found.t < until else None

        vad, pause = within("vad_start"), within("pause")
        line = f"  {what} at {_ms(s)}: VAD start at {_ms(vad.t if vad else None)}"
        if pause is not None:
            line += f", sink paused at {_ms(pause.t)} ({1000 * (pause.t - s):.0f} ms after the sound began)"
        out.append(line)
        if name != "user barges in":
            voiced = next((v for t, v in demo.vad_ends if s <= t < until), None)
            if voiced is not None:
                out.append(f"      {voiced:.2f} s of voice by the VAD" + (
                    f", under min_interruption_duration ({MIN_INTERRUPTION:g} s): nothing paused"
                    if pause is None and voiced < MIN_INTERRUPTION else ""))
            fi, end = within("false_interruption"), within("vad_end")
            if fi is not None and pause is not None and "(provisional)" in fi.text:
                out.append(f"      {fi.text.split(': ', 1)[1]} at {_ms(fi.t)}: paused "
                           f"{fi.t - pause.t:.2f} s in all")
            elif fi is not None and end is not None:
                out.append(f"      {fi.text.split(': ', 1)[1]} at {_ms(fi.t)}, "
                           f"{fi.t - end.t:.2f} s after the user stopped speaking")
        else:
            flips = [e for e in demo.timeline if e.kind == "false_interruption" and s <= e.t < until]
            again = [e for e in demo.timeline if e.kind == "pause" and s <= e.t < until][1:]
            if flips and again:
                out.append("      the voice stopped between words before it was a barge-in: resumed at "
                           f"{', '.join(_ms(e.t) for e in flips)} (provisional), paused again at "
                           f"{', '.join(_ms(e.t) for e in again)}")
            words, cut = demo.first("stt_final", s), demo.first("interrupt", s)
            if cut is not None:
                kept = [i.text for i in demo.history if isinstance(i, tp.ChatMessage) and i.interrupted]
                out.append(f"      the STT's final words at {_ms(words.t if words else None)}; at "
                           f"{_ms(cut.t)} {cut.text.replace(' INTERRUPTED', ' is interrupted')}")
                if kept:
                    out.append(f"      its heard text ends where it paused: '...{kept[0][-40:]}'")
    for label in ("the Paris reply",):
        rec = next((r for r in demo.records if demo.labels.get(r.segment_id) == label), None)
        if rec is not None and rec.position is not None and rec.stopped_at is not None:
            paused = sum((b if b is not None else rec.stopped_at) - a for a, b in rec.pauses)
            span = rec.stopped_at - rec.started_at
            out.append(f"  {label}: {rec.position:.2f} s of audio heard in {span:.2f} s, "
                       f"{paused:.2f} s of it paused: nothing skipped, nothing replayed"
                       if abs(span - paused - rec.position) < 0.03 else
                       f"  {label}: {rec.position:.2f} s of audio heard in {span:.2f} s, "
                       f"{paused:.2f} s paused")
    turns = [e for e in demo.timeline if e.kind == "user_turn"]
    firsts = [e for e in demo.timeline if e.kind == "first_frame"]
    for i, turn in enumerate(turns, 1):
        first = next((f for f in firsts if f.t >= turn.t), None)
        out.append(f"  user turn {i} at {_ms(turn.t)}; " + (
            f"{first.text.removeprefix('sink: first frame of ')}'s first frame at {_ms(first.t)} "
            f"({1000 * (first.t - turn.t):.0f} ms later)" if first else "no reply audio followed"))
    return out


def describe(item: tp.ChatItem) -> str:
    if isinstance(item, tp.ChatMessage):
        return f"{item.role:9} {item.text!r}" + ("  (interrupted)" if item.interrupted else "")
    return repr(item)


async def voice_main(options: VoiceOptions) -> VoiceDemo:
    """Print the set-up, tell the story with its timeline, then the summary and the history."""
    print("trio-playout demo: the user's voice (barge-in, false interruption, user turns), "
          "in real time\n")
    demo = await run_voice_demo(options, header=lambda kind: print("\n".join(
        [*setup_lines(kind, options), "", "timeline (ms since the start, trio's clock):"])))
    print("\nwhat the timeline shows:")
    print("\n".join(summary_lines(demo)))
    if not demo.finished:
        print("  (the story did not reach the answer to the second turn within the time bound)")
    print("\nhistory (assistant text is what was heard):")
    for item in demo.history:
        print(f"  {describe(item)}")
    if demo.heard_file is not None:
        print(f"\nwrote {demo.heard_file}: {demo.heard_seconds:.2f} s at {RATE} Hz mono, what the user "
              f"heard ({demo.heard_agent_seconds:.2f} s of agent audio, pauses as silence, cut where it "
              "stopped" + (", mixed with the user's mic)" if options.heard_mic else ")"))
    return demo
