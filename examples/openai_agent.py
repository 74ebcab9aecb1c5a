"""A trio-native voice agent on any OpenAI-compatible endpoint, with a tool.

    pip install 'trio-playout[openai]'
    export OPENAI_API_KEY=...                      # the hosted API, or a local server:
    export OPENAI_BASE_URL=http://localhost:8000/v1  # vLLM, Ollama, llama.cpp's server...
    python examples/openai_agent.py --model gpt-4o-mini          # type your turns (empty line: quit)
    python examples/openai_agent.py --wav question.wav           # or speak one (16-bit WAV)

``OpenAILLM`` streams the replies (and calls ``get_weather``), ``OpenAITTS`` speaks
them as PCM into a :class:`~trio_playout.RealtimeAudioSink` (real time, no sound card)
and, with ``--wav``, ``OpenAISTT`` transcribes the user's utterance. What the user
heard is printed as it lands in the history.
"""

from __future__ import annotations

import argparse
import os
import sys
import wave

import trio

import trio_playout as tp
from trio_playout.openai import OpenAILLM, OpenAISTT, OpenAITTS
from trio_playout.testing import PacedAudio


@tp.function_tool
async def get_weather(city: str) -> str:
    """The current weather in a city.

    Args:
        city: the city's name
    """
    await trio.sleep(0.1)  # your lookup here: cancelled at once if the user barges in
    return f"It is sunny and 21 degrees in {city}."


async def main(args: argparse.Namespace) -> None:
    llm = OpenAILLM(args.model, instructions="You are a brief, friendly voice assistant.")
    tts = OpenAITTS(args.tts_model, args.voice)  # base_url and key: OPENAI_BASE_URL, OPENAI_API_KEY
    stt = OpenAISTT(args.stt_model)
    mic = microphone(args.wav) if args.wav else None  # the user's audio, or None: typed turns
    async with llm, tts, stt, tp.open_session(
        llm=llm, tts=tts, output=tp.RealtimeAudioSink(), tools=[get_weather],
        audio_input=mic, stt=stt if mic else None,
    ) as session:
        shown = 0
        while True:
            if mic is None:  # a typed turn
                line = await trio.to_thread.run_sync(sys.stdin.readline)
                if not line.strip():
                    break
                reply = session.generate_reply(user_input=line.strip())
            else:  # a spoken turn: the STT's transcript completes it and the session replies
                async with session.subscribe() as events:
                    reply = await anext_reply(events)
            await reply  # done: played out (or interrupted), with every tool call finished
            for item in session.history[shown:]:
                print(show(item), flush=True)
            shown = len(session.history)
            if mic is not None:
                break


# -- helpers ----------------------------------------------------------------------------------------
async def anext_reply(events: trio.MemoryReceiveChannel[tp.SessionEvent]) -> tp.SpeechHandle:
    async for event in events:
        if isinstance(event, tp.SpeechCreated):
            return event.speech
    raise RuntimeError("the session closed before it replied")


def microphone(path: str) -> PacedAudio:
    with wave.open(path) as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is supported")
        clip = tp.AudioFrame(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())
    return PacedAudio([(0.5, clip)])  # played in real time, then silence: a live microphone


def show(item: tp.ChatItem) -> str:
    if isinstance(item, tp.ChatMessage):
        return f"{item.role}: {item.text}" + (" (interrupted)" if item.interrupted else "")
    if isinstance(item, tp.FunctionCall):
        return f"tool call: {item.name}({item.arguments})"
    return f"tool output: {item.output}" + (" (error)" if item.is_error else "")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--tts-model", default="gpt-4o-mini-tts")
    parser.add_argument("--voice", default="alloy")
    parser.add_argument("--stt-model", default="whisper-1")
    parser.add_argument("--wav", help="a WAV file to play into the agent's microphone")
    parser.add_argument("--timeout", type=float, default=120.0, help="a bound on the whole run")
    cli = parser.parse_args()

    async def bounded() -> None:
        with trio.fail_after(cli.timeout):
            await main(cli)

    trio.run(bounded)
