"""Errors of the real voice providers (:mod:`trio_playout.silero`, :mod:`trio_playout.espeak`).

Kept apart from the heavy provider modules so they can be caught (and re-exported)
without importing numpy, onnxruntime or a GPL engine. They join the tree of
:mod:`trio_playout._exceptions`::

    PlayoutError
    ├── VoiceOptionsError(ValueError)        a bad option to a VAD or TTS provider
    ├── ModelNotFoundError(FileNotFoundError) the model file is not installed
    └── SpeechEngineError(RuntimeError)      the speech engine is missing or failed
"""

from __future__ import annotations

from ._exceptions import PlayoutError

__all__ = ["ModelNotFoundError", "SpeechEngineError", "VoiceOptionsError"]


class VoiceOptionsError(PlayoutError, ValueError):
    """An option of a voice provider is out of range; the message names it and its range."""


class ModelNotFoundError(PlayoutError, FileNotFoundError):
    """A model file is not where it was expected.

    Install the extra that ships it (``pip install 'trio-playout[vad]'`` for Silero)
    or pass the file explicitly (``model_path=``). Models are never downloaded at run
    time.
    """


class SpeechEngineError(PlayoutError, RuntimeError):
    """The speech engine library is missing, or it reported an error.

    For espeak-ng: ``pip install 'trio-playout[espeak]'`` (GPL-3.0), or the system
    package (Debian: ``libespeak-ng1``).
    """
