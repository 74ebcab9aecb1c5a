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

Done means the audio stopped. A step learns each segment its frames go into
(``open_segment()``) *before* a write that may block, and on the interrupt path
waits for every one of them, so an interrupt during the very first write still
waits for the sink's confirmation.

What history records as heard, per step:

* not interrupted (the audio played out): the step's whole text, also any tail
  after the last timed word (a final ``?`` the TTS gave no timing);
* interrupted and confirmed: the text of the words that started before the
  position the sink reported;
* the sink never confirmed within ``sink_grace`` (``sink_timed_out``): the text of
  all the audio the sink had been given. A sink that ignored the stop is assumed to
  play what it holds, so the history may claim words nobody heard but never omits
  words that were played. The message says ``interrupted=True`` only if the speech
  was interrupted (a sink that lost the natural end of an uninterrupted speech
  gives the whole text, not interrupted).
"""

from __future__ import annotations

import itertools
import logging
import math
import sys
from collections.abc import (
    AsyncIterable,
    Iterable,
    Mapping,
)
from contextlib import AbstractAsyncContextManager
from heapq import heappop, heappush

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._audio import AudioFrame, AudioOutput, PlaybackResult, PlaybackSegment
from ._events import EventBroadcaster, SessionEvent, SpeechCreated
from ._exceptions import (
    InterruptionNotAllowed,
    SessionClosedError,
)
from ._history import ChatMessage, FunctionCall, FunctionCallOutput, History
from ._input import STT, VAD
from ._models import LLM, TTS, LLMRequest, TextDelta, ToolCall
from ._speech import SpeechHandle, SpeechPriority, _Step
from ._state import SpeechPhase, ToolCallPhase
from ._step import _aclosing, _ErrorsInto, _Playout, _Reply, _Say, _Source, _split_sentences
from ._tool_runner import _ToolRunner
from ._tools import FunctionTool
from ._turn import AgentState, TurnOptions, UserState
from ._voice import VoiceDriver
from ._voice_host import _SessionVoice

__all__ = ["InterruptResult", "Session"]

logger = logging.getLogger("trio_playout.session")

# Less than this of a segment or a word is rounding in clock arithmetic (a clear one
# float step after a start), not audio: one sample at 48 kHz lasts 21 us.
_NOTHING_HEARD = 1e-6


def _sole(exc: BaseException) -> BaseException:
    """The one error inside nested single-member groups (a nursery wraps what it raises)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc



class InterruptResult:
    """The speeches a :meth:`Session.interrupt` call interrupted.

    ``await result.wait()`` returns when every one of them is done (their audio
    confirmed stopped). Cancelling that wait changes nothing.
    """

    def __init__(self, speeches: Iterable[SpeechHandle]) -> None:
        self.speeches: tuple[SpeechHandle, ...] = tuple(speeches)

    def __repr__(self) -> str:
        return f"<InterruptResult {[s.id for s in self.speeches]}>"

    async def wait(self) -> None:
        for speech in self.speeches:
            await speech.wait_for_playout()


class _SpeechQueue:
    """Speeches waiting for the scheduler: highest priority first, FIFO within one."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, SpeechHandle]] = []
        self._seq = itertools.count()
        self._lot = trio.lowlevel.ParkingLot()

    def __bool__(self) -> bool:
        return bool(self._heap)

    def push(self, speech: SpeechHandle) -> None:
        heappush(self._heap, (-speech.priority, next(self._seq), speech))
        self._lot.unpark_all()

    def wake(self) -> None:
        """Wake the scheduler (it re-checks what it waits for)."""
        self._lot.unpark_all()

    async def park(self) -> None:
        await self._lot.park()

    async def pop(self) -> SpeechHandle:
        while not self._heap:
            await self._lot.park()
        return heappop(self._heap)[2]

    def in_playout_order(self) -> list[SpeechHandle]:
        return [entry[2] for entry in sorted(self._heap)]


class Session:
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

    def _commit(self, speech: SpeechHandle, item: ChatMessage | FunctionCall | FunctionCallOutput) -> None:
        if speech.done():
            raise AssertionError(f"{speech.id} is done; refusing to write {item!r}")
        self.history._append(item)
        speech._chat_items.append(item)

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

    def _errors_into(self, speech: SpeechHandle) -> _ErrorsInto:
        """Record errors of a speech's own work on it; only cancellation goes on.

        An error must not escape into the speech's nursery, where it would cancel
        the speech's protected tools.
        """
        return _ErrorsInto(self, speech)

    def _record_error(self, speech: SpeechHandle, exc: BaseException) -> None:
        exc = _sole(exc)
        if speech._error is None:
            speech._error = exc
        logger.error("%s failed: %r", speech.id, exc, exc_info=exc)

    # -- one step: LLM -> TTS -> sink -----------------------------------------------------
    async def _play_step(self, speech: SpeechHandle, step: _Step, source: _Source,
                         nursery: trio.Nursery | None) -> None:
        playout = _Playout()

        def stop_audio_now() -> None:
            if not playout.cleared and playout.unfinished():
                self._output.clear_buffer()
                playout.cleared = True  # only once it worked: cleanup retries otherwise

        speech._stop_audio = stop_audio_now
        try:
            with self._errors_into(speech), speech._interruptible():
                if isinstance(source, _Say):
                    await self._forward_text(speech, source.text, playout)
                else:
                    assert nursery is not None  # replies hold their tool calls in it
                    send, recv = trio.open_memory_channel[str](math.inf)
                    async with trio.open_nursery() as gen:
                        gen.start_soon(self._produce, speech, step, send, nursery)
                        await self._forward_stream(speech, recv, playout)
                if not speech._state.interrupted:
                    # (An interrupt's clear may have woken a blocked writer: then the
                    # forwarding stopped early and without Cancelled; see _speak.)
                    playout.complete = True
                    self._output.flush()
                    if playout.segments:
                        step.playback = await self._await_natural_end(speech, playout)
        finally:
            speech._stop_audio = None
            if step.playback is None and playout.segments:
                if playout.unfinished():
                    step.playback = await self._stop_audio(speech, playout)
                else:  # the sink confirmed inside interrupt() (usual for a local sink)
                    step.playback = playout.result()
            self._commit_heard(speech, playout, step.playback)
            self._finish_playout(speech, step)

    async def _produce(self, speech: SpeechHandle, step: _Step,
                       send: trio.MemorySendChannel[str], nursery: trio.Nursery) -> None:
        with send:  # a synchronous close: no checkpoint on the cancellation path
            request = LLMRequest(history=tuple(self.history), tools=tuple(self._runner.tools.values()))
            with self._errors_into(speech):
                async with _aclosing(self._llm.stream(request)) as stream:
                    async for chunk in stream:
                        if isinstance(chunk, TextDelta):
                            if chunk.text:
                                await send.send(chunk.text)
                        elif isinstance(chunk, ToolCall):
                            self._runner.launch(speech, step, chunk, nursery)
                        else:
                            raise TypeError(f"the LLM yielded {chunk!r}, not a TextDelta or ToolCall")

    async def _forward_text(self, speech: SpeechHandle, text: str, playout: _Playout) -> None:
        sentences, rest = _split_sentences(text)
        for sentence in [*sentences, rest] if rest else sentences:
            await self._speak(speech, sentence, playout)

    async def _forward_stream(self, speech: SpeechHandle, recv: trio.MemoryReceiveChannel[str],
                              playout: _Playout) -> None:
        """Speak the LLM's text sentence by sentence as it streams in."""
        buffered = ""
        with recv:
            async for piece in recv:
                # Only the tail can hold a new sentence end (long text stays linear).
                sentences, buffered = _split_sentences(buffered + piece, max(0, len(buffered) - 1))
                for sentence in sentences:
                    await self._speak(speech, sentence, playout)
            # After an LLM error the tail is a cut-off fragment: never speak it.
            if buffered and speech._error is None:
                await self._speak(speech, buffered, playout)

    async def _speak(self, speech: SpeechHandle, text: str, playout: _Playout) -> None:
        # After an interrupt nothing more is synthesized or captured. interrupt() clears
        # the sink before it cancels the scopes, so a writer blocked in the sink's
        # back-pressure is usually woken by the clear and returns here normally (no
        # Cancelled to raise and unwind): these checks end the step instead.
        state = speech._state
        if state.interrupted:
            return
        base_char, base_time = len(playout.text), playout.audio
        playout.text += text
        async with _aclosing(self._tts.synthesize(text)) as audio:
            async for chunk in audio:
                if state.interrupted:
                    return  # never capture after the interrupt (nor after its clear)
                for word in chunk.words:
                    playout.words.append((base_time + word.start, base_char + word.end_char))
                if not playout.segments:
                    self._voice.before_first_frame(speech)  # a barge-in in progress pauses it now
                playout.track(self._output.open_segment())  # known before the write can block
                await self._output.capture_frame(chunk.frame)
                playout.audio += chunk.frame.duration
                if state.interrupted:
                    return

    async def _await_natural_end(self, speech: SpeechHandle, playout: _Playout) -> PlaybackResult:
        # A sink that never reports the end would wedge the queue; bound it by when
        # the sink expects its audio to end (asked again at each deadline: a player
        # that reports but lags pushes it back) or else the audio's own length, plus
        # the grace, pushed back by the time spent paused (a long pause is not a dead
        # sink), and never less than the grace from now.
        def bound() -> float:
            end = self._output.expected_end()
            if end is None:  # as if it all played from now on
                end = (start + sum(s.captured for s in playout.segments)
                       + self._output.paused_time - paused_before)
            # never less than the grace from the flush: the sink cannot report an end before it
            return max(end, start) + self.sink_grace
        start, paused_before = trio.current_time(), self._output.paused_time
        while playout.unfinished():
            deadline = bound()
            if trio.current_time() >= deadline:
                break
            with trio.move_on_at(deadline):
                for segment in playout.unfinished():
                    await segment.wait()
        for segment in playout.unfinished():
            self._give_up(speech, segment, "did not report the end of playout")
        return playout.result()

    async def _stop_audio(self, speech: SpeechHandle, playout: _Playout) -> PlaybackResult:
        """Stop every segment of the step and wait (bounded) until the sink confirms."""
        if playout.unfinished():
            with trio.CancelScope(shield=True):
                if not playout.cleared:
                    try:
                        self._output.clear_buffer()
                        playout.cleared = True
                    except Exception as exc:  # the grace below still bounds the wait
                        self._record_error(speech, exc)
                with trio.move_on_after(self.sink_grace):
                    for segment in playout.unfinished():
                        await segment.wait()
            for segment in playout.unfinished():
                self._give_up(speech, segment, "did not confirm the stop")
        return playout.result()

    def _give_up(self, speech: SpeechHandle, segment: PlaybackSegment, why: str) -> None:
        # The sink never said where it stopped; one that ignores a clear goes on
        # playing what it holds, so what it was given is taken as heard.
        segment.abandon(segment.captured)
        speech.sink_timed_out = True
        logger.warning("%s: the audio sink %s within sink_grace=%.3gs; finishing without it",
                       speech.id, why, self.sink_grace)

    def _commit_heard(self, speech: SpeechHandle, playout: _Playout, result: PlaybackResult | None) -> None:
        if result is None:
            return
        # A sink that never confirmed cut nothing we know of: only the speech's
        # interrupt, or a confirmed early stop, marks the message interrupted.
        interrupted = speech.interrupted or playout.cut_by_sink()
        position, cut = result.position, result.interrupted
        if cut and position < _NOTHING_HEARD:
            return  # stopped as it started: float dust of the clock, not a word heard
        if cut and position < playout.audio:
            # a word counts as heard once more than float dust of it played (a cut
            # 1e-15 s after a word's start must not record that word)
            position -= _NOTHING_HEARD
        text = playout.heard(position, cut).rstrip()
        if text and (position > 0 or not cut):
            self._commit(speech, ChatMessage("assistant", text, interrupted))

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
