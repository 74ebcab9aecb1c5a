"""PocketSphinxSTT, its options and its stream loop (public in :mod:`trio_playout.sphinx`).

:func:`default_model` finds the model the ``pocketsphinx`` wheel ships, without
importing it; :class:`PocketSphinxSTT` checks its options at construction and runs
each stream: it feeds the input to a worker process (:mod:`trio_playout._sphinx_process`)
and hands on the transcripts made of its messages (:mod:`trio_playout._sphinx_stream`).
How and why it works this way is told in :mod:`trio_playout.sphinx`.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import AsyncIterator
from pathlib import Path

from ._audio import AudioFrame
from ._exceptions import ModelNotFoundError, SpeechEngineError, VoiceOptionsError
from ._input import Transcript
from ._sphinx_process import SAMPLE_RATE, _WorkerProcess
from ._sphinx_stream import _END, _IDLE, _cancel_safe, _first_frame_or_message, _Results, _ToModelRate

_FRAME = 0.03  # the endpointer's frame at 16 kHz


def default_model() -> tuple[Path, Path, Path]:
    """The (acoustic model dir, language model, dictionary) the ``pocketsphinx`` wheel ships.

    Found from the package's location without importing it. Raises
    :class:`ModelNotFoundError` when the package or its model files are missing.
    """
    spec = importlib.util.find_spec("pocketsphinx")
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    for location in locations:
        base = Path(location) / "model" / "en-us"
        paths = base / "en-us", base / "en-us.lm.bin", base / "cmudict-en-us.dict"
        if all(p.exists() for p in paths):
            return paths
    raise ModelNotFoundError("the en-us model of the pocketsphinx wheel was not found: "
                             "pip install 'trio-playout[sphinx]' or pass hmm=, lm= and dictionary=")


def _check_path(name: str, value: str | Path, *, directory: bool) -> Path:
    if not isinstance(value, (str, Path)) or not str(value):
        raise VoiceOptionsError(f"{name} must be a path, got {value!r}")
    path = Path(value)
    if directory and not (path / "mdef").is_file():
        raise ModelNotFoundError(f"{name}: no PocketSphinx acoustic model (mdef) in {path}")
    if not directory and not path.is_file():
        raise ModelNotFoundError(f"{name}: file not found: {path}")
    return path


def _check_seconds(name: str, value: float, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and lo <= value <= hi):
        raise VoiceOptionsError(f"{name} must be a number of seconds in [{lo}, {hi}], got {value!r}")
    return float(value)


class PocketSphinxSTT:
    """The :class:`~trio_playout.STT` protocol with PocketSphinx, offline (extra ``sphinx``).

    ``hmm``, ``lm`` and ``dictionary`` default to the en-us model in the wheel
    (:func:`default_model`). ``endpoint_window`` (seconds, 0.06-10) and
    ``endpoint_ratio`` (0-1, exclusive) set the endpointer: speech starts once that
    share of a window is voiced and ends once that share is not; ``vad_mode`` is its
    aggressiveness, 0 (loose, the default) to 3 (strict). ``max_utterance_duration``
    cuts a longer utterance into several finals. ``fwdflat`` keeps PocketSphinx's
    second (flat-lexicon) search pass at the end of each utterance, its default:
    ``False`` makes each final come 100-250 ms sooner (measured here: ``end_utt``
    took 3-32 ms instead of 98-281 ms on the test sentences) for slightly more errors
    (average WER over six renderings 0.319 instead of 0.303). One object can serve many
    streams; each :meth:`stream` starts its own worker process (see :mod:`trio_playout.sphinx`).
    :attr:`running_workers` counts the streams whose worker or threads are alive.
    ``max_backlog`` (seconds, 0.02-600) bounds the audio held for a worker that falls
    behind; ``idle_silence`` (seconds, 0.02-60, or None, the default: never) is how
    long an idle input mid-utterance takes to count as silence (see :mod:`trio_playout.sphinx`).
    """

    def __init__(
        self,
        *,
        hmm: str | Path | None = None,
        lm: str | Path | None = None,
        dictionary: str | Path | None = None,
        endpoint_window: float = 0.3,
        endpoint_ratio: float = 0.9,
        vad_mode: int = 0,
        interim_results: bool = False,
        interim_every: float = 0.3,
        max_utterance_duration: float = 30.0,
        fwdflat: bool = True,
        max_backlog: float = 2.0,
        idle_silence: float | None = None,
    ) -> None:
        self.endpoint_window = _check_seconds("endpoint_window", endpoint_window, 0.06, 10.0)
        if isinstance(endpoint_ratio, bool) or not isinstance(endpoint_ratio, (int, float)) or not (
                0.0 < endpoint_ratio < 1.0):
            raise VoiceOptionsError(f"endpoint_ratio must be in (0, 1), got {endpoint_ratio!r}")
        self.endpoint_ratio = float(endpoint_ratio)
        # The endpointer's own rule (ps_endpointer.c): both counts within (0, window frames).
        frames = int(self.endpoint_window / _FRAME + 0.5)
        start_frames = int(self.endpoint_ratio * frames)
        end_frames = int((1.0 - self.endpoint_ratio) * frames + 0.5)
        if not (0 < start_frames < frames and 0 < end_frames < frames):
            raise VoiceOptionsError(
                f"endpoint_ratio {endpoint_ratio} of a {endpoint_window} s window ({frames} frames of "
                f"{_FRAME} s) leaves no frame to start or to end on; widen the window or change the ratio")
        if isinstance(vad_mode, bool) or not isinstance(vad_mode, int) or not 0 <= vad_mode <= 3:
            raise VoiceOptionsError(f"vad_mode must be an integer in [0, 3], got {vad_mode!r}")
        self.vad_mode = vad_mode
        if not isinstance(interim_results, bool):
            raise VoiceOptionsError(f"interim_results must be a bool, got {interim_results!r}")
        self.interim_results = interim_results
        self.interim_every = _check_seconds("interim_every", interim_every, 0.0, 60.0)
        if not isinstance(fwdflat, bool):
            raise VoiceOptionsError(f"fwdflat must be a bool, got {fwdflat!r}")
        self.fwdflat = fwdflat
        self.max_utterance_duration = _check_seconds("max_utterance_duration", max_utterance_duration,
                                                     1.0, 3600.0)
        self.max_backlog = _check_seconds("max_backlog", max_backlog, 0.02, 600.0)
        self.idle_silence = None if idle_silence is None else _check_seconds(
            "idle_silence", idle_silence, 0.02, 60.0)
        if hmm is None or lm is None or dictionary is None:
            d_hmm, d_lm, d_dict = default_model()
            hmm = d_hmm if hmm is None else hmm
            lm = d_lm if lm is None else lm
            dictionary = d_dict if dictionary is None else dictionary
        self.hmm = _check_path("hmm", hmm, directory=True)
        self.lm = _check_path("lm", lm, directory=False)
        self.dictionary = _check_path("dictionary", dictionary, directory=False)
        self.running_workers = 0

    def _config(self) -> bytes:
        return json.dumps({
            "hmm": str(self.hmm), "lm": str(self.lm), "dict": str(self.dictionary),
            "window": self.endpoint_window, "ratio": self.endpoint_ratio, "vad_mode": self.vad_mode,
            "interim": self.interim_results, "interim_every": self.interim_every,
            "max_utterance": self.max_utterance_duration, "fwdflat": self.fwdflat,
        }).encode()

    async def stream(self, frames: AsyncIterator[AudioFrame]) -> AsyncIterator[Transcript]:
        """Transcribe ``frames``: one final per utterance, in order (see :mod:`trio_playout.sphinx`)."""
        worker = _WorkerProcess(self)
        state = _Results()
        race = _cancel_safe(frames)
        to_pcm = _ToModelRate()
        try:
            worker.send(b"C", self._config())
            while True:
                for message in worker.take():
                    for transcript in state.handle(message):
                        yield transcript
                if state.ended or worker.done.is_set():
                    raise SpeechEngineError("the PocketSphinx worker ended before its input did")
                if worker.full():
                    # The worker is max_backlog behind: read no more input until it catches
                    # up (the session's own queue drops the oldest audio meanwhile).
                    await worker.wait_for_room_or_message()
                    continue
                if race:
                    idle = self.idle_silence if state.in_speech else None
                    frame = await _first_frame_or_message(frames, worker, idle)
                    if frame is _IDLE and idle is not None:
                        # No input for idle_silence mid-utterance (DTX, a muted client):
                        # that time was silence, so the endpointer can end the utterance.
                        worker.send(b"A", bytes(2 * round(idle * SAMPLE_RATE)))
                    if frame is None or frame is _IDLE:
                        continue  # a message (or the worker's end) came first; no frame taken
                else:
                    try:
                        frame = await frames.__anext__()
                    except StopAsyncIteration:
                        frame = _END
                if frame is _END:
                    break
                pcm = to_pcm(frame)
                if pcm:
                    worker.send(b"A", pcm)
            worker.send(b"E", b"")
            worker.end_input()
            while (last := await worker.next_message()) is not None:
                for transcript in state.handle(last):
                    yield transcript
            if not state.ended:
                raise SpeechEngineError("the PocketSphinx worker ended without reporting")
        finally:
            await worker.close()
