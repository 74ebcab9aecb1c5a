"""Sessions: the speech scheduler, speech supervisors, reply steps and tool runs.

Ownership (what replaces livekit's shielded futures and its 5 s watchdog):

* The session owns a nursery. In it run the sink's ``serve()``, the scheduler, and
  one *supervisor* task per speech.
* A supervisor owns a nursery for everything its speech does: each step's LLM and
  TTS work and every tool call. ``done`` is set in the supervisor's ``finally``,
  after that nursery has joined and the history is written, so a done speech has
  nothing left running, by construction.
* An interrupt cancels the speech's interruptible scopes (waiting in the queue, the
  LLM, TTS and audio forwarding) and the scope of each running unprotected tool
  call, once. Stopping the audio then runs shielded and bounded by ``sink_grace``:
  ``clear_buffer()``, then wait for the sink to confirm. The step's audio is
  finished when the sink confirms, or when the grace runs out (and the handle then
  says so with ``sink_timed_out``). Nothing kills a speech on a timer.
* Tools are children of the speech nursery but never of the scopes an interrupt
  cancels: a protected tool keeps running after a forced interrupt and the speech
  is done when it returns.

One step's audio (LLM -> TTS -> sink, stopping it, what history records as
heard) is :class:`._step_audio._StepAudio`; the queue is in :mod:`._queue`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Mapping
from contextlib import AbstractAsyncContextManager

import trio

from ._audio import AudioFrame, AudioOutput
from ._events import EventBroadcaster, SessionEvent, SpeechCreated
from ._exceptions import InterruptionNotAllowed, SessionClosedError
from ._history import ChatMessage, FunctionCallOutput, History
from ._input import STT, VAD
from ._models import LLM, TTS
from ._queue import InterruptResult, _SpeechQueue
from ._speech import SpeechHandle, SpeechPriority, _Step
from ._state import SpeechPhase, ToolCallPhase
from ._step import _Reply, _Say, _Source
from ._step_audio import _StepAudio
from ._tool_runner import _ToolRunner
from ._tools import FunctionTool
from ._turn import AgentState, TurnOptions, UserState
from ._voice import VoiceDriver
from ._voice_host import _SessionVoice

__all__ = ["InterruptResult", "Session"]

logger = logging.getLogger("trio_playout.session")


class Session(_StepAudio):
    """A conversation: its speeches, their audio, tools and history.

    Create it with :func:`open_session`. ``say`` and ``generate_reply`` are
    synchronous: they schedule a speech and return its :class:`SpeechHandle`
    (await it, or its ``wait_for_playout()``, for "done"). Once the session is
    closed (from the moment its block starts to exit) ``say``, ``generate_reply``
    and ``interrupt`` raise :class:`SessionClosedError`; handles keep working.
    """

    def __init__(
        self,
        *,
        llm: LLM,
        tts: TTS,
        output: AudioOutput,
        tools: Mapping[str, FunctionTool],
        allow_interruptions: bool,
        sink_grace: float,
        close_timeout: float,
        nursery: trio.Nursery,
        audio_input: AsyncIterable[AudioFrame] | None = None,
        vad: VAD | None = None,
        stt: STT | None = None,
        turn: TurnOptions | None = None,
    ) -> None:
        self._llm = llm
        self._tts = tts
        self._output = output
        self._runner = _ToolRunner(self, tools)  # tools checked by _tool_table in open_session
        self.allow_interruptions = allow_interruptions
        self.sink_grace = sink_grace
        self.close_timeout = close_timeout
        self._nursery = nursery
        self._queue = _SpeechQueue()
        self._current: SpeechHandle | None = None
        self._live: dict[SpeechHandle, None] = {}  # insertion-ordered set
        self._closing = False
        self.history = History()
        self._events = EventBroadcaster()
        self._voice = _SessionVoice(self, output, self._events)
        self._audio_input = audio_input
        self._voice_scope = trio.CancelScope()
        if audio_input is not None:
            self._voice.driver = VoiceDriver(self._voice, vad=vad, stt=stt, options=turn)

    # -- public API -----------------------------------------------------------------
    @property
    def current_speech(self) -> SpeechHandle | None:
        """The speech whose audio step is authorized right now, if any."""
        return self._current

    @property
    def tools(self) -> Mapping[str, FunctionTool]:
        return dict(self._runner.tools)

    @property
    def speeches(self) -> tuple[SpeechHandle, ...]:
        """Speeches not yet done, in the order they were created."""
        return tuple(self._live)

    @property
    def user_state(self) -> UserState:
        """``"speaking"`` while the VAD hears the user, else ``"listening"``."""
        return self._voice.user_state

    @property
    def agent_state(self) -> AgentState:
        """livekit's agent states: ``"speaking"`` while the agent's audio plays (not
        while it is paused), ``"thinking"`` from a user turn to its reply's first
        frame, ``"listening"`` otherwise; ``"idle"`` instead of listening in a session
        without audio input."""
        return self._voice.agent_state

    def subscribe(self, *, buffer: int | None = None
                  ) -> AbstractAsyncContextManager[trio.MemoryReceiveChannel[SessionEvent]]:
        """``async with session.subscribe() as events:`` the session's events from now on.

        Each subscriber has its own bounded buffer (``buffer`` events, default 256);
        a subscriber that falls behind loses its oldest events (counted and logged),
        so a slow or absent reader never blocks the session. The channel ends when
        the session has closed.
        """
        return self._events.subscribe(buffer=buffer)

    @property
    def closed(self) -> bool:
        """True once the session started closing; it accepts no new speech."""
        return self._closing

    def say(
        self,
        text: str,
        *,
        allow_interruptions: bool | None = None,
        priority: SpeechPriority = SpeechPriority.NORMAL,
    ) -> SpeechHandle:
        """Schedule ``text`` to be spoken as it is (no LLM)."""
        if not isinstance(text, str):
            raise TypeError(f"say() takes a str, got {type(text).__name__}")
        return self._schedule(_Say(text), allow_interruptions, priority)

    def generate_reply(
        self,
        *,
        user_input: str | None = None,
        allow_interruptions: bool | None = None,
        priority: SpeechPriority = SpeechPriority.NORMAL,
    ) -> SpeechHandle:
        """Schedule an LLM reply; ``user_input`` is recorded first as a user message.

        The user message is written at once, so the user's words are kept even when
        the reply is interrupted before it starts. Every argument is checked first:
        a call that raises has written nothing.
        """
        if user_input is not None and not isinstance(user_input, str):
            raise TypeError(f"user_input must be a str, got {type(user_input).__name__}")
        priority = SpeechPriority(priority)  # ValueError before anything is written
        self._check_open()
        if user_input is not None:
            self.history._append(ChatMessage("user", user_input))
        return self._schedule(_Reply(), allow_interruptions, priority)

    def interrupt(self, *, force: bool = False, source: str = "programmatic") -> InterruptResult:
        """Interrupt the current speech and the queued ones, in playout order.

        Speeches running tools after their audio (background speeches) are
        interrupted too, except protected ones unless ``force``. The queue walk stops
        at the first protected queued speech, so no gap opens in the conversation.
        If the current speech is protected and ``force`` is False this raises
        :class:`InterruptionNotAllowed` having changed nothing. On a closed session
        it raises :class:`SessionClosedError`, like ``say`` (closing already
        interrupted every speech); check :attr:`closed` first where that can happen.
        """
        self._check_open()
        current = self._current
        if (current is not None and not force and not current.interrupted
                and not current.allow_interruptions):
            raise InterruptionNotAllowed(f"{current.id} does not allow interruptions; use force=True")
        queued = self._queue.in_playout_order()
        queued_set = set(queued)
        targets: list[SpeechHandle] = []
        for speech in self._live:
            if speech is current or speech in queued_set:
                continue
            if force or speech.allow_interruptions or speech.interrupted:
                targets.append(speech.interrupt(force=force, source=source))
        if current is not None:
            targets.append(current.interrupt(force=force, source=source))
        already = set(targets)
        for speech in queued:
            if speech.done() or speech in already:
                continue
            if not force and not speech.allow_interruptions and not speech.interrupted:
                logger.warning("interrupt stopped at protected queued speech %s", speech.id)
                break
            targets.append(speech.interrupt(force=force, source=source))
        return InterruptResult(s for s in targets if not s.done())

    # -- scheduling -------------------------------------------------------------------
    def _check_open(self) -> None:
        if self._closing:
            raise SessionClosedError("the session is closed: no new speech, nothing left to interrupt")

    def _schedule(self, source: _Source, allow: bool | None, priority: SpeechPriority) -> SpeechHandle:
        self._check_open()
        speech = SpeechHandle(
            allow_interruptions=self.allow_interruptions if allow is None else allow,
            priority=SpeechPriority(priority),
        )
        speech._state.schedule()
        speech._on_change = self._voice.changed
        self._live[speech] = None
        self._queue.push(speech)
        self._nursery.start_soon(self._supervise, speech, source, name=f"speech {speech.id}")
        self._events.publish(SpeechCreated(speech, "say" if isinstance(source, _Say) else "generate_reply"))
        return speech

    async def _scheduler(self) -> None:
        while True:
            speech = await self._queue.pop()
            if speech.done() or speech.interrupted:
                continue
            step = speech._steps[-1]
            self._current = speech
            speech._state.authorize()
            step.authorized.set()
            self._voice.changed(speech)
            # Wait for the step's audio to finish, woken only when there is something
            # to schedule next (a push, or the end of this step with a speech queued):
            # the end of the last queued speech's audio does not wake this task, so it
            # costs no scheduler pass between an interrupt and that speech's done.
            while not step.playout_done.is_set():
                await self._queue.park()

    # -- one speech -----------------------------------------------------------------------
    async def _supervise(self, speech: SpeechHandle, source: _Source) -> None:
        try:
            if isinstance(source, _Say):
                # A said text calls no tools, so it has no children to hold: no
                # nursery, and one scheduler round less between interrupt and done.
                await self._run_steps(speech, source, None)
            else:
                async with trio.open_nursery() as nursery:
                    await self._run_steps(speech, source, nursery)
        except Exception as exc:
            self._record_error(speech, exc)
        finally:
            self._finalize(speech)

    async def _run_steps(self, speech: SpeechHandle, source: _Source, nursery: trio.Nursery | None) -> None:
        while True:
            step = speech._steps[-1]
            with speech._interruptible():
                await step.authorized.wait()
            if speech.interrupted:
                return
            await self._play_step(speech, step, source, nursery)
            for run in step.runs:
                await run.finished.wait()
            self._commit_tools(speech, step)
            if not step.runs or speech._error is not None or not speech._state.may_continue():
                return
            speech._state.next_step()
            speech._steps.append(_Step(len(speech._steps)))
            self._queue.push(speech)

    def _finalize(self, speech: SpeechHandle) -> None:
        """Last words of a supervisor: every record written, then done. No awaits."""
        for step in speech._steps:
            self._commit_tools(speech, step)
            self._finish_playout(speech, step)
        speech._state.finish()
        self._live.pop(speech, None)
        speech._done.set()
        self._voice.changed(speech)

    def _finish_playout(self, speech: SpeechHandle, step: _Step) -> None:
        if step.playout_done.is_set():
            return
        if self._current is speech:
            self._current = None
        if speech._state.phase is SpeechPhase.AUTHORIZED:
            speech._state.playout_finished()
        step.playout_done.set()
        if self._queue:
            self._queue.wake()  # the scheduler authorizes the next speech
        self._voice.changed(speech)

    def _commit_tools(self, speech: SpeechHandle, step: _Step) -> None:
        for run in step.runs:
            outcome = run.state.outcome
            if outcome is None or run.committed:
                continue
            run.committed = True
            self._commit(speech, run.call)
            self._commit(speech, FunctionCallOutput(
                run.call.call_id,
                outcome.output,
                is_error=outcome.phase is ToolCallPhase.ERROR,
                interrupted=outcome.phase is ToolCallPhase.INTERRUPTED,
            ))

    # -- closing ---------------------------------------------------------------------------
    async def _run_voice(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self._audio_input is not None
        with self._voice_scope:
            await self._voice.run(self._audio_input, task_status=task_status)

    async def _aclose(self) -> None:
        self._closing = True
        # The user's voice first: no turn may be committed, nor a pause resumed, while
        # the session closes.
        self._voice_scope.cancel(reason="session closed")
        with trio.CancelScope(shield=True):
            start = trio.current_time()
            for speech in list(self._live):
                speech.interrupt(force=True, source="session_close")
            # Protected tools get close_timeout. The audio needs no deadline here:
            # each speech bounds its own stop by sink_grace from the interrupt.
            with trio.move_on_at(start + self.close_timeout):
                await self._wait_all_done()
            stuck = [run for speech in self._live for run in speech._runs if not run.finished.is_set()]
            if stuck:
                logger.warning(
                    "closing the session: cancelling tool call(s) still running after "
                    "close_timeout=%.3gs: %s", self.close_timeout,
                    ", ".join(f"{r.call.name} ({r.call.call_id}, {r.speech.id})" for r in stuck))
                for run in stuck:
                    run.deliver("session_close", override_protection=True)
            # What is left: audio inside its grace, cancelled tools unwinding.
            with trio.move_on_at(max(start + self.sink_grace, trio.current_time()) + self.sink_grace):
                await self._wait_all_done()
            if self._live:
                logger.error("closing the session: cancelling speeches that did not finish: %s",
                             ", ".join(s.id for s in self._live))
            # Then the turns the user completed that were never written (nothing of the
            # voice can act any more), after the speeches they waited for.
            await self._voice.wait_stopped()
            self._voice.write_unwritten_turns()
        self._events.close()
        self._nursery.cancel_scope.cancel(reason="session closed")

    async def _wait_all_done(self) -> None:
        while self._live:
            await next(iter(self._live))._done.wait()
