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

**When results arrive.** :meth:`stream` is an async generator and holds no nursery
across its ``yield``. On an input whose wait can be cancelled without losing a frame
(the session's audio queue, a trio memory channel, or a class that sets
``cancel_safe = True``) it waits for a frame or a result, whichever comes first, so
a final is handed on even while the input sends nothing. An input that sends
nothing *instead of* silence (discontinuous transmission, a client that mutes)
needs ``idle_silence``: no frame for that long mid-utterance tells the worker that
time was silence, so the utterance ends. It is off by default: on a loaded machine
a live input's frames can come late in a burst (seen here in the browser tests, at
0.5 s), and that gap would be taken for silence and cut the utterance. The
session's usual inputs (the web page, livekit rooms) send audio all the time.
Any other input (an async generator: cancelling its ``__anext__`` would end it) has
its results handed on at its next frame (a live microphone sends one every 10-20 ms)
and at its end. A final comes after the endpointer's silence (``endpoint_window``
0.3 s by default) plus whatever the worker still had to decode.

**Backlog.** The parent holds at most ``max_backlog`` seconds (2 by default) of audio
the worker has not taken (plus the pipe's 64 KiB, 2 s): beyond that the stream stops
reading its input until the worker catches up. Nothing is lost inside the STT; in a
session the STT's audio queue (``stt_buffer``) then drops its oldest audio and logs it.

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
import struct
import subprocess
import sys
import threading
from collections import deque
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
    ``max_backlog`` (seconds, 0.02-600) bounds the audio held for a worker that falls
    behind; ``idle_silence`` (seconds, 0.02-60, or None, the default: never) is how
    long an idle input mid-utterance takes to count as silence (see the module).
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
        """Transcribe ``frames``: one final per utterance, in order (see the module)."""
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


class _Outbox:
    """What the writer thread sends to the worker, with the audio in it counted.

    The writer thread takes items (blocking); the trio side puts them and asks
    :meth:`full`. Only audio counts towards ``max_bytes``: the parent never holds
    more than that for a worker that cannot keep up (plus the pipe's own buffer).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[tuple[bytes | None, int]] = deque()
        self._audio = 0
        self._cond = threading.Condition()
        self._on_room: Any = None

    def put(self, item: bytes | None, audio: int = 0) -> None:
        with self._cond:
            self._items.append((item, audio))
            self._audio += audio
            self._cond.notify()

    def full(self) -> bool:
        with self._cond:
            return self._audio >= self.max_bytes

    def when_room(self, callback: Any) -> bool:
        """Arrange ``callback()`` (from the writer thread) once there is room; False if there is now."""
        with self._cond:
            if self._audio < self.max_bytes:
                return False
            self._on_room = callback
            return True

    def get(self) -> bytes | None:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item, audio = self._items.popleft()
            self._audio -= audio
            callback = None
            if self._on_room is not None and self._audio < self.max_bytes:
                callback, self._on_room = self._on_room, None
        if callback is not None:
            callback()
        return item


class _WorkerProcess:
    """One worker process and the two threads that talk to it.

    The writer thread drains :class:`_Outbox` into the worker's stdin, so sending
    never blocks trio; the stream stops reading its input while the outbox holds
    ``max_backlog`` seconds of audio. The reader thread turns stdout lines into
    messages (see :meth:`take`), and reports the exit code last (``{"exit": code}``).
    """

    def __init__(self, owner: PocketSphinxSTT) -> None:
        self._owner = owner
        self._token = trio.lowlevel.current_trio_token()
        self._messages: deque[dict[str, Any]] = deque()  # from the reader, not handled yet
        self._lot = trio.lowlevel.ParkingLot()  # woken by a message, room, or the end
        self._outbox = _Outbox(max(2, round(owner.max_backlog * SAMPLE_RATE) * 2))
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
        self._outbox.put(_HEADER.pack(kind, len(payload)) + payload, len(payload) if kind == b"A" else 0)

    def end_input(self) -> None:
        self._outbox.put(None)  # the writer closes stdin after what is queued

    def full(self) -> bool:
        return self._outbox.full()

    def has_message(self) -> bool:
        return bool(self._messages)

    def take(self) -> list[dict[str, Any]]:
        """The messages that arrived so far, without waiting."""
        out = list(self._messages)
        self._messages.clear()
        return out

    async def next_message(self) -> dict[str, Any] | None:
        """The next message, waiting for it; None once the worker and its threads ended."""
        while not self._messages:
            if self.done.is_set():
                return None
            await self._lot.park()
        return self._messages.popleft()

    async def wait_for_room_or_message(self, *, room: bool = True) -> None:
        """Wait until a message is queued (for :meth:`take`), the worker has ended or,
        if ``room``, the outbox has room again. Cancel-safe: it takes nothing."""
        while not self._messages and not self.done.is_set():
            if room and not self._outbox.when_room(lambda: self._post(self._lot.unpark_all)):
                return
            await self._lot.park()

    async def close(self) -> None:
        """Kill the worker unless it has exited, and wait for both threads (shielded)."""
        self._outbox.put(None)
        if self.proc.poll() is None:
            self.proc.kill()  # abandons a decode in progress; the worker holds nothing shared
        with trio.CancelScope(shield=True):
            await self.done.wait()
        for thread in self._thread_objects:
            thread.join()  # each has posted its last call: only its return is left

    # -- worker threads (must never raise) ----------------------------------------------------
    def _post(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    def _deliver(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self._lot.unpark_all()

    def _thread_ended(self) -> None:
        self._threads -= 1
        if self._threads == 0:
            self._owner.running_workers -= 1
            self.done.set()
            self._lot.unpark_all()

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
