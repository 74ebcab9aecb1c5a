"""The pieces of one :meth:`PocketSphinxSTT.stream <trio_playout.sphinx.PocketSphinxSTT.stream>`.

Between the input and the worker process: whether the input's wait may be cancelled
(:func:`_cancel_safe`) and the race between its next frame and the worker's next
message (:func:`_first_frame_or_message`), the conversion of frames to the model's
16 kHz mono PCM (:class:`_ToModelRate`), and the worker's messages turned into
transcripts and typed errors (:class:`_Results`). Each is small and has no state
beyond one stream; the loop that uses them is in :mod:`trio_playout._sphinx_stt`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio

from ._audio import AudioFrame
from ._exceptions import ModelNotFoundError, SpeechEngineError
from ._input import Transcript
from ._resample import StreamResampler, float_to_pcm16, pcm16_to_float_mono
from ._sphinx_process import SAMPLE_RATE, _WorkerProcess

_END: Any = object()  # the input's end, from _first_frame_or_message
_IDLE: Any = object()  # no frame within its idle time


def _cancel_safe(frames: object) -> bool:
    """Whether waiting for ``frames``' next item may be cancelled without losing one.

    True of trio's memory channels and of the session's audio queue (its ``__anext__``
    takes a frame only after its last wait). An async generator is not: cancelling
    its ``__anext__`` ends it. Only such inputs let results through while the input
    is idle; others hand results on at their next frame.
    """
    from ._input import _FrameQueue  # already loaded with trio_playout

    return isinstance(frames, (trio.MemoryReceiveChannel, _FrameQueue)) or (
        getattr(type(frames), "cancel_safe", False) is True)


async def _first_frame_or_message(frames: AsyncIterator[AudioFrame], worker: _WorkerProcess,
                                  idle: float | None) -> AudioFrame | None:
    """The next frame (``_END`` at the input's end), None if a worker message came
    first, ``_IDLE`` if neither came within ``idle`` seconds (None: no limit).

    Both waits are cancel-safe, so the loser loses nothing; if both finish in the same
    tick, the frame is returned and the message stays queued in ``worker``.
    """
    got: list[AudioFrame] = []
    error: list[BaseException] = []
    async with trio.open_nursery() as nursery:

        async def frame() -> None:
            try:
                got.append(await frames.__anext__())
            except StopAsyncIteration:
                got.append(_END)
            except Exception as exc:  # raised below as it is, not in an ExceptionGroup
                error.append(exc)
            nursery.cancel_scope.cancel()

        async def message() -> None:
            await worker.wait_for_room_or_message(room=False)
            nursery.cancel_scope.cancel()

        nursery.start_soon(frame)
        nursery.start_soon(message)
        if idle is not None:
            nursery.cancel_scope.deadline = trio.current_time() + idle
    if error:
        raise error[0]
    if got:
        return got[0]
    return None if worker.has_message() else _IDLE


class _ToModelRate:
    """Frames at any rate and channel count to 16-bit mono PCM at the model's 16 kHz."""

    def __init__(self) -> None:
        self._resampler: StreamResampler | None = None
        self._rate = 0

    def __call__(self, frame: AudioFrame) -> bytes:
        if frame.sample_rate == SAMPLE_RATE and frame.num_channels == 1:
            return frame.data
        if frame.sample_rate != self._rate:
            # A new rate mid-stream starts a fresh resampler (loses < 1 ms of tail).
            self._rate = frame.sample_rate
            self._resampler = None if self._rate == SAMPLE_RATE else StreamResampler(self._rate, SAMPLE_RATE)
        samples = pcm16_to_float_mono(frame.data, frame.num_channels)
        return float_to_pcm16(self._resampler.push(samples) if self._resampler is not None else samples)


class _Results:
    """Turns the worker's messages into transcripts (and errors)."""

    def __init__(self) -> None:
        self.ended = False
        self.in_speech = False  # the worker's endpointer is in an utterance
        self._interim_sent = False

    def handle(self, message: dict[str, Any]) -> list[Transcript]:
        if "start" in message:
            self.in_speech = True
        if "final" in message:
            self.in_speech = False
            text = " ".join(str(message["final"]).split())
            retract = self._interim_sent
            self._interim_sent = False
            return [Transcript(text, True)] if text or retract else []
        if "partial" in message:
            self._interim_sent = True
            return [Transcript(str(message["partial"]), False)]
        if "error" in message:
            detail = message.get("message", "")
            if message["error"] == "load":
                raise ModelNotFoundError(f"PocketSphinx could not load its model: {detail}")
            raise SpeechEngineError(f"PocketSphinx failed: {detail}")
        if "exit" in message:
            code = message["exit"]
            if code != 0:
                raise SpeechEngineError(f"the PocketSphinx worker exited with code {code}")
            self.ended = True
        return []
