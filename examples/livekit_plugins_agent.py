"""A trio-native voice agent whose models are livekit plugins, through the bridge.

The session, its tools and its cancellation are trio_playout's (trio); the LLM, the
TTS, the STT and the VAD are livekit's own plugins (asyncio), adapted with
``bridge.llm/tts/stt/vad`` and run on the bridge's trio-asyncio loop::

    pip install 'trio-playout[bridge,vad]' livekit-plugins-openai
    export OPENAI_API_KEY=...            # or OPENAI_BASE_URL=http://localhost:8000/v1
    python examples/livekit_plugins_agent.py                   # type your turns
    python examples/livekit_plugins_agent.py --wav question.wav  # or speak them (16-bit WAV)

Any OpenAI-compatible server works (vLLM, Ollama, llama.cpp's server): the plugin
reads ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``. The agent's audio goes to a
:class:`~trio_playout.RealtimeAudioSink`, which plays it in real time without a sound
card; what was heard is printed as it lands in the history.
"""

from __future__ import annotations

import argparse
import os
import wave

import trio

import bridge
import trio_playout as tp
from trio_playout.testing import PacedAudio


@tp.function_tool
async def get_time(city: str) -> str:
    """The current time in a city.

    Args:
        city: the city's name
    """
    await trio.sleep(0.2)  # a trio tool: cancelled at once if the user barges in
    return f"It is 9:41 in {city}."


def _microphone(path: str) -> PacedAudio:
    with wave.open(path) as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: only 16-bit PCM WAV is supported")
        frame = tp.AudioFrame(w.readframes(w.getnframes()), w.getframerate(), w.getnchannels())
    return PacedAudio([(0.5, frame)], duration=frame.duration + 3.0)  # a microphone, in real time


async def main(args: argparse.Namespace) -> None:
    from livekit.plugins import openai, silero

    vad = silero.VAD.load()
    voice: dict[str, object] = {}
    if args.wav:
        voice = {"audio_input": _microphone(args.wav), "vad": bridge.vad(vad),
                 "stt": bridge.stt(openai.STT(model=args.stt_model), vad=vad)}
    async with tp.open_session(
        llm=bridge.llm(openai.LLM(model=args.model), instructions="You are a brief, friendly agent."),
        tts=bridge.tts(openai.TTS(model=args.tts_model, voice="alloy", response_format="pcm")),
        output=tp.RealtimeAudioSink(), tools=[get_time], **voice,  # type: ignore[arg-type]
    ) as session:
        shown = 0

        def show() -> None:
            nonlocal shown
            for item in list(session.history)[shown:]:
                print(f"  {item}")
            shown = len(session.history)

        if args.wav:
            async with session.subscribe() as events:
                async for event in events:
                    if isinstance(event, tp.SpeechCreated):  # the reply to the spoken turn
                        await event.speech
                        break
            show()
            return
        while True:
            line = await trio.to_thread.run_sync(input, "you> ")
            if not line.strip():
                return
            reply = session.generate_reply(user_input=line)
            await reply
            if reply.exception() is not None:
                print(f"  (the reply failed: {reply.exception()!r})")
            show()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    parser.add_argument("--tts-model", default="tts-1")
    parser.add_argument("--stt-model", default="whisper-1")
    parser.add_argument("--wav", help="a WAV file to play into the agent's microphone")
    bridge.run(main, parser.parse_args())
