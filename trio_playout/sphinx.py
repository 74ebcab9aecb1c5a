"""Offline speech to text with PocketSphinx, for trio (extra ``sphinx``; BSD).

``pip install 'trio-playout[sphinx]'`` brings the ``pocketsphinx`` wheel, which ships
a US English acoustic model, a 130k-word pronunciation dictionary and a trigram
language model. :class:`PocketSphinxSTT` uses them as they are: nothing is
downloaded, ever. It is a weak recognizer next to today's neural ones (it was made
for natural speech and hears synthetic speech worse), but it is real, free, small
and runs anywhere: the default STT of the offline demo.

**Where it runs.** The ``pocketsphinx`` bindings keep the GIL while they decode:
measured here, a thread decoding 14 s of speech let the main thread run twice in
2.8 s. A decoder in a thread would freeze trio's event loop for the length of every
decode call (tens of ms per chunk, hundreds at the end of an utterance), ruining
interrupt latency. So each :meth:`PocketSphinxSTT.stream` runs its decoder in a
worker process (:mod:`trio_playout._sphinx_worker`, standard library plus
``pocketsphinx`` only) fed through a pipe. In the parent, two small daemon threads
move bytes to and from the pipe; they release the GIL while they wait, and hand
results to trio with ``run_sync_soon``. The event loop never waits for the decoder.

**Segmenting.** Utterances are cut by PocketSphinx's own endpointer (its WebRTC-style
VAD over 30 ms frames; speech starts when ``endpoint_ratio`` of an
``endpoint_window`` is voiced and ends when that much is not). It is built for
exactly this decoder, costs microseconds per frame, keeps a window of audio before
the start so no onset is lost, and needs no threshold tuned to the input's level,
which an energy detector would. The decoder only ever sees speech, which also keeps
its running cepstral normalization on speech. The session's VAD (e.g. Silero) is a
separate thing: it drives barge-in; this endpointer only decides what to decode.
Each utterance gives one final :class:`~trio_playout.Transcript`; with
``interim_results=True`` also interim ones (the decoder's best guess so far, cheap:
about 0.05 ms each) every ``interim_every`` seconds of speech. An utterance that
ends with no words after interim results gives an empty final, which retracts them.

**When results arrive.** :meth:`stream` is an async generator consumed by one task,
and holds no nursery across its ``yield``: results that the worker reported are
yielded when the next frame arrives (a live microphone sends one every 10-20 ms)
and, at the end of the input, once the worker has finished. A final comes after
the endpointer's silence (``endpoint_window`` 0.3 s by default) plus whatever the
worker still had to decode.

**Time.** Under ``trio.testing.MockClock(autojump_threshold=0)`` the clock jumps
while the worker decodes, so a paced input in virtual time runs ahead of it; the
transcripts and their order do not depend on timing (the endpointer and the decoder
are deterministic for given audio). Assert on them, not on when they came.

**Cost** (``python -m benchmarks.sphinx_cost``, 2 vCPU AMD EPYC, 24 s of speech):
each stream starts one process, ready in about 0.32 s (0.35 s of CPU to load the
model; audio sent meanwhile is queued), about 105 MB resident. Decoding costs 0.15-0.17
s of CPU per second of audio (real-time factor), on the worker's core. A final comes
0.53-0.68 s after the end of its audio (p50 0.59 s), paced like a microphone: the
endpointer's 0.3 s window plus the decoder's last passes. Meanwhile trio's loop stays
free: a 1 ms sleeper woke at most 4-5 ms late (p99 0.4-0.5 ms), against 172 ms
(p99 22 ms) with the same decoding in a thread of this process. Closing or
cancelling a stream kills its worker at once (even mid-decode) and waits for its two
threads to end (milliseconds): nothing is left running.

Input at any sample rate and channel count is averaged to mono and resampled to the
model's 16 kHz (:mod:`trio_playout._resample`). Bad options raise
:class:`VoiceOptionsError`, missing model files :class:`ModelNotFoundError` (both at
construction); a model the decoder cannot load raises :class:`ModelNotFoundError`
and a worker that fails or dies :class:`SpeechEngineError`, from the stream.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

if importlib.util.find_spec("pocketsphinx") is None:  # pragma: no cover - only without the extra
    raise ImportError("trio_playout.sphinx needs pocketsphinx: pip install 'trio-playout[sphinx]'")

import trio

from ._audio import AudioFrame
from ._exceptions import ModelNotFoundError, SpeechEngineError, VoiceOptionsError
from ._input import Transcript
from ._resample import StreamResampler, float_to_pcm16, pcm16_to_float_mono

__all__ = ["ModelNotFoundError", "PocketSphinxSTT", "SpeechEngineError", "VoiceOptionsError",
           "default_model"]

SAMPLE_RATE = 16000  # the shipped acoustic model's rate
_FRAME = 0.03  # the endpointer's frame at 16 kHz
_HEADER = struct.Struct("<cI")
_WORKER = Path(__file__).with_name("_sphinx_worker.py")
# Run the worker file by path (not ``-m``): importing the trio_playout package in every
# worker would cost time for nothing. Drop the ``-c`` entry ('' = cwd) from sys.path first.
_BOOT = "import sys, runpy; del sys.path[0]; runpy.run_path(sys.argv[1], run_name='__main__')"


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
    streams; each :meth:`stream` starts its own worker process (see the module).
    :attr:`running_workers` counts the streams whose worker or threads are alive.
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
        """Transcribe ``frames``: one final per utterance, in order (see the module)."""
        worker = _WorkerProcess(self)
        state = _Results()
        try:
            worker.send(b"C", self._config())
            resampler: StreamResampler | None = None
            in_rate = 0
            async for frame in frames:
                if frame.sample_rate == SAMPLE_RATE and frame.num_channels == 1:
                    pcm = frame.data
                else:
                    if frame.sample_rate != in_rate:
                        # A new rate mid-stream starts a fresh resampler (loses < 1 ms of tail).
                        in_rate = frame.sample_rate
                        resampler = None if in_rate == SAMPLE_RATE else StreamResampler(in_rate, SAMPLE_RATE)
                    samples = pcm16_to_float_mono(frame.data, frame.num_channels)
                    pcm = float_to_pcm16(resampler.push(samples) if resampler is not None else samples)
                if pcm:
                    worker.send(b"A", pcm)
                while True:
                    try:
                        message = worker.results.receive_nowait()
                    except trio.WouldBlock:
                        break
                    for transcript in state.handle(message):
                        yield transcript
            worker.send(b"E", b"")
            worker.end_input()
            async for message in worker.results:
                for transcript in state.handle(message):
                    yield transcript
            if not state.ended:
                raise SpeechEngineError("the PocketSphinx worker ended without reporting")
        finally:
            await worker.close()


class _Results:
    """Turns the worker's messages into transcripts (and errors)."""

    def __init__(self) -> None:
        self.ended = False
        self._interim_sent = False

    def handle(self, message: dict[str, Any]) -> list[Transcript]:
        if "final" in message:
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


class _WorkerProcess:
    """One worker process and the two threads that talk to it.

    The writer thread drains an unbounded queue into the worker's stdin, so sending
    never blocks trio (the backlog is the audio the worker has yet to decode). The
    reader thread turns stdout lines into messages on :attr:`results`, and reports
    the exit code last (``{"exit": code}``).
    """

    def __init__(self, owner: PocketSphinxSTT) -> None:
        self._owner = owner
        self._token = trio.lowlevel.current_trio_token()
        self._send, self.results = trio.open_memory_channel[dict[str, Any]](math.inf)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self.done = trio.Event()
        self._threads = 2
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(_WORKER)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise SpeechEngineError(f"cannot start the PocketSphinx worker: {exc}") from exc
        owner.running_workers += 1
        pid = self.proc.pid
        self._thread_objects = [
            threading.Thread(target=self._write_loop, name=f"sphinx-writer-{pid}", daemon=True),
            threading.Thread(target=self._read_loop, name=f"sphinx-reader-{pid}", daemon=True)]
        for thread in self._thread_objects:
            thread.start()

    def send(self, kind: bytes, payload: bytes) -> None:
        self._outbox.put(_HEADER.pack(kind, len(payload)) + payload)

    def end_input(self) -> None:
        self._outbox.put(None)  # the writer closes stdin after what is queued

    async def close(self) -> None:
        """Kill the worker unless it has exited, and wait for both threads (shielded)."""
        self._outbox.put(None)
        if self.proc.poll() is None:
            self.proc.kill()  # abandons a decode in progress; the worker holds nothing shared
        with trio.CancelScope(shield=True):
            await self.done.wait()
        for thread in self._thread_objects:
            thread.join()  # each has posted its last call: only its return is left
        self.results.close()

    # -- worker threads (must never raise) ----------------------------------------------------
    def _post(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    def _deliver(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            self._send.send_nowait(message)

    def _thread_ended(self) -> None:
        self._threads -= 1
        if self._threads == 0:
            self._send.close()
            self._owner.running_workers -= 1
            self.done.set()

    def _write_loop(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (item := self._outbox.get()) is not None:
                stdin.write(item)
        except (OSError, ValueError):
            pass  # the worker died or was killed: the reader reports it
        finally:
            with contextlib.suppress(OSError):
                stdin.close()
            self._post(self._thread_ended)

    def _read_loop(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {"error": "decode", "message": f"unreadable worker output {line[:80]!r}"}
                self._post(self._deliver, message)
        except (OSError, ValueError):
            pass
        finally:
            stdout.close()
            self._post(self._deliver, {"exit": self.proc.wait()})
            self._post(self._thread_ended)
