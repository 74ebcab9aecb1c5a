"""The session's side of the user's voice: the :class:`~._voice.VoiceHost` of a Session.

:class:`_SessionVoice` turns the session's speeches into the facts the turn rules
reason about and carries out their decisions on the session's own objects: the
sink's ``pause()``/``resume()``, ``SpeechHandle.interrupt()``, ``generate_reply()``.
Every check that the rules make is made again here, at the moment of acting, so a
decision taken a moment earlier can never land on a speech that is done, was
interrupted, or is no longer the one playing (livekit's stale-resume race).

It also keeps ``agent_state`` for a session without audio input (``idle`` or
``speaking``), so ``Session.agent_state`` and its events are true in both kinds of
session.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Hashable, Sequence
from typing import TYPE_CHECKING

import trio

from ._audio import AudioFrame, AudioOutput
from ._events import AgentStateChanged, EventBroadcaster, SessionEvent
from ._exceptions import PauseNotSupported
from ._history import ChatMessage
from ._input import STT, VAD
from ._speech import SpeechHandle
from ._turn import AgentState, SpeechFacts, TurnOptions, UserState, agent_state
from ._voice import VoiceDriver

if TYPE_CHECKING:
    from ._session import Session

__all__: list[str] = []

logger = logging.getLogger("trio_playout.voice")


class _SessionVoice:
    """One per session: its events, its states and, with audio input, its voice driver."""

    def __init__(self, session: Session, output: AudioOutput, events: EventBroadcaster) -> None:
        self._session = session
        self._output = output
        self._events = events
        self.driver: VoiceDriver | None = None
        self._paused_by: SpeechHandle | None = None  # the speech whose audio we paused
        self._running = False
        self._stopped = trio.Event()  # run() has returned
        self._agent_state: AgentState = "idle"

    # -- states ------------------------------------------------------------------------------
    @property
    def user_state(self) -> UserState:
        return self.driver.user_state if self.driver is not None else "listening"

    @property
    def agent_state(self) -> AgentState:
        return self.driver.agent_state if self.driver is not None else self._agent_state

    def changed(self, speech: SpeechHandle) -> None:
        """The session's notice that ``speech`` was authorized, made its first sound,
        finished a step's audio, was interrupted or is done. Synchronous."""
        if self.driver is not None:
            self.driver.speech_changed(speech)
            return
        current = self._session._current
        playing = current is not None and self._playing(current) and not self._output.paused
        new = agent_state(has_audio_input=False, audio_playing=playing, thinking=False)
        if new != self._agent_state:
            old, self._agent_state = self._agent_state, new
            self._events.publish(AgentStateChanged(old, new))

    def before_first_frame(self, speech: SpeechHandle) -> None:
        """A step of ``speech`` is about to give the sink its first frame.

        Who owns the sink's pause: in a session that hears the user (``audio_input``)
        the session does. It pauses and resumes for barge-ins and false interruptions,
        and un-pauses the sink here, before each reply's first frame, whoever paused it
        (a pause left over from a speech that is over must not hold this one); an
        application that wants to hold the agent back there should not schedule the
        reply yet. Without audio input the session never pauses nor resumes the sink:
        a pause is the application's, and it holds the reply back until the
        application resumes (``AudioOutput.pause``).
        """
        if self.driver is not None and self._output.paused and self._paused_by is not speech:
            self._output.resume()
            self._paused_by = None
        speech._steps[-1].audio_started = True
        self.changed(speech)  # the rules may pause it now, before the frame is heard

    async def run(self, audio_input: AsyncIterable[AudioFrame], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        assert self.driver is not None
        self._running = True
        try:
            await self.driver.run(audio_input, task_status=task_status)
        finally:
            self._stopped.set()

    async def wait_stopped(self) -> None:
        """After the session cancelled :meth:`run`: wait until its tasks are gone, so no
        step of theirs that was already under way can act after this. Bounded: the
        driver closes its streams within ``close_timeout`` (twice that is allowed for)."""
        if self.driver is None or not self._running:
            return
        with trio.move_on_after(2 * self.driver.close_timeout):
            await self._stopped.wait()

    def write_unwritten_turns(self) -> None:
        """Closing: the user's completed turns that were never committed, and final
        text still waiting for its endpoint, are written now, without a reply, after
        the speeches they waited for (all done by now): what the user said is never
        lost, and stays after what was heard before it."""
        if self.driver is None:
            return
        for text in self.driver.take_unwritten_turns():
            logger.info("session closing: writing the user's last turn without a reply: %r", text)
            self._session.history._append(ChatMessage("user", text))

    # -- VoiceHost ---------------------------------------------------------------------------
    def _playing(self, speech: SpeechHandle) -> bool:
        step = speech._steps[-1]
        return step.audio_started and not step.playout_done.is_set()

    def _is_live_current(self, speech: Hashable) -> bool:
        return (isinstance(speech, SpeechHandle) and speech is self._session._current
                and not speech.done() and not speech.interrupted)

    def current_speech(self) -> Hashable | None:
        return self._session._current

    def speech_facts(self, speech: Hashable) -> SpeechFacts:
        if (not isinstance(speech, SpeechHandle) or speech.done() or speech.interrupted
                or speech not in self._session._live):
            return SpeechFacts(finished=True)
        return SpeechFacts(
            interruptible=speech.allow_interruptions,
            playing=speech is self._session._current and self._playing(speech),
            pausable=self._output.can_pause,
        )

    def pause_audio(self, speech: Hashable) -> bool:
        if not self._is_live_current(speech) or not self._output.can_pause:
            return False
        assert isinstance(speech, SpeechHandle)
        try:
            self._output.pause()
        except PauseNotSupported:
            return False
        self._paused_by = speech
        return True

    def resume_audio(self, speech: Hashable) -> bool:
        if (not self._is_live_current(speech) or self._paused_by is not speech
                or not self._output.paused):
            return False
        self._output.resume()
        self._paused_by = None
        return True

    def release_pause(self, speech: Hashable) -> None:
        if self._paused_by is not speech:
            return
        self._paused_by = None
        if self._output.paused:
            # An interrupt's clear has already un-paused the sink; this is the case of
            # a speech that became protected while paused: it must not stay silent.
            self._output.resume()

    def interrupt_speech(self, speech: Hashable, source: str) -> None:
        if isinstance(speech, SpeechHandle) and not speech.done():
            speech.interrupt(source=source)

    def begin_user_turn(self) -> Sequence[Hashable]:
        waits: list[Hashable] = []
        for speech in list(self._session._live):
            if speech.done():
                continue
            if not speech.interrupted and speech.allow_interruptions:
                try:
                    speech.interrupt(source="user_turn")
                except Exception:  # a sink's clear failing must not cost the others theirs
                    logger.exception("interrupting %s for the user's turn failed", speech.id)
            waits.append(speech)
        return waits

    async def wait_speech_done(self, speech: Hashable) -> None:
        assert isinstance(speech, SpeechHandle)
        await speech._done.wait()

    def commit_user_turn(self, text: str, *, reply: bool) -> Hashable | None:
        if reply:
            return self._session.generate_reply(user_input=text)
        self._session._check_open()
        self._session.history._append(ChatMessage("user", text))
        return None

    def publish(self, event: SessionEvent) -> None:
        self._events.publish(event)


def _check_voice(audio_input: AsyncIterable[AudioFrame] | None, vad: VAD | None, stt: STT | None,
                 turn: TurnOptions | None) -> None:
    """Bad voice options fail at ``open_session``, before anything runs."""
    if turn is not None and not isinstance(turn, TurnOptions):
        raise TypeError(f"turn must be a TurnOptions, got {type(turn).__name__}")
    if vad is not None and not isinstance(vad, VAD):
        raise TypeError(f"vad must implement trio_playout.VAD (a stream(frames) method), "
                        f"got {type(vad).__name__}")
    if stt is not None and not isinstance(stt, STT):
        raise TypeError(f"stt must implement trio_playout.STT (a stream(frames) method), "
                        f"got {type(stt).__name__}")
    if audio_input is None:
        if vad is not None or stt is not None:
            raise ValueError("a vad or stt needs audio_input (the user's microphone) to listen to")
        return
    if not isinstance(audio_input, AsyncIterable):
        raise TypeError(f"audio_input must be an async iterable of AudioFrame, "
                        f"got {type(audio_input).__name__}")
    if vad is None and stt is None:
        raise ValueError("audio_input needs a vad, an stt or both to be heard")
