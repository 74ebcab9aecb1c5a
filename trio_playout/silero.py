"""The Silero voice-activity model, run with onnxruntime inside trio (extra ``vad``).

``pip install 'trio-playout[vad]'`` brings numpy, onnxruntime and the model file. The
model is the ``silero_vad.onnx`` (MIT) that the ``livekit-plugins-silero`` wheel ships;
it is found through that distribution's file list, without importing livekit (whose
package would pull in livekit-agents and asyncio machinery). Pass ``model_path=`` to
use another copy. Nothing is downloaded at run time.

Why inline on the trio thread: one 32 ms window costs about 0.12 ms of CPU (0.19 ms
with resampling from 48 kHz stereo), less than a thread hop: measured here, a call
through ``trio.to_thread`` took 0.25 ms at p50 and 4 ms at p99 against 0.14 and
0.21 ms inline. Inline also keeps the VAD deterministic under
``trio.testing.MockClock``: with a worker thread the clock would autojump while the
thread computes, and tests in virtual time would see the model take arbitrary time.
Run one conversation's VAD per task; ``python -m benchmarks.voice_cost`` measures
how many fit on a core in real time (200-250 on this 2 vCPU machine class in the
last runs, the load of other processes moving it; 288-384 with a batcher).

Batching (opt-in, :class:`SileroBatcher`): with many conversations in one process,
``SileroVAD(..., batcher=batcher)`` streams hand their windows to a batcher that
runs up to ``max_batch`` of them in one model call (about 35 us per window at 16
instead of about 77 us alone, the same probabilities to the bit), at the price of up
to ``max_wait`` (default 2 ms) more latency per window and a longer stall of the
trio thread per call (about 0.6 ms at 16). See :mod:`trio_playout._silero_batcher`.

Model I/O (read from the model itself, :class:`SileroModel`): ``input`` is a
``(1, context + window)`` float32 batch (512 samples plus the previous 64 at 16 kHz,
256 plus 32 at 8 kHz), ``state`` the ``(2, 1, 128)`` recurrent state carried from
window to window, ``sr`` the sample rate as an int64 scalar; ``output`` is the speech
probability of the window and ``stateN`` the next state.

Decisions (the rules in :class:`SpeechDetector`, pure Python):

- A window counts as speech when its probability is ``>= activation_threshold``,
  or, while speaking, ``> deactivation_threshold``. The gap between the two
  thresholds (hysteresis; default ``activation_threshold - 0.15``, floored at 0.01,
  as livekit) keeps a speech from flickering on a weak syllable.
- ``START_OF_SPEECH`` once consecutive speech windows add up to
  ``min_speech_duration``; ``END_OF_SPEECH`` once consecutive non-speech windows add
  up to ``min_silence_duration``.
- ``speech_duration`` is the *voiced* time: the speech windows (hysteresis
  included) since the start, never the silence. ``silence_duration`` is the run of
  non-speech windows since the last voiced one, inside a speech too.
  ``END_OF_SPEECH`` carries the voiced time of the speech that ended.
  **This differs from livekit's plugin**, whose ``speech_duration`` keeps growing
  through the trailing ``min_silence_duration`` until the end of speech (and whose
  ``silence_duration`` is 0 until then): there a 0.33 s "Hmm" reports about 0.9 s of
  speech, reaches ``min_interruption_duration`` (0.5 s) and pauses the agent. Here it
  reports 0.35 s (11 windows: Silero stays above the threshold ~50 ms past the last
  audible sample) and changes nothing; and the silence run lets a provisional pause
  (``TurnOptions.pause_on_speech_start``) resume after
  ``TurnOptions.provisional_resume_silence`` instead of waiting for the end of speech.
- How soon a start is reported (what ``pause_on_speech_start`` waits for): the
  start comes at the end of the second 32 ms window over the threshold
  (``min_speech_duration`` 0.05 rounds up to two windows), so 64 ms of voice plus
  the phase of the onset within its window, plus the microphone's frame (a window
  is analysed when the frame that completes it arrives). Measured on espeak speech
  in virtual time: 0.05-0.16 s after the first audible sample (median 0.09); the
  session's own share is about 0.1 ms. ``min_speech_duration=0.03`` (one window)
  would start ~32 ms sooner, but then a single loud window (a click, a plosive of
  someone else's speech) would pause the agent; the default stays livekit's 0.05.
  The end of a provisional pause does not wait for ``min_silence_duration``: it
  reads the silence run (``TurnOptions.provisional_resume_silence``, two windows).
- Probabilities are used raw. livekit also smooths them (exponential filter), which
  delays the start by a window or two; the ``min_speech_duration`` debounce already
  rejects clicks, and a 0.2 s burst of white noise scores below 0.1 on this model.
- Every window yields an ``INFERENCE`` event *after* any start or end it caused, so
  an ``INFERENCE`` always agrees with the last start/end event. Timestamps are the
  end of the window in seconds of audio since the stream started.
- Input at another rate is resampled (polyphase sinc, :mod:`trio_playout._resample`)
  and multi-channel input is averaged to mono. Audio left over at the end of the
  input (less than one window) is not analysed, and the end of the input does not
  invent an ``END_OF_SPEECH``.
"""

from __future__ import annotations

import importlib.metadata
import math
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import numpy as np
    import onnxruntime as ort  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        f"trio_playout.silero needs numpy and onnxruntime ({exc.name} is missing): "
        "pip install 'trio-playout[vad]'"
    ) from exc

import trio

from ._audio import AudioFrame
from ._exceptions import ModelNotFoundError, VoiceOptionsError
from ._input import VADEvent, VADEventType
from ._resample import FloatArray, StreamResampler, pcm16_to_float_mono
from ._silero_batcher import BatchedSileroModel, BatcherClosedError, SileroBatcher

__all__ = ["BatchedSileroModel", "BatcherClosedError", "ModelNotFoundError", "SileroBatcher", "SileroModel",
           "SileroVAD", "SpeechDetector", "VoiceOptionsError", "find_model", "new_session", "shared_session"]

MODEL_NAME = "silero_vad.onnx"
_DIST = "livekit-plugins-silero"
_GEOMETRY = {16000: (512, 64), 8000: (256, 32)}  # window, context


def find_model() -> Path:
    """The path of the ``silero_vad.onnx`` shipped by ``livekit-plugins-silero``.

    Looks in the distribution's installed file list (no import of livekit), then in
    ``livekit/plugins/silero/resources`` on ``sys.path``. Raises
    :class:`ModelNotFoundError` if neither has it.
    """
    try:
        dist = importlib.metadata.distribution(_DIST)
    except importlib.metadata.PackageNotFoundError:
        dist = None
    if dist is not None:
        for f in dist.files or ():
            if f.name == MODEL_NAME:
                path = Path(str(dist.locate_file(f)))
                if path.is_file():
                    return path
    for entry in sys.path:
        path = Path(entry or ".") / "livekit" / "plugins" / "silero" / "resources" / MODEL_NAME
        if path.is_file():
            return path
    raise ModelNotFoundError(
        f"{MODEL_NAME} not found: install it with pip install 'trio-playout[vad]' "
        f"(it ships in the {_DIST} wheel) or pass model_path="
    )


def new_session(model_path: str | Path | None = None) -> Any:
    """An onnxruntime ``InferenceSession`` for the model, tuned for many small calls.

    One intra-op and one inter-op thread, sequential execution and no spinning: a
    512-sample window is far too small to gain from parallelism, extra threads would
    only contend with the other conversations in the process, and spinning threads
    would burn a core between windows.
    """
    path = Path(model_path) if model_path is not None else find_model()
    if not path.is_file():
        raise ModelNotFoundError(f"Silero model file not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


_shared: dict[Path, Any] = {}
_shared_lock = threading.Lock()


def shared_session(model_path: str | Path | None = None) -> Any:
    """One :func:`new_session` per model file for the whole process.

    Sessions are safe to share (onnxruntime's ``run`` is thread-safe and each stream
    keeps its own state), and sharing matters: every session holds its own copy of
    the weights, and with one session per conversation the working set outgrows the
    CPU caches. Measured here with 32 conversations: about 120 us per window with
    one shared session, about 300 us with 32 sessions.
    """
    path = (Path(model_path) if model_path is not None else find_model()).resolve()
    with _shared_lock:
        session = _shared.get(path)
        if session is None:
            session = _shared[path] = new_session(path)
        return session


class SileroModel:
    """One stream's view of the model: call it with one window, get its probability.

    Synchronous and cheap (about 0.2 ms per window); it carries the recurrent state
    and the context samples between calls. Many models may share one session.
    """

    def __init__(self, session: Any, sample_rate: int = 16000) -> None:
        if sample_rate not in _GEOMETRY:
            raise VoiceOptionsError(f"Silero runs at 8000 or 16000 Hz, got sample_rate={sample_rate}")
        names = {i.name: i for i in session.get_inputs()}
        if not {"input", "state", "sr"} <= names.keys():
            raise ModelNotFoundError(f"not a Silero v5 model: inputs {sorted(names)}")
        self._session = session
        self.sample_rate = sample_rate
        self.window, self.context = _GEOMETRY[sample_rate]
        dims = [d if isinstance(d, int) else 1 for d in names["state"].shape]
        self._state_shape = tuple(dims)
        self._sr = np.array(sample_rate, dtype=np.int64)
        self._buf = np.zeros((1, self.context + self.window), dtype=np.float32)
        self._state = np.zeros(self._state_shape, dtype=np.float32)

    def reset(self) -> None:
        self._buf.fill(0.0)
        self._state = np.zeros(self._state_shape, dtype=np.float32)

    def __call__(self, window: FloatArray) -> float:
        """Probability of speech in ``window`` (exactly :attr:`window` float samples)."""
        self._buf[0, : self.context] = self._buf[0, self.window:]
        self._buf[0, self.context:] = window
        out, self._state = self._session.run(None, {"input": self._buf, "state": self._state, "sr": self._sr})
        return float(out.reshape(-1)[0])


@dataclass
class SpeechDetector:
    """The start/end rules over per-window probabilities (pure, no numpy, no trio).

    Feed :meth:`update` one probability per window; it returns the events of that
    window in order (a start or end first, then the ``INFERENCE``).

    What the events report (see the module docstring for why it differs from
    livekit's plugin): :attr:`speech_duration` is the *voiced* time of the current
    speech, the windows counted as speech (with the hysteresis) since its start,
    including the ones that made the start; the silence inside and after it is
    never added. :attr:`silence_duration` is the run of non-speech windows since the
    last voiced one: 0 on a voiced window, growing through a pause inside the
    speech, on through the end of speech and the silence after it (a click too
    short to start a speech does not reset it).
    """

    window_duration: float
    min_speech_duration: float = 0.05
    min_silence_duration: float = 0.55
    activation_threshold: float = 0.5
    deactivation_threshold: float = 0.35

    def __post_init__(self) -> None:
        self.speaking = False
        self.timestamp = 0.0
        self.speech_duration = 0.0  # reported: voiced time of the current speech (0 outside)
        self.silence_duration = 0.0  # reported: time since the last voiced window
        self._speech_run = 0.0  # consecutive speech windows outside speech (the start's debounce)
        self._windows = 0

    def update(self, probability: float) -> list[VADEvent]:
        win = self.window_duration
        self._windows += 1
        self.timestamp = self._windows * win
        events: list[VADEvent] = []
        if self.speaking:
            if probability > self.deactivation_threshold:  # >= activation implies it
                self.speech_duration += win
                self.silence_duration = 0.0
            else:
                self.silence_duration += win
                if self.silence_duration >= self.min_silence_duration - 1e-9:
                    events.append(VADEvent(VADEventType.END_OF_SPEECH, self.timestamp,
                                           self.speech_duration, self.silence_duration, probability))
                    self.speaking = False
                    self.speech_duration = 0.0
        else:
            self.silence_duration += win
            if probability >= self.activation_threshold:
                self._speech_run += win
                if self._speech_run >= self.min_speech_duration - 1e-9:
                    self.speaking = True
                    self.speech_duration = self._speech_run
                    self.silence_duration = 0.0
                    self._speech_run = 0.0
                    events.append(VADEvent(VADEventType.START_OF_SPEECH, self.timestamp,
                                           self.speech_duration, 0.0, probability))
            else:
                self._speech_run = 0.0
        events.append(VADEvent(VADEventType.INFERENCE, self.timestamp, self.speech_duration,
                               self.silence_duration, probability))
        return events


def _check_duration(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise VoiceOptionsError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _check_probability(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 < value <= 1.0:
        raise VoiceOptionsError(f"{name} must be in (0, 1], got {value!r}")
    return float(value)


def _check_batcher(batcher: SileroBatcher, sample_rate: int, model_path: str | Path | None,
                   share_session: bool) -> None:
    if not isinstance(batcher, SileroBatcher):
        raise VoiceOptionsError(f"batcher must be a SileroBatcher, got {type(batcher).__name__}")
    if not share_session:
        raise VoiceOptionsError("share_session=False and batcher= exclude each other: "
                                "a batcher runs every stream in its one session")
    if sample_rate != batcher.sample_rate:
        raise VoiceOptionsError(f"sample_rate={sample_rate} but the batcher runs the model at "
                                f"{batcher.sample_rate} Hz: give each rate its own SileroBatcher")
    path = (Path(model_path) if model_path is not None else find_model()).resolve()
    if path != batcher.model_path:
        raise VoiceOptionsError(f"model file {path} but the batcher runs {batcher.model_path}: "
                                "give each model file its own SileroBatcher")


class SileroVAD:
    """The :class:`~trio_playout.VAD` protocol with the Silero model (livekit's defaults).

    ``sample_rate`` is the rate the model runs at (16000 or 8000); frames at any
    other rate are resampled to it. ``deactivation_threshold`` defaults to
    ``max(activation_threshold - 0.15, 0.01)``. Each :meth:`stream` gets its own
    model state, so one ``SileroVAD`` can serve many conversations; and all
    ``SileroVAD`` objects of a process share one onnxruntime session per model file
    (:func:`shared_session`) unless ``share_session=False``. Bad options raise
    :class:`VoiceOptionsError` (a ``ValueError``); a missing model raises
    :class:`ModelNotFoundError`.

    ``batcher``: a :class:`SileroBatcher` to run the streams' windows in shared model
    calls (opt-in; up to its ``max_wait`` more latency per window). It must run the
    same model file at the same ``sample_rate`` (else :class:`VoiceOptionsError`),
    and it must be running while the streams run (else they raise
    :class:`BatcherClosedError`). Without one, each window runs inline, alone.
    """

    def __init__(
        self,
        *,
        min_speech_duration: float = 0.05,
        min_silence_duration: float = 0.55,
        activation_threshold: float = 0.5,
        deactivation_threshold: float | None = None,
        sample_rate: int = 16000,
        model_path: str | Path | None = None,
        share_session: bool = True,
        batcher: SileroBatcher | None = None,
    ) -> None:
        self.min_speech_duration = _check_duration("min_speech_duration", min_speech_duration)
        self.min_silence_duration = _check_duration("min_silence_duration", min_silence_duration)
        self.activation_threshold = _check_probability("activation_threshold", activation_threshold)
        if deactivation_threshold is None:
            deactivation_threshold = max(self.activation_threshold - 0.15, 0.01)
        self.deactivation_threshold = _check_probability("deactivation_threshold", deactivation_threshold)
        if self.deactivation_threshold > self.activation_threshold:
            raise VoiceOptionsError(
                f"deactivation_threshold ({deactivation_threshold}) must not exceed "
                f"activation_threshold ({activation_threshold})")
        if sample_rate not in _GEOMETRY:
            raise VoiceOptionsError(
                f"sample_rate must be 8000 or 16000 (the model's rates), got {sample_rate!r}")
        self.sample_rate = sample_rate
        self.batcher = batcher
        if batcher is not None:
            _check_batcher(batcher, sample_rate, model_path, share_session)
            self._session = batcher._session
        else:
            self._session = shared_session(model_path) if share_session else new_session(model_path)

    @property
    def window_duration(self) -> float:
        """Seconds of audio per model window (0.032)."""
        return _GEOMETRY[self.sample_rate][0] / self.sample_rate

    def detector(self) -> SpeechDetector:
        return SpeechDetector(self.window_duration, self.min_speech_duration, self.min_silence_duration,
                              self.activation_threshold, self.deactivation_threshold)

    async def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[VADEvent]:
        batched = self.batcher.model() if self.batcher is not None else None
        model = SileroModel(self._session, self.sample_rate) if batched is None else None
        size = _GEOMETRY[self.sample_rate][0]
        detector = self.detector()
        resampler: StreamResampler | None = None
        in_rate = 0
        pending: FloatArray = np.zeros(0, dtype=np.float32)
        async for frame in frames:
            if frame.sample_rate != in_rate:
                # A new rate mid-stream starts a fresh resampler (loses < 1 ms of tail).
                in_rate = frame.sample_rate
                rate = self.sample_rate
                resampler = None if in_rate == rate else StreamResampler(in_rate, rate)
            samples = pcm16_to_float_mono(frame.data, frame.num_channels)
            if resampler is not None:
                samples = resampler.push(samples)
            pending = np.concatenate([pending, samples]) if len(pending) else samples
            start = 0
            count = 0
            while len(pending) - start >= size:
                if model is not None:
                    if count and count % 16 == 0:
                        # A long frame: let other tasks run between windows.
                        await trio.lowlevel.checkpoint()
                    probability = model(pending[start:start + size])
                else:  # batched: waits for its batch (a checkpoint every window)
                    assert batched is not None
                    probability = await batched(pending[start:start + size])
                start += size
                count += 1
                for event in detector.update(probability):
                    yield event
            pending = pending[start:]
