"""Shared scaffolding: a real livekit AgentSession on the bridge loop, with our fakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio
from livekit.agents import Agent, AgentSession

import bridge
from bridge.testing import FakeAudioSink, Reply, ScriptedLLM, SilentTTS, ToolCall, attach_sink

PREAMBLE = "Let me look that up for you right now, it will only take a moment."


@dataclass
class Env:
    session: AgentSession[Any]
    llm: ScriptedLLM
    tts: SilentTTS
    sink: Any
    loop: Any
    record: list[Any] = field(default_factory=list)

    def now(self) -> float:
        return trio.current_time()

    def history(self) -> list[Any]:
        return list(self.session.history.items)

    def outputs(self, call_id: str) -> list[Any]:
        return [
            i for i in self.session.history.items if i.type == "function_call_output" and i.call_id == call_id
        ]

    def calls(self, call_id: str) -> list[Any]:
        return [i for i in self.session.history.items if i.type == "function_call" and i.call_id == call_id]

    def assistant_messages(self) -> list[Any]:
        return [i for i in self.session.history.items if i.type == "message" and i.role == "assistant"]


def preamble_then_tool(
    tool: str, call_id: str = "c1", args: dict[str, Any] | None = None, *more: ToolCall
) -> list[Reply]:
    """The #5359 shape: spoken preamble plus a tool call, then the tool reply."""
    return [
        Reply(text=PREAMBLE, tool_calls=[ToolCall(tool, args or {}, call_id), *more]),
        Reply(text="Here is what I found."),
    ]


@asynccontextmanager
async def running_session(
    tools: Sequence[Any],
    replies: Sequence[Reply],
    *,
    clear_delay: float = 0.0,
    sink: Any = None,
    agent: Agent | None = None,
) -> AsyncIterator[Env]:
    async with bridge.open_loop() as loop:
        llm = ScriptedLLM(replies)
        tts = SilentTTS(words_per_second=2.0)
        the_sink = sink if sink is not None else FakeAudioSink(clear_delay=clear_delay)
        session: AgentSession[Any] = AgentSession(llm=llm, tts=tts)
        sync = attach_sink(session, the_sink)
        the_agent = agent if agent is not None else Agent(instructions="test", tools=list(tools))
        await bridge.aio(session.start)(the_agent)
        env = Env(session=session, llm=llm, tts=tts, sink=the_sink, loop=loop)
        try:
            yield env
        finally:
            with trio.move_on_after(60, shield=True):
                await bridge.aio(session.aclose)()
                if sync is not None:
                    await bridge.aio(sync.aclose)()


WATCHDOG = "speech not done in time"


def watchdog_fired(caplog: Any) -> bool:
    return any(WATCHDOG in r.getMessage() for r in caplog.records)


@dataclass
class ToolProbe:
    """What a bridged tool body did: starts, Cancelled seen, how it ended, its contexts."""

    starts: list[float] = field(default_factory=list)
    cancelled: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)
    contexts: list[bridge.RunContext] = field(default_factory=list)
    reasons: list[str | None] = field(default_factory=list)

    def slow_tool(
        self,
        name: str,
        seconds: float,
        *,
        wait_playout: bool = False,
        interruptible: bool = True,
        result: str = "sunny",
    ) -> Any:
        """A bridged tool: optionally waits for playout, then works ``seconds``."""
        probe = self

        async def body(ctx: bridge.RunContext) -> str:
            probe.starts.append(trio.current_time())
            probe.contexts.append(ctx)
            try:
                if wait_playout:
                    await ctx.wait_for_playout()
                await trio.sleep(seconds)
            except trio.Cancelled:
                probe.cancelled.append(trio.current_time())
                probe.reasons.append(ctx.cancel_reason)
                raise
            probe.finished.append(trio.current_time())
            return result

        body.__name__ = name
        body.__doc__ = f"The {name} tool."
        return bridge.function_tool(interruptible=interruptible)(body)
