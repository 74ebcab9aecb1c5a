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

import importlib.util

if importlib.util.find_spec("pocketsphinx") is None:  # pragma: no cover - only without the extra
    raise ImportError("trio_playout.sphinx needs pocketsphinx: pip install 'trio-playout[sphinx]'")

# The code lives in private modules: _sphinx_stt (PocketSphinxSTT, its options and the
# stream loop), _sphinx_stream (the pieces of one stream: input race, rate conversion,
# worker messages to transcripts), _sphinx_process (the worker process, its pipe and
# threads) and _sphinx_worker (the worker itself). The check above stays here, first,
# so importing this module without the extra fails at once, as it always did.
from ._exceptions import ModelNotFoundError, SpeechEngineError, VoiceOptionsError
from ._sphinx_process import _BOOT as _BOOT  # the worker's protocol, used by benchmarks.sphinx_cost
from ._sphinx_process import _HEADER as _HEADER
from ._sphinx_process import _WORKER as _WORKER
from ._sphinx_process import SAMPLE_RATE as SAMPLE_RATE
from ._sphinx_stt import PocketSphinxSTT, default_model

__all__ = ["ModelNotFoundError", "PocketSphinxSTT", "SpeechEngineError", "VoiceOptionsError",
           "default_model"]
