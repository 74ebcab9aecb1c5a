"""An offline voice agent: Silero VAD, PocketSphinx STT, RuleLLM and espeak-ng, no network.

    pip install 'trio-playout[vad,sphinx,espeak]'
    python examples/offline_agent.py                        # a generated question as the microphone
    python examples/offline_agent.py --say "Hello there."   # another one
    python examples/offline_agent.py --wav question.wav     # or your own recording (16-bit WAV)

It runs on a headless machine: the user's microphone is a clip (espeak-ng speech of
``--say``, with a quiet noise floor like a real microphone's, or ``--wav``) played
into the session in real time, then silence. PocketSphinx transcribes what it hears
(it is a weak recognizer and hears synthetic speech worse: what it heard is printed),
the user's turn goes to :class:`~trio_playout.offline.RuleLLM`, which answers by rules
("what time is it?" calls the ``get_time`` tool), and the reply is spoken by espeak-ng
into a :class:`~trio_playout.RealtimeAudioSink` (real time, no sound card). The events,
what was heard and the history are printed; ``--json`` adds them as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import wave

import trio

import trio_playout as tp
from trio_playout.offline import OfflineAgent, RuleLLM, offline_agent
from trio_playout.testing import PacedAudio

LEAD = 0.5  # seconds of silence before the clip


def spoken(text: str) -> tp.AudioFrame:
    """``text`` said by espeak-ng at 16 kHz, with a -50 dBFS noise floor: PocketSphinx was
    trained on real recordings and hears twice as many words right with one."""
    import numpy as np

    from trio_playout.espeak import EspeakTTS

    speech = EspeakTTS("en-us", 150).render_sync(text, sample_rate=16000)
    x = np.frombuffer(speech.data, "<i2").astype(np.float64)
    x = np.concatenate([x, np.zeros(8000)]) + np.random.default_rng(0).normal(0.0, 100.0, len(x) + 8000)
    return tp.AudioFrame(np.clip(x, -32768, 32767).astype("<i2").tobytes(), 16000)


def recorded(path: str) -> tp.AudioFrame:
    with wave.open(path) as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is supported")
        return tp.AudioFrame(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())


def describe(item: tp.ChatItem) -> str:
    if isinstance(item, tp.ChatMessage):
        return f"{item.role:9}  {item.text!r}" + ("  (interrupted)" if item.interrupted else "")
    if isinstance(item, tp.FunctionCall):
        return f"{'call':9}  {item.name}({item.arguments})"
    return f"{'output':9}  {item.output!r}" + ("  (error)" if item.is_error else "")


async def converse(agent: OfflineAgent, clip: tp.AudioFrame, tail: float) -> dict[str, object]:
    """Play ``clip`` into the agent's microphone and print what happens until the replies
    are done and ``tail`` seconds of silence have passed."""
    mic = PacedAudio([(LEAD, clip)])  # then silence, like a live microphone
    heard: list[str] = []
    t0 = trio.current_time()

    def log(text: str) -> None:
        print(f"  {trio.current_time() - t0:6.2f} s  {text}", flush=True)

    async with agent.open_session(output=tp.RealtimeAudioSink(), audio_input=mic) as session, \
            session.subscribe() as events, trio.open_nursery() as nursery:
        async def watch() -> None:
            async for event in events:
                if isinstance(event, tp.UserStateChanged):
                    log(f"user: {event.new}")
                elif isinstance(event, tp.AgentStateChanged):
                    log(f"agent: {event.new}")
                elif isinstance(event, tp.UserInputTranscribed) and event.final:
                    heard.append(event.text)
                    log(f"PocketSphinx heard: {event.text!r}")
                elif isinstance(event, tp.UserTurnCompleted):
                    log(f"user turn: {event.text!r}")
                elif isinstance(event, tp.FalseInterruption):
                    log(f"false interruption (resumed={event.resumed})")

        nursery.start_soon(watch)
        end = t0 + LEAD + clip.duration + tail
        # No single event says "the conversation is over": poll until the clip and the tail
        # have played and nobody is speaking or about to answer.
        while (trio.current_time() < end or session.speeches or session.user_state == "speaking"  # noqa: ASYNC110
               or session.agent_state == "thinking"):
            await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
        history = list(session.history)
    print("\nhistory (assistant text is what was heard):")
    for item in history:
        print(f"  {describe(item)}")
    rules = agent.llm.rules if isinstance(agent.llm, RuleLLM) else []
    print(f"RuleLLM's rules: {', '.join(rules) or 'none (no user turn was heard)'}")
    return {"heard": heard, "rules": rules, "history": [
        {"type": type(i).__name__, **{k: v for k, v in vars(i).items()}} for i in history]}


async def main(args: argparse.Namespace) -> None:
    clip = recorded(args.wav) if args.wav else spoken(args.say)
    agent = offline_agent()  # MissingExtraError names any extra that is missing
    source = f"the WAV file {args.wav}" if args.wav else f"espeak-ng saying {args.say!r}"
    print(f"offline agent: Silero VAD, PocketSphinx STT, RuleLLM, espeak-ng TTS; tools: "
          f"{', '.join(t.name for t in agent.tools)}\nmicrophone: {source} ({clip.duration:.1f} s) "
          f"at {LEAD} s, then silence\n")
    with trio.move_on_after(args.timeout) as bound:
        result = await converse(agent, clip, args.tail)
    if bound.cancelled_caught:
        raise SystemExit(f"the conversation did not end within {args.timeout} s")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--say", default="What is the time?", help="what the user says (espeak-ng)")
    parser.add_argument("--wav", help="a WAV file to play into the microphone instead")
    parser.add_argument("--tail", type=float, default=3.0, help="seconds of silence to listen after the clip")
    parser.add_argument("--timeout", type=float, default=60.0, help="a bound on the whole conversation")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line at the end")
    trio.run(main, parser.parse_args())
