"""A bridged tool whose trio body ends in ``asyncio.CancelledError`` (run as a subprocess).

Run in its own interpreter because the bug it pins made the bridge loop spin inside one
asyncio callback, where no trio deadline can fire; the parent test bounds it in real
time and kills it. Virtual time (``MockClock``) inside, one ``trio.run`` per case.
Arguments: the cases to run, each naming how the body ends:

* ``direct`` - it raises ``asyncio.CancelledError`` itself;
* ``aio`` - it awaits, through ``bridge.aio``, an asyncio task that someone else cancels
  (livekit's own teardown does this to tasks a tool may be awaiting);
* ``group`` - the same inside a trio nursery, so it ends in a ``BaseExceptionGroup``;
* ``interrupted`` - the speech is interrupted; the body's shielded cleanup awaits such
  a task, so the asyncio cancellation replaces trio's ``Cancelled`` on the way out.

Prints, per case, lines starting with the case's name: one ``output`` line per output
of the call, the assistant messages, the body's phases; and ``exit ok`` at the end.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import trio
import trio.testing

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import running_session

import bridge
from bridge.testing import Reply, ToolCall

MODE = ""
phases: list[str] = []


async def _cancelled_elsewhere() -> None:
    loop = asyncio.get_running_loop()
    task = loop.create_task(asyncio.sleep(10))
    loop.call_later(0.5, task.cancel)
    await task


@bridge.function_tool
async def lookup(ctx: bridge.RunContext) -> str:
    """Look something up."""
    try:
        if MODE == "direct":
            raise asyncio.CancelledError
        if MODE == "aio":
            await bridge.aio(_cancelled_elsewhere)()
        elif MODE == "interrupted":
            try:
                await trio.sleep(10)
            except trio.Cancelled:
                with trio.move_on_after(5, shield=True):
                    await bridge.aio(_cancelled_elsewhere)()
                raise
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(bridge.aio(_cancelled_elsewhere))
                await trio.sleep(10)
        return "sunny"
    finally:
        phases.append("body ended")


async def main() -> None:
    replies = [
        Reply(text="One moment.", tool_calls=[ToolCall("lookup", {}, "c1")]),
        Reply(text="Something went wrong."),
        Reply(text="Hello again."),
    ]
    async with running_session([lookup], replies) as env:
        with trio.move_on_after(60) as bound:  # virtual seconds: all of this takes ~5
            handle = env.session.generate_reply(user_input="weather?")
            if MODE == "interrupted":
                await trio.sleep(1.5)  # the tool is running
                handle.interrupt()
            await bridge.wait_for_playout(handle)
            await trio.sleep(5)  # the reply step after the tool
            second = env.session.generate_reply(user_input="hello")
            await bridge.wait_for_playout(second)
        print(MODE, "bounded", bound.cancelled_caught)
        for out in env.outputs("c1"):
            print(MODE, "output", out.call_id, out.is_error, bridge.is_interrupted_output(out), out.output)
        print(MODE, "messages", [m.text_content for m in env.assistant_messages()])
        print(MODE, "phases", phases)


def run_case(mode: str) -> None:
    global MODE
    MODE = mode
    phases.clear()
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


for case in sys.argv[1:]:
    run_case(case)
print("exit ok")
