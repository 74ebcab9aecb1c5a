"""Streaming sample-rate conversion and PCM helpers for the voice extras (numpy only).

Used by :mod:`trio_playout.silero` (the model hears 16 kHz) and by the paced test
sources. Importing this module imports numpy, so only the extras import it; the core
never does.

:class:`StreamResampler` is a polyphase windowed-sinc resampler for any rational
ratio (48000 -> 16000 is 1/3, 22050 -> 16000 is 320/441). It keeps the tail of the
previous chunk, so feeding audio in 20 ms frames gives the same samples as feeding
it in one piece, and sample counts never drift. Its delay is ``zero_crossings``
input samples (well under 1 ms), small enough for a VAD to ignore. Linear
interpolation would alias everything above the new Nyquist frequency into the band
the model listens to; the low-pass in the sinc filter avoids that.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = ["StreamResampler", "float_to_pcm16", "pcm16_to_float_mono"]

FloatArray = npt.NDArray[np.float32]


def pcm16_to_float_mono(data: bytes, num_channels: int) -> FloatArray:
    """Interleaved 16-bit little-endian PCM -> float32 mono in [-1, 1] (channels averaged)."""
    samples = np.frombuffer(data, dtype="<i2").astype(np.float32)
    if num_channels > 1:
        mixed = samples[0::num_channels].copy()  # strided adds beat a reduction over a tiny axis
        for c in range(1, num_channels):
            mixed += samples[c::num_channels]
        samples = mixed
    samples *= np.float32(1.0 / (32768.0 * num_channels))
    return samples


def float_to_pcm16(samples: npt.NDArray[np.floating]) -> bytes:
    """float in [-1, 1] -> 16-bit little-endian PCM bytes (clipped)."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


class StreamResampler:
    """Convert a stream of float32 mono chunks from ``in_rate`` to ``out_rate``.

    ``push(chunk)`` returns the output samples that the input so far determines.
    """

    def __init__(self, in_rate: int, out_rate: int, *, zero_crossings: int = 8) -> None:
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        g = math.gcd(in_rate, out_rate)
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._up = out_rate // g
        self._down = in_rate // g
        up, down = self._up, self._down
        # Prototype low-pass at the upsampled rate, cut just below the lower Nyquist.
        cutoff = 0.5 / max(up, down) * 0.92  # cycles per upsampled sample
        taps = math.ceil(zero_crossings * max(1.0, down / up))  # per phase
        n = taps * up
        j = np.arange(n, dtype=np.float64) - (n - 1) / 2.0
        proto = 2.0 * cutoff * up * np.sinc(2.0 * cutoff * j) * np.kaiser(n, 8.0)
        # phases[p, k] = proto[p + k * up]: the taps that meet input samples for phase p.
        self._phases = proto.reshape(taps, up).T.astype(np.float32).copy()
        self._taps = taps
        self._history: FloatArray = np.zeros(taps - 1, dtype=np.float32)
        self._consumed = 0  # input samples seen
        self._produced = 0  # output samples made

    @property
    def ratio(self) -> float:
        return self.out_rate / self.in_rate

    @property
    def delay(self) -> float:
        """Seconds by which the output lags the input (the filter's group delay)."""
        return (self._taps * self._up - 1) / 2.0 / (self._up * self.in_rate)

    def push(self, chunk: FloatArray) -> FloatArray:
        if self._up == self._down:
            return np.array(chunk, dtype=np.float32)
        chunk = np.asarray(chunk, dtype=np.float32)
        buf = np.concatenate([self._history, chunk])
        total = self._consumed + len(chunk)
        # Output n uses input indices (n*down)//up - k for k in 0..taps-1.
        last = -(-total * self._up // self._down)  # outputs whose newest input has arrived
        n = np.arange(self._produced, last, dtype=np.int64)
        out: FloatArray
        if len(n) and self._up == 1:
            # Integer decimation (48000 -> 16000): one C-level convolution, then every down-th.
            first = int(n[0]) * self._down - self._consumed  # offset of output n[0] in the valid part
            conv = np.convolve(buf, self._phases[0], mode="valid")
            out = conv[first:first + len(n) * self._down:self._down].astype(np.float32)
        elif len(n):
            pos = n * self._down
            idx = pos // self._up - self._consumed + (self._taps - 1)
            phase = pos % self._up
            gather = idx[:, None] - np.arange(self._taps)[None, :]
            out = (buf[gather] * self._phases[phase]).sum(axis=1, dtype=np.float32)
        else:
            out = np.zeros(0, dtype=np.float32)
        self._produced = last
        self._consumed = total
        self._history = buf[len(buf) - (self._taps - 1):] if self._taps > 1 else buf[:0]
        return out
