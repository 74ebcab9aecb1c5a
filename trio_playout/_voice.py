"""The user's voice on trio: read the microphone, run the VAD and STT, apply the rules.

:class:`VoiceDriver` is the thin trio layer over :class:`~trio_playout._turn.TurnRules`.
It owns no speech: it talks to the session through :class:`VoiceHost`, a protocol
the session implements, so it can be tested against a small fake host.

Tasks (children of :meth:`VoiceDriver.run`)::

    audio input --> reader --+--> VAD queue --> VAD stream --+
                             |                              +--> rules --> actions --> host
                             +--> STT queue --> STT stream --+      ^
                                                    timer ----------+
                                                    turn worker <-- CompleteUserTurn

* **Fan-out.** The reader copies every frame into one queue per consumer and never
  waits for either. Each queue holds a bounded amount of audio (``vad_buffer``,
  ``stt_buffer`` seconds); a consumer that falls further behind loses its *oldest*
  audio, with a log line saying how much (and :attr:`VoiceDriver.dropped_audio`).
  So a slow STT never delays the VAD, and nothing is dropped silently.
* **Rules.** Each VAD event and transcript is stamped with ``trio.current_time()``
  (the VAD's own timestamps are audio time) and fed to the rules with fresh facts
  about the speeches the rules care about. An end of speech also gives the rules the
  silence the VAD waited before it (``silence_duration``): the endpoint counts from
  the end of the voice, as livekit's does. The returned actions run at once, in
  order, before the next checkpoint: a VAD decision reaches the sink without a task
  switch. The timer task calls ``tick`` at the rules' next deadline.
* **Turns.** A completed turn interrupts the earlier interruptible speeches at once
  (:meth:`VoiceHost.begin_user_turn`); the turn worker then waits for them (and for
  protected ones), writes the user message and schedules the reply. Turns are
  committed one at a time, in order; when a newer turn is already waiting, the
  older one is written without a reply, so back-to-back turns get one reply after
  the last of them (never a stale reply, never a lost message).
* **Failures.** A VAD or STT that raises or ends is logged and stops being read;
  the agent keeps speaking. If it stopped while the user was speaking, the user's
  speech is ended there, so a pause still resolves. A VAD that hangs shows as its
  queue overflowing, or (one that reports every window) as reading ``VAD_STALL``
  seconds of audio without an event: that is logged and, if the user was speaking,
  ends the speech the same way. With the VAD gone, the STT's finals still complete turns (each on
  arrival); with the STT gone, barge-in still pauses and a pause always resumes.
  The audio input ending (or raising) is not an error: it is logged and the timer
  and turn worker go on until the session closes.
* **Closing.** Cancelling :meth:`run` cancels every task; the VAD's and STT's
  streams are closed with ``aclose()`` bounded by ``close_timeout``. A completed
  turn is then never committed by the driver (not even one whose worker was already
  woken); the host takes it with :meth:`VoiceDriver.take_unwritten_turns`.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Hashable, Sequence
from typing import Any, Protocol

import trio

from ._audio import AudioFrame
from ._events import (
    AgentStateChanged,
    FalseInterruption,
    SessionEvent,
    UserInputTranscribed,
    UserStateChanged,
    UserTurnCompleted,
)
from ._exceptions import InterruptionNotAllowed
from ._input import STT, VAD, Transcript, VADEvent, VADEventType, _FrameQueue
from ._turn import (
    Action,
    AgentState,
    AgentStateChange,
    CompleteUserTurn,
    InterruptSpeech,
    PauseAudio,
    ReleasePause,
    ResumeAudio,
    SpeechFacts,
    TranscriptReceived,
    TurnOptions,
    TurnRules,
    UserState,
    UserStateChange,
)

__all__ = ["VoiceDriver", "VoiceHost"]

logger = logging.getLogger("trio_playout.voice")


class VoiceHost(Protocol):
    """What the driver needs from a session. Speeches are opaque hashable keys
    (``SpeechHandle`` objects in :class:`~trio_playout.Session`). Every method but
    :meth:`wait_speech_done` is synchronous and must not block."""

    def current_speech(self) -> Hashable | None:
        """The speech whose step is authorized now (playing or about to), if any."""

    def speech_facts(self, speech: Hashable) -> SpeechFacts:
        """The facts about ``speech`` now (see :class:`SpeechFacts`); a speech the
        host no longer knows is ``SpeechFacts(finished=True)``."""

    def pause_audio(self, speech: Hashable) -> bool:
        """Pause the sink if ``speech`` is still the one playing, not done, not
        interrupted. True if it is paused now."""

    def resume_audio(self, speech: Hashable) -> bool:
        """Resume the paused sink, only if ``speech`` is still current, paused, not
        done and not interrupted (re-check here: the rules' view may be a step
        behind). True if its audio goes on."""

    def release_pause(self, speech: Hashable) -> None:
        """``speech``'s pause is over without a resume (it was interrupted or ended):
        make sure the sink is not left paused for the next speech, without playing
        anything more of ``speech``."""

    def interrupt_speech(self, speech: Hashable, source: str) -> None:
        """``speech.interrupt(source=source)``; may raise ``InterruptionNotAllowed``."""

    def begin_user_turn(self) -> Sequence[Hashable]:
        """A user turn completed: interrupt every earlier interruptible speech now
        (source ``"user_turn"``, current, queued and background ones, including a
        reply that has not played its first frame) and return the speeches the turn
        must wait for before its message is written (those interrupted and the
        protected ones still live)."""

    async def wait_speech_done(self, speech: Hashable) -> None:
        """Return when ``speech`` is done (its history written). Cancellable."""

    def commit_user_turn(self, text: str, *, reply: bool) -> Hashable | None:
        """Write ``text`` as one user message; if ``reply``, schedule exactly one reply
        and return it (else None)."""

    def publish(self, event: SessionEvent) -> None:
        """Give ``event`` to the session's subscribers, without blocking."""


VAD_STALL = 2.0
"""Seconds of audio a VAD that reports every window (``INFERENCE`` events) may read
without sending any event while the user speaks; then it is stalled (a remote VAD
whose results stopped, a bridged plugin whose output hangs) and the user's speech is
ended, so a pause still resolves and a turn can complete. A VAD that only sends
starts and ends is never judged by this (a long utterance is not a stall)."""


class VoiceDriver:
    """Drive :class:`TurnRules` from an audio input, a VAD and an STT (see the module).

    The host calls :meth:`speech_changed` whenever one of its speeches changes in a way
    :class:`SpeechFacts` describes (authorized, first frame of a step, end of a step's
    audio, interrupted, done, protection changed).
    """

    def __init__(self, host: VoiceHost, *, vad: VAD | None = None, stt: STT | None = None,
                 options: TurnOptions | None = None, vad_buffer: float = 2.0,
                 stt_buffer: float = 10.0, close_timeout: float = 1.0) -> None:
        if vad is None and stt is None:
            raise ValueError("audio input needs a vad, an stt or both")
        if vad is not None and not isinstance(vad, VAD):
            raise TypeError(f"vad must implement trio_playout.VAD, got {type(vad).__name__}")
        if stt is not None and not isinstance(stt, STT):
            raise TypeError(f"stt must implement trio_playout.STT, got {type(stt).__name__}")
        for name, value in (("vad_buffer", vad_buffer), ("stt_buffer", stt_buffer),
                            ("close_timeout", close_timeout)):
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be finite and >= 0, got {value}")
        self._host = host
        self._vad = vad
        self._stt = stt
        self._rules = TurnRules(options, has_vad=vad is not None, has_stt=stt is not None)
        self.options = self._rules.options
        if stt is None and self.options.min_interruption_words:
            logger.warning("min_interruption_words=%d without an STT: the user's voice can never "
                           "barge in", self.options.min_interruption_words)
        self._vad_queue = _FrameQueue("VAD", vad_buffer) if vad is not None else None
        self._stt_queue = _FrameQueue("STT", stt_buffer) if stt is not None else None
        self.close_timeout = close_timeout
        self._known: dict[Hashable, SpeechFacts] = {}
        self._actions: deque[Action] = deque()
        self._draining = False
        self._turns: deque[tuple[str, bool, Sequence[Hashable]]] = deque()
        self._turn_lot = trio.lowlevel.ParkingLot()
        self._timer_changed = trio.Event()
        self._armed = math.inf
        self._vad_running = vad is not None
        self._vad_windows = False  # the VAD reports every window (INFERENCE events)
        self._vad_mark = 0.0  # audio the VAD had read at its last event

    # -- what the session reads -----------------------------------------------------------
    @property
    def user_state(self) -> UserState:
        return self._rules.user_state

    @property
    def agent_state(self) -> AgentState:
        return self._rules.agent_state

    @property
    def dropped_audio(self) -> dict[str, float]:
        """Seconds of audio dropped so far for each consumer that fell behind."""
        return {q.name: q.dropped_seconds for q in (self._vad_queue, self._stt_queue) if q is not None}

    def take_unwritten_turns(self) -> list[str]:
        """The completed turns not written yet, oldest first, removed from the queue,
        then the final text whose endpoint never came (no ``UserTurnCompleted`` for it).

        For the session's close: :meth:`run` is cancelled first, so these turns were
        heard (``UserTurnCompleted`` was published) but will never be committed; the
        user's final words still waiting for their endpoint are not lost either.
        """
        texts = [text for text, _, _ in self._turns]
        self._turns.clear()
        for _ in texts:  # the rules stop "thinking" about them
            self._feed(self._rules.turn_committed(trio.current_time(), None))
        pending = self._rules.take_pending_text()
        if pending:
            texts.append(pending)
        return texts

    def speech_changed(self, speech: Hashable) -> None:
        """The host's notice that ``speech`` changed; synchronous, call it from anywhere
        in the session's trio run."""
        self._report(trio.current_time(), speech)
        self._drain()

    # -- running ------------------------------------------------------------------------------
    async def run(self, audio_input: AsyncIterable[AudioFrame], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Hear the user until cancelled (the session's close)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._timer, name="voice timer")
            nursery.start_soon(self._turn_worker, name="user turns")
            if self._vad is not None and self._vad_queue is not None:
                nursery.start_soon(self._run_vad, self._vad, self._vad_queue, name="VAD")
            if self._stt is not None and self._stt_queue is not None:
                nursery.start_soon(self._run_stt, self._stt, self._stt_queue, name="STT")
            task_status.started()
            await self._read(audio_input)

    async def _read(self, audio_input: AsyncIterable[AudioFrame]) -> None:
        iterator = aiter(audio_input)
        try:
            async for frame in iterator:
                if not isinstance(frame, AudioFrame):
                    raise TypeError(f"the audio input yielded {type(frame).__name__}, not an AudioFrame")
                if self._vad_queue is not None and self._vad_running:
                    if self._vad_queue.put(frame):
                        self._end_stuck_speech("the VAD stopped reading audio")
                    elif (self._vad_windows and self._rules.user_speaking
                          and self._vad_queue.consumed - self._vad_mark > VAD_STALL):
                        self._end_stuck_speech(f"the VAD read {VAD_STALL:g} s of audio without an event")
                if self._stt_queue is not None:
                    self._stt_queue.put(frame)
        except Exception:
            logger.exception("the audio input failed; the session no longer hears the user")
        else:
            logger.info("the audio input ended; the session no longer hears the user")
        finally:
            for queue in (self._vad_queue, self._stt_queue):
                if queue is not None:
                    queue.close()
            await _aclose_bounded(iterator, self.close_timeout, "audio input")

    async def _run_vad(self, vad: VAD, queue: _FrameQueue) -> None:
        stream: AsyncIterator[VADEvent] | None = None
        try:
            stream = vad.stream(queue)  # a plain ``def`` may raise here
            async for event in stream:
                if not isinstance(event, VADEvent):
                    raise TypeError(f"the VAD yielded {type(event).__name__}, not a VADEvent")
                self._on_vad(event)
        except Exception:
            logger.exception("the VAD failed; the user's voice no longer barges in")
        else:
            if not queue._closed:
                logger.error("the VAD stream ended while audio still comes in; "
                             "the user's voice no longer barges in")
        finally:
            if stream is not None:
                await _aclose_bounded(stream, self.close_timeout, "VAD stream")
        self._vad_running = False
        self._end_stuck_speech("the VAD stopped")

    async def _run_stt(self, stt: STT, queue: _FrameQueue) -> None:
        stream: AsyncIterator[Transcript] | None = None
        try:
            stream = stt.stream(queue)  # a plain ``def`` may raise here
            async for transcript in stream:
                if not isinstance(transcript, Transcript):
                    raise TypeError(f"the STT yielded {type(transcript).__name__}, not a Transcript")
                now = trio.current_time()
                self._refresh(now)
                self._feed(self._rules.transcript(now, transcript.text, transcript.final))
        except Exception:
            logger.exception("the STT failed; no more words or user turns")
        else:
            if not queue._closed:
                logger.error("the STT stream ended while audio still comes in; no more words or user turns")
        finally:
            if stream is not None:
                await _aclose_bounded(stream, self.close_timeout, "STT stream")
        if self._vad is None:
            self._end_stuck_speech("the STT stopped")

    def _on_vad(self, event: VADEvent) -> None:
        if self._vad_queue is not None:
            self._vad_mark = self._vad_queue.consumed
        if event.type is VADEventType.INFERENCE:
            self._vad_windows = True
        now = trio.current_time()
        self._refresh(now)
        if event.type is VADEventType.START_OF_SPEECH:
            actions = self._rules.start_of_speech(now)
            if event.speech_duration:
                actions += self._rules.inference(now, event.speech_duration, event.silence_duration)
        elif event.type is VADEventType.INFERENCE:
            actions = self._rules.inference(now, event.speech_duration, event.silence_duration)
        else:  # the endpoint counts from the end of the voice, before the VAD's silence
            actions = self._rules.end_of_speech(now, event.silence_duration)
        self._feed(actions)

    def _end_stuck_speech(self, why: str) -> None:
        if self._rules.user_speaking:
            logger.warning("%s while the user was speaking: ending the user's speech now", why)
            self._feed(self._rules.end_of_speech(trio.current_time()))

    async def _timer(self) -> None:
        while True:
            self._timer_changed = trio.Event()
            self._armed = self._rules.next_deadline()
            with trio.move_on_at(self._armed):
                await self._timer_changed.wait()
            now = trio.current_time()
            if now >= self._rules.next_deadline():
                try:
                    self._refresh(now)
                except Exception:  # the host's facts; the timer must go on regardless
                    logger.exception("refreshing the speeches' facts failed")
                self._feed(self._rules.tick(now))

    async def _turn_worker(self) -> None:
        while True:
            while not self._turns:
                await self._turn_lot.park()
            text, reply, waits = self._turns[0]
            for speech in waits:
                await self._host.wait_speech_done(speech)
            # Woken by a turn just as the session closes (run() cancelled): leave it to
            # take_unwritten_turns(), which writes it without a reply.
            await trio.lowlevel.checkpoint_if_cancelled()
            self._turns.popleft()
            key: Hashable | None = None
            try:
                key = self._host.commit_user_turn(text, reply=reply and not self._turns)
            except Exception:
                logger.exception("writing the user's turn failed: %r", text)
            now = trio.current_time()
            self._feed(self._rules.turn_committed(now, key))
            if key is not None:
                try:
                    self._report(now, key)
                except Exception:
                    logger.exception("reading the facts of the reply %r failed", key)
                self._drain()

    # -- rules in, actions out ---------------------------------------------------------------
    def _refresh(self, now: float) -> None:
        """Bring the rules' facts up to date before an input (protection may change quietly)."""
        keys = dict.fromkeys(self._rules.tracked_speeches())
        current = self._host.current_speech()
        if current is not None:
            keys[current] = None
        for speech in keys:
            self._report(now, speech)

    def _report(self, now: float, speech: Hashable) -> None:
        facts = self._host.speech_facts(speech)
        if facts == self._known.get(speech):
            return
        if facts.finished:
            self._known.pop(speech, None)
        else:
            self._known[speech] = facts
        self._actions.extend(self._rules.speech_update(now, speech, facts))

    def _resync(self, speech: Hashable) -> None:
        """After acting on ``speech``, tell the rules what really happened to it (the
        host may have refused, or the speech may have ended meanwhile)."""
        self._known.pop(speech, None)
        self._report(trio.current_time(), speech)

    def _feed(self, actions: list[Action]) -> None:
        self._actions.extend(actions)
        self._drain()

    def _drain(self) -> None:
        # Not re-entrant: a host that reports a change while we act appends to the queue.
        if self._draining:
            return
        self._draining = True
        try:
            while self._actions:
                self._act(self._actions.popleft())
        finally:
            self._draining = False
        if self._rules.next_deadline() != self._armed:
            self._timer_changed.set()

    def _act(self, action: Action) -> None:
        """Run one action; a host call that raises (a sink hook failing, say) is logged
        and the speech it concerned is resynced: the voice goes on, and the actions
        queued after this one still run now, not at some later, unrelated input."""
        try:
            self._do(action)
        except Exception:
            logger.exception("acting on %r failed; the user's voice goes on", action)
            speech = getattr(action, "speech", None)
            if speech is not None:
                try:
                    self._resync(speech)
                except Exception:
                    logger.exception("reading the facts of %r failed", speech)

    def _interrupt_instead(self, speech: Hashable, why: str) -> None:
        logger.exception("%s %r failed; interrupting it instead", why, speech)
        try:
            self._host.interrupt_speech(speech, "audio_activity")
        except InterruptionNotAllowed:
            logger.debug("%r became protected; not interrupted", speech)

    def _do(self, action: Action) -> None:
        host = self._host
        if isinstance(action, PauseAudio):
            try:
                if not host.pause_audio(action.speech):
                    logger.debug("pause of %r refused by the host", action.speech)
            except Exception:
                if action.provisional:  # a provisional pause: the audio just goes on
                    logger.exception("pausing %r failed; it keeps playing", action.speech)
                else:  # a barge-in on a sink that cannot pause now: as if it never could
                    self._interrupt_instead(action.speech, "pausing")
            self._resync(action.speech)
        elif isinstance(action, ResumeAudio):
            try:
                resumed = host.resume_audio(action.speech)
            except Exception:  # still paused, and nothing resumes it later: end it there
                resumed = False
                self._interrupt_instead(action.speech, "resuming")
            if action.false_interruption:
                speech: Any = action.speech  # a SpeechHandle in Session
                host.publish(FalseInterruption(speech, resumed, provisional=action.provisional))
            self._resync(action.speech)
        elif isinstance(action, ReleasePause):
            host.release_pause(action.speech)
        elif isinstance(action, InterruptSpeech):
            try:
                host.interrupt_speech(action.speech, action.source)
            except InterruptionNotAllowed:
                logger.debug("%r became protected; not interrupted by the user's voice", action.speech)
            self._resync(action.speech)
        elif isinstance(action, CompleteUserTurn):
            host.publish(UserTurnCompleted(action.text))
            try:
                waits = tuple(host.begin_user_turn())
            except Exception:  # the turn itself must not be lost
                logger.exception("interrupting the speeches before the user's turn failed")
                waits = ()
            self._turns.append((action.text, action.reply, waits))
            self._turn_lot.unpark_all()
        elif isinstance(action, UserStateChange):
            host.publish(UserStateChanged(action.old, action.new))
        elif isinstance(action, AgentStateChange):
            host.publish(AgentStateChanged(action.old, action.new))
        elif isinstance(action, TranscriptReceived):
            host.publish(UserInputTranscribed(action.text, action.final))


async def _aclose_bounded(iterator: AsyncIterator[Any], grace: float, what: str) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is None:
        return
    with trio.move_on_after(grace, shield=True) as scope:
        try:
            await aclose()
        except Exception:
            logger.exception("closing the %s failed", what)
    if scope.cancelled_caught:
        logger.warning("closing the %s took longer than %.3g s; left behind", what, grace)
