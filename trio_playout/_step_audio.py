"""One step's audio: LLM -> TTS -> sink, stopping it, and what history records.

:class:`_StepAudio` is the half of :class:`~trio_playout.Session` that plays one
reply step; the session (scheduling, supervisors, closing) inherits it. Split out
by responsibility: everything here runs inside one speech's supervisor task.

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

import logging
import math
import sys
from typing import TYPE_CHECKING

import trio

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

from ._audio import AudioOutput, PlaybackResult, PlaybackSegment
from ._history import ChatMessage, FunctionCall, FunctionCallOutput, History
from ._models import LLM, TTS, LLMRequest, TextDelta, ToolCall
from ._speech import SpeechHandle, _Step
from ._step import _aclosing, _ErrorsInto, _Playout, _Say, _Source, _split_sentences

if TYPE_CHECKING:
    from ._tool_runner import _ToolRunner
    from ._voice_host import _SessionVoice

logger = logging.getLogger("trio_playout.session")

# Less than this of a segment or a word is rounding in clock arithmetic (a clear one
# float step after a start), not audio: one sample at 48 kHz lasts 21 us.
_NOTHING_HEARD = 1e-6


def _sole(exc: BaseException) -> BaseException:
    """The one error inside nested single-member groups (a nursery wraps what it raises)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


class _StepAudio:
    """Plays one step of a speech and writes what was heard (see the module docstring)."""

    _llm: LLM
    _tts: TTS
    _output: AudioOutput
    _runner: _ToolRunner
    _voice: _SessionVoice
    history: History
    sink_grace: float

    def _finish_playout(self, speech: SpeechHandle, step: _Step) -> None:
        raise NotImplementedError  # the session's: it wakes the scheduler

    def _commit(self, speech: SpeechHandle, item: ChatMessage | FunctionCall | FunctionCallOutput) -> None:
        if speech.done():
            raise AssertionError(f"{speech.id} is done; refusing to write {item!r}")
        self.history._append(item)
        speech._chat_items.append(item)

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
