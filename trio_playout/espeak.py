"""espeak-ng speech with real word timings, for trio (extra ``espeak``; GPL-3.0).

espeak-ng is GPL-3.0 licensed. It is an optional extra (``pip install
'trio-playout[espeak]'``, which installs the ``espeakng-loader`` wheel bundling
libespeak-ng and its voice data) and never a dependency of ``trio_playout``; this
module loads the library only when an :class:`EspeakTTS` is created. Without the
wheel it falls back to the system library (Debian: ``libespeak-ng1``). Use it for
demos, tests and benchmarks that need real speech; ship a product with a TTS whose
license suits you.

How it works: libespeak-ng runs in its synchronous mode through ``ctypes``. The
engine calls back with chunks of 22.05 kHz PCM and with events; a *word* event gives
the sample where the word starts and its character span in the text, and pause
phonemes (``_``) tell where a word's sound ends, so :class:`~trio_playout.WordTiming`
values are the engine's own, not estimates. Audio is cut into frames of
``frame_duration`` (20 ms), each carrying the words that start in it.

The engine is one global, synchronous, non-thread-safe object. Synthesis therefore
runs in a worker thread (``trio.lowlevel.start_thread_soon``) under one process-wide
lock, and streams frames back to trio as they are made. Cancelling
:meth:`EspeakTTS.synthesize` (or closing its iterator) returns at once: it stops
listening and sets a flag that makes the engine's next callback return 1, which tells
espeak to abort; the thread then releases the lock for the next synthesis. The engine
runs ahead of the consumer (a few hundred times faster than real time), so the audio
of the whole text may sit in memory (about 2.6 MB per minute) until it is consumed.

Under ``trio.testing.MockClock(autojump_threshold=0)`` the clock jumps while the
worker thread computes; synthesize speech before entering virtual time (e.g.
:meth:`EspeakTTS.render_sync` in a fixture) when a test needs exact timing.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import math
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import outcome
import trio

from ._audio import AudioFrame
from ._exceptions import SpeechEngineError, VoiceOptionsError
from ._models import SynthesizedAudio, WordTiming

__all__ = ["EspeakTTS", "SpeechEngineError", "VoiceOptionsError", "library_path"]

# speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_SENTENCE = 2
_EVENT_END = 5
_EVENT_MSG_TERMINATED = 6
_EVENT_PHONEME = 7
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_VOLUME, _PARAM_PITCH, _PARAM_WORDGAP = 1, 2, 3, 7


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based, in characters
        ("length", ctypes.c_int),  # characters
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # samples since the start of the synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(_Event))


def library_path() -> tuple[str, str | None]:
    """The libespeak-ng to load and its data directory (None: the library's default).

    The ``espeakng-loader`` wheel first, then the system library. Raises
    :class:`SpeechEngineError` naming the extra when neither is installed.
    """
    try:
        import espeakng_loader  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        lib = str(espeakng_loader.get_library_path())
        if Path(lib).is_file():
            return lib, str(espeakng_loader.get_data_path())
    found = ctypes.util.find_library("espeak-ng")
    if found:
        return found, None
    raise SpeechEngineError(
        "libespeak-ng not found: pip install 'trio-playout[espeak]' (GPL-3.0) "
        "or install the system package (Debian: libespeak-ng1)")


class _Engine:
    """The process-wide espeak-ng instance. Every call holds :attr:`lock`."""

    def __init__(self) -> None:
        path, data = library_path()
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise SpeechEngineError(f"cannot load {path}: {exc}") from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_Synth.restype = ctypes.c_int
        self.lock = threading.Lock()
        self._lib = lib
        # 50 ms of audio per callback; DONT_EXIT: report errors instead of exiting the process.
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 50, data.encode() if data else None,
                                     _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise SpeechEngineError(f"espeak_Initialize failed ({rate}) with data at {data}")
        self.sample_rate = rate
        self.current: _Job | None = None
        self._callback = _SynthCallback(self._on_synth)  # kept alive for the library
        lib.espeak_SetSynthCallback(self._callback)

    def configure(self, voice: str, rate: int, pitch: int, volume: int, word_gap: int) -> None:
        if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise VoiceOptionsError(f"espeak-ng has no voice {voice!r}")
        for param, value in ((_PARAM_RATE, rate), (_PARAM_PITCH, pitch), (_PARAM_VOLUME, volume),
                             (_PARAM_WORDGAP, word_gap)):
            if self._lib.espeak_SetParameter(param, value, 0) != 0:
                raise VoiceOptionsError(f"espeak-ng rejected parameter {param}={value}")

    def synth(self, job: _Job) -> None:
        data = job.text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self.current = job
        try:
            rc = self._lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        finally:
            self.current = None
        if rc != 0 and not job.stopped:
            raise SpeechEngineError(f"espeak_Synth failed with error {rc}")

    def _on_synth(self, wav: Any, count: int, events: Any) -> int:
        job = self.current
        if job is None or job.stopped:
            return 1
        try:
            pcm = ctypes.string_at(wav, 2 * count) if count > 0 and wav else b""
            i = 0
            found: list[tuple[int, int, int, int, bytes]] = []
            while events[i].type != _EVENT_LIST_TERMINATED:
                e = events[i]
                found.append((e.type, e.sample, e.text_position, e.length, bytes(e.id.string)))
                i += 1
            job.feed(pcm, found)
        except BaseException as exc:  # an exception must not cross the C boundary
            job.fail(exc)
            return 1
        return 1 if job.stopped else 0


_engine: _Engine | None = None
_engine_lock = threading.Lock()


def _get_engine() -> _Engine:
    global _engine
    with _engine_lock:
        if _engine is None:
            _engine = _Engine()
        return _engine


@dataclass
class _Word:
    start: int  # sample
    first: int  # index of its first whitespace-delimited token
    last: int = -1  # its last token, once final
    sound_end: int | None = None  # where its sound stopped (a pause), if seen
    end: int | None = None  # final end sample


class _Job:
    """One synthesis: turns the engine's chunks and events into frames with words.

    Runs in the worker thread. espeak's word events do not map one to one onto the
    words of the text ("1234" gives four events, "from the" may give one, "I'm"
    reports "I"), so each event is mapped to the whitespace-delimited token holding
    its position: events within one token merge, and tokens without an event (and
    punctuation) join the word before them. The spans of the word timings thus
    cover every token of the text exactly once, in order. A word is final when an
    event of a later token (or the end of the synthesis) arrives; it ends where its
    sound stopped (the next pause phoneme or clause end), else where the next word
    starts. A frame is released once every word starting in it is final, and never
    past the audio of the previous callback (the events of a chunk come with it).
    """

    def __init__(self, text: str, sample_rate: int, frame_samples: int,
                 emit: Callable[[SynthesizedAudio], None]) -> None:
        self.text = text
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples
        self._emit = emit
        self._tokens = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
        self._token_starts = [t[0] for t in self._tokens]
        self._pcm = bytearray()  # audio not yet released
        self._released = 0  # samples released
        self._words: list[_Word] = []  # words not yet released
        self._open: _Word | None = None  # the last word, not final yet
        self.stopped = False
        self.error: BaseException | None = None

    def stop(self) -> None:
        self.stopped = True

    def fail(self, exc: BaseException) -> None:
        self.error = exc
        self.stopped = True

    def _token_of(self, position: int) -> int:
        i = max(0, bisect.bisect_right(self._token_starts, position) - 1)
        if position >= self._tokens[i][1] and i + 1 < len(self._tokens):
            i += 1  # a position in the whitespace after token i
        return i

    def _finalize(self, sample: int, last_token: int) -> None:
        w = self._open
        if w is not None:
            w.end = max(w.start, w.sound_end if w.sound_end is not None else sample)
            w.last = max(w.first, last_token)
            self._open = None

    def feed(self, pcm: bytes, events: list[tuple[int, int, int, int, bytes]]) -> None:
        safe = self._released + len(self._pcm) // 2  # audio that arrived before this chunk
        self._pcm += pcm
        for kind, sample, position, _length, ident in events:
            if kind == _EVENT_WORD and self._tokens:
                token = self._token_of(max(0, position - 1))
                w = self._open
                if w is not None and token <= w.first:
                    w.sound_end = None  # more sound of the same token
                    continue
                if w is None and self._words:
                    continue  # a token before the last final word (should not happen)
                self._finalize(sample, token - 1)
                word = _Word(sample, token if self._words or self._released else 0)
                self._words.append(word)
                self._open = word
            elif (kind == _EVENT_PHONEME and ident.startswith(b"_")) or kind in (
                    _EVENT_END, _EVENT_SENTENCE, _EVENT_MSG_TERMINATED):
                w = self._open
                if w is not None and w.sound_end is None and sample >= w.start:
                    w.sound_end = sample
        self._release(safe, final=False)

    def finish(self) -> None:
        total = self._released + len(self._pcm) // 2
        self._finalize(total, len(self._tokens) - 1)
        self._release(total, final=True)

    def _release(self, limit: int, *, final: bool) -> None:
        if self._open is not None:
            limit = min(limit, self._open.start)
        n = self.frame_samples
        while not self.stopped:
            available = min(limit - self._released, len(self._pcm) // 2)
            if available <= 0 or (available < n and not final):
                return
            take = min(n, available)
            end = self._released + take
            words = []
            while self._words and self._words[0].start < end and self._words[0].end is not None:
                w = self._words.pop(0)
                assert w.end is not None
                words.append(WordTiming(w.start / self.sample_rate, w.end / self.sample_rate,
                                        self._tokens[w.first][0], self._tokens[w.last][1]))
            frame = AudioFrame(bytes(self._pcm[: 2 * take]), self.sample_rate)
            del self._pcm[: 2 * take]
            self._released = end
            self._emit(SynthesizedAudio(frame, tuple(words)))


def _check_int(name: str, value: int, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise VoiceOptionsError(f"{name} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


class EspeakTTS:
    """The :class:`~trio_playout.TTS` protocol with espeak-ng (GPL-3.0, extra ``espeak``).

    ``voice`` is an espeak-ng voice name (``"en-us"``, ``"en"`` (British), ``"fr"``...);
    ``rate`` in words per minute (80-450), ``pitch`` 0-100, ``volume`` 0-200,
    ``word_gap`` extra pause between words in units of 10 ms. Audio is 16-bit mono at
    the engine's rate (:attr:`sample_rate`, 22050 Hz) in frames of ``frame_duration``.
    Creating one loads and checks the engine (blocking, a few ms the first time);
    bad options raise :class:`VoiceOptionsError`, a missing library
    :class:`SpeechEngineError`.

    The same text does not give the same samples twice in a process: espeak-ng
    carries state in its wave generator from one synthesis to the next (measured:
    lengths differing by up to 18 samples in 31,400, the waveform from the first
    sample on; reseeding its noise does not change that). Tests that need
    identical audio should synthesize once and reuse the frame.
    """

    def __init__(self, voice: str = "en-us", rate: int = 175, *, pitch: int = 50, volume: int = 100,
                 word_gap: int = 0, frame_duration: float = 0.02) -> None:
        if not isinstance(voice, str) or not voice or "\0" in voice:
            raise VoiceOptionsError(f"voice must be a non-empty voice name, got {voice!r}")
        self.voice = voice
        self.rate = _check_int("rate", rate, 80, 450)
        self.pitch = _check_int("pitch", pitch, 0, 100)
        self.volume = _check_int("volume", volume, 0, 200)
        self.word_gap = _check_int("word_gap", word_gap, 0, 1000)
        if not isinstance(frame_duration, (int, float)) or not 0 < frame_duration <= 1:
            raise VoiceOptionsError(f"frame_duration must be in (0, 1] seconds, got {frame_duration!r}")
        self.frame_duration = float(frame_duration)
        self._engine = _get_engine()
        self.sample_rate = self._engine.sample_rate
        self._frame_samples = max(1, round(self.frame_duration * self.sample_rate))
        with self._engine.lock:
            self._configure()

    def _configure(self) -> None:
        self._engine.configure(self.voice, self.rate, self.pitch, self.volume, self.word_gap)

    def _run(self, job: _Job) -> None:
        """Synthesize ``job`` in the calling thread (blocks; holds the engine lock)."""
        with self._engine.lock:
            if job.stopped:
                return
            self._configure()
            self._engine.synth(job)
        if job.error is not None:
            raise job.error
        if not job.stopped:
            job.finish()

    async def synthesize(self, text: str) -> AsyncIterator[SynthesizedAudio]:
        """Stream ``text`` as frames with the engine's word timings.

        ``start_char``/``end_char`` index ``text``; times are seconds since the start
        of this synthesis. Empty or blank text gives no frames.
        """
        if not text.strip():
            await trio.lowlevel.checkpoint()
            return
        token = trio.lowlevel.current_trio_token()
        send, receive = trio.open_memory_channel[SynthesizedAudio | outcome.Outcome[None]](math.inf)

        def deliver(item: SynthesizedAudio | outcome.Outcome[None]) -> None:
            # Runs in the worker thread; must never raise.
            def put() -> None:
                try:
                    send.send_nowait(item)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    job.stop()
            try:
                token.run_sync_soon(put)
            except trio.RunFinishedError:
                job.stop()

        job = _Job(text.replace("\0", " "), self.sample_rate, self._frame_samples, deliver)
        trio.lowlevel.start_thread_soon(lambda: self._run(job), deliver)
        try:
            with receive:
                async for item in receive:
                    if isinstance(item, outcome.Outcome):
                        item.unwrap()
                        return
                    yield item
        finally:
            job.stop()

    def render_sync(self, text: str, *, sample_rate: int | None = None) -> AudioFrame:
        """All of ``text`` as one frame, synthesized in the calling thread (blocking).

        For fixtures, scripts and benchmarks that need speech audio (a user's voice).
        ``sample_rate`` resamples the result (needs numpy, e.g. 16000 for a VAD).
        """
        frames, _ = self.render_words_sync(text, sample_rate=sample_rate)
        return frames

    def render_words_sync(self, text: str, *, sample_rate: int | None = None
                          ) -> tuple[AudioFrame, tuple[WordTiming, ...]]:
        """Like :meth:`render_sync`, also returning the word timings."""
        chunks: list[SynthesizedAudio] = []
        job = _Job(text.replace("\0", " "), self.sample_rate, self._frame_samples, chunks.append)
        if text.strip():
            self._run(job)
        pcm = b"".join(c.frame.data for c in chunks)
        words = tuple(w for c in chunks for w in c.words)
        frame = AudioFrame(pcm, self.sample_rate)
        if sample_rate is not None and sample_rate != self.sample_rate:
            from ._resample import StreamResampler, float_to_pcm16, pcm16_to_float_mono

            resampler = StreamResampler(self.sample_rate, sample_rate)
            frame = AudioFrame(float_to_pcm16(resampler.push(pcm16_to_float_mono(pcm, 1))), sample_rate)
        return frame, words

    async def render(self, text: str, *, sample_rate: int | None = None) -> AudioFrame:
        """:meth:`render_sync` in a worker thread; cancelling abandons the result."""
        return await trio.to_thread.run_sync(
            lambda: self.render_sync(text, sample_rate=sample_rate), abandon_on_cancel=True)
