"""An ordinary asyncio livekit program with a bridged trio tool (run as a subprocess).

It creates its loop the way livekit's CLI and job processes do
(``asyncio.new_event_loop()`` + ``run_until_complete``). Argument ``install``: call
``bridge.install()`` first (the documented way); ``late``: create the loop before the
bridge is imported (not supported: the tool reports ``NotInstalledError``); ``auto``: no explicit call,
defining a bridged tool installs the bridge (the tool runs to completion here).
Optional second argument, how the loop is run: ``ruc`` (default, as above), ``run``
(``asyncio.run``) or ``runner`` (``asyncio.Runner``, Python 3.11+), which create the
loop themselves and run the main task in a context of their own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sys

MODE = sys.argv[1]
RUNNER = sys.argv[2] if len(sys.argv) > 2 else "ruc"
if MODE == "late":
    early_loop = asyncio.new_event_loop()  # a plain asyncio loop, before the bridge

import trio  # noqa: E402
from livekit.agents import Agent, AgentSession  # noqa: E402

import bridge  # noqa: E402
from bridge.testing import FakeAudioSink, Reply, ScriptedLLM, SilentTTS, ToolCall  # noqa: E402

if MODE == "install":
    bridge.install()

logging.basicConfig(level=logging.WARNING)
records: list[str] = []
started = asyncio.Event()


@bridge.function_tool
async def lookup(ctx: bridge.RunContext) -> str:
    """Look something up."""
    started.set()
    try:
        await ctx.wait_for_playout()
        await trio.sleep(30 if MODE == "install" else 0.1)
    except trio.Cancelled:
        records.append(f"cancelled: {ctx.cancel_reason}")
        raise
    return "sunny"


async def main() -> None:
    loop = asyncio.get_running_loop()
    print("loop", type(loop).__name__)
    if MODE == "install":
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # fix 1 on this loop too
            assert await loop.run_in_executor(pool, lambda: 42) == 42
        loop.call_later(-1, lambda: None)  # fix 3
    llm = ScriptedLLM(
        [
            Reply(
                text="Let me look that up for you, one moment please, almost there.",
                tool_calls=[ToolCall("lookup", {}, "c1")],
            )
        ]
    )
    session: AgentSession[None] = AgentSession(llm=llm, tts=SilentTTS(words_per_second=4))
    session.output.audio = FakeAudioSink(clear_delay=0.0)
    await session.start(Agent(instructions="test", tools=[lookup]))
    handle = session.generate_reply(user_input="weather?")
    if MODE == "install":
        await asyncio.wait_for(started.wait(), 10)
        handle.interrupt()
    await asyncio.wait_for(handle.wait_for_playout(), 20)
    outs = [i for i in session.history.items if i.type == "function_call_output"]
    for o in outs:
        print("output", o.call_id, o.is_error, o.output)
    print("records", records)
    await session.aclose()


if RUNNER == "run":
    asyncio.run(main())
elif RUNNER == "runner":
    with asyncio.Runner() as runner:
        runner.run(main())
else:
    loop = early_loop if MODE == "late" else asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
print("exit ok")
