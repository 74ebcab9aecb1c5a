"""The PocketSphinx worker process behind :class:`trio_playout.sphinx.PocketSphinxSTT`.

Run as a script in a child process (never imported by the parent): it reads audio
from stdin, segments it with PocketSphinx's endpointer, decodes each utterance and
writes one JSON object per line to stdout. It imports only the standard library and
``pocketsphinx``, so it starts fast and cannot shadow or be shadowed by the parent's
packages.

Why a process: the ``pocketsphinx`` bindings hold the GIL while they decode (measured
here: a thread decoding 14 s of speech kept the main thread from running for 2.8 s),
so a thread in the parent would freeze trio's event loop for as long as each decode
call lasts. A process decodes in parallel with the event loop.

Input, from the parent (a type byte, a 4-byte little-endian length, the payload):

- ``C`` once, first: the configuration as JSON (paths and endpointer settings);
- ``A`` 16-bit little-endian mono PCM at 16 kHz, any length;
- ``E`` end of input: finish the current utterance, report it, exit.

Output, one JSON object per line: ``{"ready": ...}`` once the decoder is loaded (or
``{"error": kind, "message": ...}`` and exit), then ``{"start": t}`` when speech
starts, ``{"partial": text}`` (if asked for) and ``{"final": text, "start": t,
"end": t}`` per utterance; times are seconds of audio since the stream started.
Closing stdin without ``E`` also ends the worker (after reporting what it has); the
parent kills it to abandon work in progress.
"""

from __future__ import annotations

import json
import struct
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct("<cI")
_RATE = 16000


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    chunks = []
    while n:
        chunk = stream.read(n)
        if not chunk:
            return None
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _read_message(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    header = _read_exact(stream, _HEADER.size)
    if header is None:
        return None
    kind, length = _HEADER.unpack(header)
    payload = _read_exact(stream, length) if length else b""
    if payload is None:
        return None
    return kind, payload


class _Worker:
    def __init__(self, config: dict[str, Any], out: BinaryIO) -> None:
        import pocketsphinx  # type: ignore[import-untyped,import-not-found,unused-ignore]

        pocketsphinx.set_loglevel("FATAL")  # this process only: no INFO lines on the parent's stderr
        self._out = out
        self.decoder = pocketsphinx.Decoder(hmm=config["hmm"], lm=config["lm"], dict=config["dict"],
                                            samprate=_RATE, fwdflat=bool(config["fwdflat"]),
                                            loglevel="FATAL")
        self.endpointer = pocketsphinx.Endpointer(window=config["window"], ratio=config["ratio"],
                                                  vad_mode=config["vad_mode"], sample_rate=_RATE)
        self.frame_bytes: int = self.endpointer.frame_bytes
        self.interim = bool(config["interim"])
        self.interim_every = float(config["interim_every"])
        self.max_utterance = float(config["max_utterance"])
        self._buf = bytearray()
        self._in_utterance = False
        self._start = 0.0
        self._utterance_audio = 0.0  # seconds decoded in the current utterance
        self._last_partial = ""
        self._partial_audio = 0.0

    def send(self, message: dict[str, Any]) -> None:
        self._out.write(json.dumps(message).encode() + b"\n")
        self._out.flush()

    def audio(self, pcm: bytes) -> None:
        self._buf += pcm
        n = self.frame_bytes
        start = 0
        while len(self._buf) - start >= n:
            self._frame(bytes(self._buf[start:start + n]))
            start += n
        del self._buf[:start]

    def _frame(self, frame: bytes) -> None:
        was_speech = self.endpointer.in_speech
        speech = self.endpointer.process(frame)
        if speech is None:
            return
        if not was_speech:
            self._begin(self.endpointer.speech_start)
        self._decode(speech)
        if not self.endpointer.in_speech:
            self._finish(self.endpointer.speech_end)

    def _begin(self, start: float) -> None:
        self.decoder.start_utt()
        self._in_utterance = True
        self._start = start
        self._utterance_audio = 0.0
        self._last_partial = ""
        self._partial_audio = 0.0
        self.send({"start": start})

    def _decode(self, speech: bytes) -> None:
        self.decoder.process_raw(speech)
        seconds = len(speech) / (2 * _RATE)
        self._utterance_audio += seconds
        self._partial_audio += seconds
        if self.interim and self._partial_audio >= self.interim_every:
            self._partial_audio = 0.0
            hyp = self.decoder.hyp()
            text = hyp.hypstr if hyp is not None else ""
            if text and text != self._last_partial:
                self._last_partial = text
                self.send({"partial": text})
        if self._utterance_audio >= self.max_utterance:
            # A very long utterance: report what it holds so far and go on in a new one.
            end = self._start + self._utterance_audio
            self._finish(end)
            self._begin(end)

    def _finish(self, end: float) -> None:
        self.decoder.end_utt()
        self._in_utterance = False
        hyp = self.decoder.hyp()
        self.send({"final": hyp.hypstr if hyp is not None else "", "start": self._start, "end": end})

    def end_of_input(self) -> None:
        if self.endpointer.in_speech:
            speech = self.endpointer.end_stream(bytes(self._buf[: self.frame_bytes]))
            if speech is not None:
                self._decode(speech)
        if self._in_utterance:
            self._finish(self.endpointer.speech_end)


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    first = _read_message(stdin)
    if first is None or first[0] != b"C":
        return 2
    try:
        worker = _Worker(json.loads(first[1]), stdout)
    except Exception as exc:  # report why, then exit: the parent raises a typed error
        error = {"error": "load", "message": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(error).encode() + b"\n")
        stdout.flush()
        return 1
    worker.send({"ready": True, "frame_bytes": worker.frame_bytes})
    try:
        while (message := _read_message(stdin)) is not None:
            kind, payload = message
            if kind == b"A":
                worker.audio(payload)
            elif kind == b"E":
                break
        worker.end_of_input()
    except BrokenPipeError:  # the parent went away
        return 0
    except Exception as exc:
        worker.send({"error": "decode", "message": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
