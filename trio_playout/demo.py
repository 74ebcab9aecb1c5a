"""The #5359 tool-preamble barge-in, in real time: ``python -m trio_playout.demo``.

The agent says a preamble and calls a tool that waits for the preamble to finish;
the user barges in halfway. The timeline shows the tool getting the interrupt once,
the sink confirming the stop, ``wait_for_playout()`` returning right after it, and
the history that was kept. In livekit-agents this wait can stall 5 s.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import AsyncIterator

import trio

import trio_playout as tp
from trio_playout.testing import FakeTTS, LLMReply, ScriptedLLM, ToolCall

PREAMBLE = "Sure, let me look up the weather in Paris for you, one moment please."


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
    def __init__(self) -> None:
        self.t0 = trio.current_time()

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


async def run_demo(barge_in_after: float, clear_delay: float, sink_grace: float) -> None:
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
        await trio.sleep(barge_in_after)
        log("user barges in: handle.interrupt(source='audio_activity')")
        t_interrupt = trio.current_time()
        handle.interrupt(source="audio_activity")
        await handle.wait_for_playout()
        t_return = trio.current_time()
        log(f"wait_for_playout() returned ({1000 * (t_return - t_interrupt):.3f} ms after the interrupt)")
        rec = sink.records[0]
        if rec.confirmed and rec.stopped_at is not None:
            log(f"  the sink had confirmed the stop {1000 * (t_return - rec.stopped_at):.3f} ms before "
                f"that; {rec.position:.2f} s of audio were heard")
        elif handle.sink_timed_out:
            log(f"  the sink never confirmed; gave up after sink_grace={sink_grace} s "
                "(handle.sink_timed_out is True)")
        follow_up = "Actually, what about London?"
        log(f"user: {follow_up!r}")
        second = session.generate_reply(user_input=follow_up)
        await second.wait_for_playout()
        log("second reply played out")

        print("\nhistory:")
        for item in session.history:
            print(f"  {describe(item)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trio_playout.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--barge-in-after", type=float, default=1.2, metavar="S",
                        help="seconds into the preamble when the user barges in (default 1.2)")
    parser.add_argument("--clear-delay", type=float, default=0.15, metavar="S",
                        help="how long the sink takes to confirm a clear; 'inf' never confirms "
                             "(default 0.15, an avatar)")
    parser.add_argument("--sink-grace", type=float, default=2.0, metavar="S",
                        help="how long the session waits for that confirmation (default 2.0)")
    args = parser.parse_args(argv)
    if args.barge_in_after < 0 or args.clear_delay < 0 or not 0 <= args.sink_grace < math.inf:
        parser.error("times must be >= 0 (and sink_grace finite)")
    print("trio-playout demo: the #5359 tool-preamble barge-in, in real time\n")
    trio.run(run_demo, args.barge_in_after, args.clear_delay, args.sink_grace)
    return 0


if __name__ == "__main__":
    sys.exit(main())
