"""The trio-playout demo: a user barges in on a voice agent, in real time.

Run ``python -m trio_playout.demo`` (the voice scenario, about 18 s). The user asks a
question by voice; the agent replies. A noise on the user's microphone is not speech
and changes nothing; a short "hmm" (0.3 s of voice) is shorter than
``min_interruption_duration`` and changes nothing either. A long thinking "hmmm"
(0.9 s) pauses the agent; no words follow, so the reply resumes where it paused,
without skipping a word (a false interruption). "Wait, what about London?" pauses it
again; the words confirm the barge-in, the reply ends where it stopped, and the
user's turn gets one answer. With ``--pause-on-speech-start`` every sound the VAD
takes for speech pauses the agent at once, and the short "hmm" resumes it about
0.3 s later, as soon as the voice stops. The real Silero VAD listens to the
microphone; the speech-to-text is scripted. The timeline says when each thing
happened, and ``--heard out.wav`` writes what the user heard.

``--scenario tools``: the tool-preamble barge-in of livekit/agents issue #5359. The
agent says a preamble and calls a tool that waits for the preamble to finish; the
user barges in. The timeline shows the tool getting the interrupt once, the sink
confirming the stop, ``wait_for_playout()`` returning right after it, and the history
that was kept. In livekit-agents this wait can stall 5 s
(https://github.com/livekit/agents/issues/5359). The barge-in can land anywhere:
before the first word, in the preamble, while the tool runs, in the answer, or after
the reply is over; the timeline says which.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import trio

import trio_playout as tp
from trio_playout.testing import FakeTTS, LLMReply, ScriptedLLM, ToolCall

PREAMBLE = "Sure, let me look up the weather in Paris for you, one moment please."
ISSUE_URL = "https://github.com/livekit/agents/issues/5359"


class DemoLLM:
    """Answers from the conversation: a preamble and a tool call, the tool's result, London."""

    async def stream(self, request: tp.LLMRequest) -> AsyncIterator[tp.LLMChunk]:
        await trio.sleep(0.05)  # time to first token
        last = request.history[-1] if request.history else None
        if isinstance(last, tp.FunctionCallOutput):
            reply = LLMReply(f"Right now it is {last.output}.")
        elif isinstance(last, tp.ChatMessage) and "London" in last.text:
            reply = LLMReply("London is cloudy today.")
        else:
            reply = LLMReply(PREAMBLE, [ToolCall("get_weather", {"city": "Paris"})])
        async for chunk in ScriptedLLM([reply]).stream(request):
            yield chunk


class Timeline:
    """Prints events with the time since the demo started (trio's clock)."""

    def __init__(self) -> None:
        self.t0 = trio.current_time()

    def ms(self, t: float) -> str:
        return f"{1000 * (t - self.t0):.3f} ms"

    def __call__(self, what: str) -> None:
        print(f"  {1000 * (trio.current_time() - self.t0):9.3f} ms  {what}", flush=True)


def describe(item: tp.ChatItem) -> str:
    if isinstance(item, tp.ChatMessage):
        flag = "  (interrupted)" if item.interrupted else ""
        return f"{item.role:9} {item.text!r}{flag}"
    if isinstance(item, tp.FunctionCall):
        return f"call      {item.name}({item.arguments})  [{item.call_id}]"
    kind = "interrupted" if item.interrupted else "error" if item.is_error else "result"
    return f"output    {item.output!r}  [{item.call_id}, {kind}]"


def _explain_stop(log: Timeline, sink: tp.RealtimeAudioSink, handle: tp.SpeechHandle,
                  t_interrupt: float, t_return: float, sink_grace: float) -> None:
    """Say what happened to the audio that was playing when the user barged in.

    Only the segments the interrupt's clear reached count: the barge-in may land
    before any audio, between two segments (while the tool runs), or in the
    answer after the tool, so the first record is not necessarily the one stopped.
    """
    hit = [r for r in sink.records
           if r.clear_requested_at is not None and r.clear_requested_at >= t_interrupt]
    names = dict(zip((r.segment_id for r in sink.records), ("the preamble", "the answer"), strict=False))
    if not hit:
        log("  no audio was playing at that moment, so there was nothing for the sink to stop")
    for rec in hit:
        what = names.get(rec.segment_id, f"segment {rec.segment_id}")
        if rec.confirmed and rec.stopped_at is not None:
            log(f"  the sink confirmed the stop of {what} {1000 * (t_return - rec.stopped_at):.3f} ms "
                f"before that; {rec.position or 0.0:.2f} s of it were heard")
        elif rec.stopped_at is not None and rec.stopped_at <= t_return:
            log(f"  the sink never confirmed the stop of {what}, but its buffered audio had run out "
                f"at {log.ms(rec.stopped_at)}; {rec.position or 0.0:.2f} s of it were heard")
        else:
            log(f"  {what} is STILL PLAYING: the wait ended before its audio actually stopped")
    if handle.sink_timed_out:
        log(f"  the sink did not confirm within sink_grace={sink_grace:g} s; the session finished "
            "the speech without it (handle.sink_timed_out is True)")


async def run_demo(barge_in_after: float, clear_delay: float, sink_grace: float) -> None:
    """The demo itself; it runs on trio's clock, so tests can run it under a MockClock."""
    log = Timeline()

    @tp.function_tool
    async def get_weather(ctx: tp.RunContext, city: str) -> str:
        """Get the current weather for a city.

        Args:
            city: the city name
        """
        log(f"tool get_weather({city!r}) started; it waits for the preamble to finish")
        try:
            await ctx.wait_for_playout()
            log("tool: preamble finished, calling the weather service")
            await trio.sleep(1.0)
            log("tool: the weather service answered")
            return f"sunny, 21 C in {city}"
        except trio.Cancelled as exc:
            log(f"tool got the interrupt once: {getattr(exc, 'reason', None) or exc}")
            raise

    llm = DemoLLM()
    sink = tp.RealtimeAudioSink(clear_delay=clear_delay)
    async with tp.open_session(llm=llm, tts=FakeTTS(words_per_second=4.0), output=sink,
                               tools=[get_weather], sink_grace=sink_grace) as session:
        question = "What's the weather in Paris?"
        log(f"user: {question!r}")
        handle = session.generate_reply(user_input=question)
        with trio.move_on_after(barge_in_after):
            await handle.wait_for_playout()  # cancelling this waiter changes nothing
        if handle.done():
            log(f"the reply had already played out; the barge-in at {1000 * barge_in_after:.3f} ms "
                "has nothing to interrupt")
        else:
            log("user barges in: handle.interrupt(source='audio_activity')")
            t_interrupt = trio.current_time()
            handle.interrupt(source="audio_activity")
            await handle.wait_for_playout()
            t_return = trio.current_time()
            log(f"wait_for_playout() returned ({1000 * (t_return - t_interrupt):.3f} ms "
                "after the interrupt)")
            _explain_stop(log, sink, handle, t_interrupt, t_return, sink_grace)
        follow_up = "Actually, what about London?"
        log(f"user: {follow_up!r}")
        second = session.generate_reply(user_input=follow_up)
        await second.wait_for_playout()
        log("second reply played out")

        print("\nhistory:")
        for item in session.history:
            print(f"  {describe(item)}")


def _seconds(*, allow_inf: bool) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if math.isnan(value) or value < 0 or (math.isinf(value) and not allow_inf):
            need = ">= 0, or 'inf'" if allow_inf else "finite and >= 0"
            raise argparse.ArgumentTypeError(f"must be {need}, got {text!r}")
        return value

    return parse


def _heard_path(text: str) -> Path:
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is a directory; give a file name such as heard.wav")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write {text!r}: {folder} is not a writable directory")
    return path


VOICE_ONLY = ("voice", "pause_on_speech_start", "false_interruption_timeout", "heard", "heard_mic")
TOOLS_ONLY = ("barge_in_after",)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m trio_playout.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=("voice", "tools"), default="voice",
                        help="voice: the user barges in by voice (default); tools: the tool-preamble "
                             "barge-in of issue #5359")
    both = parser.add_argument_group("both scenarios")
    both.add_argument("--clear-delay", type=_seconds(allow_inf=True), default=0.15, metavar="S",
                      help="how long the sink takes to confirm a clear; 0 = at once, "
                           "'inf' = never (a deaf sink) (default 0.15, an avatar)")
    both.add_argument("--sink-grace", type=_seconds(allow_inf=False), default=2.0, metavar="S",
                      help="how long the session waits for that confirmation, finite, 0 = "
                           "not at all (default 2.0)")
    voice = parser.add_argument_group("voice scenario")
    voice.add_argument("--voice", choices=("auto", "espeak", "recorded"), default=None,
                       help="the voices: espeak = live espeak-ng (the espeak extra, GPL-3.0); recorded "
                            "= the WAV files shipped with the package; auto = espeak when installed "
                            "(default)")
    voice.add_argument("--pause-on-speech-start", action="store_true", default=None,
                       help="pause the agent at the VAD's start of speech already, not after "
                            "0.5 s of the user's speech, and resume at once when the voice stops "
                            "short of that (TurnOptions(pause_on_speech_start=True))")
    voice.add_argument("--false-interruption-timeout", type=_seconds(allow_inf=False), default=None,
                       metavar="S", help="seconds of silence without words after the user's speech "
                                         "before a paused reply resumes (default 2.0, livekit's)")
    voice.add_argument("--heard", type=_heard_path, default=None, metavar="FILE.wav",
                       help="write what the user heard: the agent's audio as played, pauses as "
                            "silence, cut where it stopped (16 kHz mono WAV)")
    voice.add_argument("--heard-mic", action="store_true", default=None,
                       help="with --heard: mix the user's microphone into the file")
    tools = parser.add_argument_group("tools scenario")
    tools.add_argument("--barge-in-after", type=_seconds(allow_inf=False), default=None, metavar="S",
                       help="seconds after the user's question when the user barges in; 0 = before "
                            "the first word, about 4 = while the tool runs, 5 = in the answer, "
                            "8 or more = after the reply (default 1.2, in the preamble)")
    args = parser.parse_args(argv)
    wrong = TOOLS_ONLY if args.scenario == "voice" else VOICE_ONLY
    for name in wrong:
        if getattr(args, name) is not None:
            flag = "--" + name.replace("_", "-")
            parser.error(f"{flag} belongs to the {'tools' if args.scenario == 'voice' else 'voice'} "
                         f"scenario, not to --scenario {args.scenario}")
    if args.heard_mic and args.heard is None:
        parser.error("--heard-mic needs --heard FILE.wav")
    if args.voice == "espeak":
        from ._demo_data import espeak_available

        if not espeak_available():
            parser.error("--voice espeak needs espeak-ng: pip install 'trio-playout[espeak]' "
                         "(GPL-3.0), or use --voice recorded")
    return args


def _voice_options(args: argparse.Namespace) -> Any:
    from ._demo_voice import VoiceOptions

    return VoiceOptions(
        voice=args.voice or "auto",
        pause_on_speech_start=bool(args.pause_on_speech_start),
        false_interruption_timeout=2.0 if args.false_interruption_timeout is None
        else args.false_interruption_timeout,
        clear_delay=args.clear_delay, sink_grace=args.sink_grace,
        heard=args.heard, heard_mic=bool(args.heard_mic))


def _vad_missing() -> str | None:
    """Why the voice scenario cannot run here (the vad extra is missing), or None."""
    try:
        from .silero import find_model

        find_model()
    except (ImportError, tp.ModelNotFoundError) as exc:
        return str(exc)
    return None


def main(argv: Sequence[str] | None = None, *, clock: trio.abc.Clock | None = None) -> int:
    """Parse ``argv`` and run the demo; ``clock`` lets tests run it in virtual time."""
    args = parse_args(argv)
    if args.scenario == "tools":
        print(f"trio-playout demo: the tool-preamble barge-in of {ISSUE_URL}, in real time\n")
        barge = 1.2 if args.barge_in_after is None else args.barge_in_after
        trio.run(run_demo, barge, args.clear_delay, args.sink_grace, clock=clock)
        return 0
    why = _vad_missing()
    if why is not None:
        print(f"the voice demo needs the Silero VAD: {why}\n"
              "install it with: python -m pip install -e '.[demo]'\n"
              "(python -m trio_playout.demo --scenario tools runs without it)", file=sys.stderr)
        return 2
    from ._demo_voice import voice_main

    trio.run(voice_main, _voice_options(args), clock=clock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
