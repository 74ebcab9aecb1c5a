"""livekit VAD events re-measured in trio_playout's meaning, for ``bridge.vad``.

livekit's Silero counts a speech's trailing silence as speech until its end of
speech; trio_playout's :class:`~trio_playout.VADEvent` means voiced time and the
silence run. :class:`VoicedTime` recomputes both from each window's probability
with the plugin's own thresholds (:func:`plugin_thresholds`); :func:`from_vad_event`
passes events in livekit's meaning when the thresholds are unknown. The largest
piece of the adapters' logic, kept apart so it can be read and tested on its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from livekit.agents import vad as lk_vad

import trio_playout as tp

_VAD_TYPES = {
    lk_vad.VADEventType.START_OF_SPEECH: tp.VADEventType.START_OF_SPEECH,
    lk_vad.VADEventType.INFERENCE_DONE: tp.VADEventType.INFERENCE,
    lk_vad.VADEventType.END_OF_SPEECH: tp.VADEventType.END_OF_SPEECH,
}


def from_vad_event(event: lk_vad.VADEvent) -> Iterable[tp.VADEvent]:
    """A livekit ``VADEvent`` as ours, durations as the plugin counts them (frames dropped).
    Used only for a plugin whose thresholds are unknown (see :func:`bridge.vad`)."""
    kind = _VAD_TYPES.get(event.type)
    if kind is None:
        return ()
    return (tp.VADEvent(kind, float(event.timestamp), speech_duration=float(event.speech_duration),
                        silence_duration=float(event.silence_duration),
                        probability=float(event.probability)),)


Thresholds = tuple[float, float]  # (activation, deactivation)


def plugin_thresholds(lk: lk_vad.VAD) -> Thresholds | None:
    """The thresholds the plugin decides with now (so its ``update_options`` is followed),
    or None. livekit's Silero keeps them in its options object (``_opts``, private)."""
    opts = getattr(lk, "_opts", None)
    act, deact = getattr(opts, "activation_threshold", None), getattr(opts, "deactivation_threshold", None)
    if isinstance(act, (int, float)) and isinstance(deact, (int, float)):
        return float(act), float(deact)
    return None


class VoicedTime:
    """One stream's livekit VAD events, re-measured in trio_playout's meaning.

    livekit's Silero counts ``speech_duration`` from its start of speech to now,
    through the trailing ``min_silence_duration`` (0.55 s), and keeps
    ``silence_duration`` at 0 until its end of speech (only ``END_OF_SPEECH`` takes
    the trailing silence off). Passed on as is, a 0.3 s "hmm" reaches
    ``min_interruption_duration`` (0.5 s) and a provisional pause waits for the end
    of speech. :class:`~trio_playout.VADEvent` means the voiced time and the silence
    run since the voice was last heard (as ``trio_playout.silero`` reports). Mapping:

    * Each ``INFERENCE_DONE`` is one window, as long as the step of the plugin's
      ``timestamp``. It is voiced when its ``probability`` (the smoothed value the
      plugin decides on) is ``>= activation``, or ``> deactivation`` while the
      plugin's speech is on: the plugin's own rule and thresholds, so exactly the
      windows livekit counts as speech. livekit sends a window's ``INFERENCE_DONE``
      before the start or end it causes, so "on" is the state before the window.
    * ``speech_duration``: 0 outside a speech. ``START_OF_SPEECH`` carries the run of
      voiced windows that started it; each voiced window in the speech adds its
      length, an unvoiced one nothing. ``END_OF_SPEECH`` carries the voiced time.
    * ``silence_duration``: 0 at the start and on each voiced window in the speech,
      growing by each unvoiced one, through the end of speech and after it; outside
      a speech it grows on every window (as livekit's does there).
    * Order and timestamps stay the plugin's (an ``INFERENCE`` agrees with the last
      start or end before it); ``START``/``END`` carry the last window's probability.
    """

    def __init__(self, thresholds: Callable[[], Thresholds | None]) -> None:
        self._thresholds = thresholds
        self.speaking = False  # between the plugin's START and END
        self.voiced = 0.0
        self.silence = 0.0
        self._run = 0.0  # voiced windows in a row outside speech (what a START counts)
        self._timestamp = self._probability = 0.0

    def convert(self, event: lk_vad.VADEvent) -> Iterable[tp.VADEvent]:
        kind, thresholds = _VAD_TYPES.get(event.type), self._thresholds()
        if kind is None or thresholds is None:
            return from_vad_event(event)
        ts = float(event.timestamp)
        if kind is tp.VADEventType.INFERENCE:
            self._window(ts, float(event.probability), thresholds)
            return (tp.VADEvent(kind, ts, self.voiced if self.speaking else 0.0, self.silence,
                                self._probability),)
        if kind is tp.VADEventType.START_OF_SPEECH:
            # the run is the plugin's debounce (with thresholds of its own, its count)
            self.voiced, self._run = self._run or float(event.speech_duration), 0.0
            self.speaking, self.silence = True, 0.0
            return (tp.VADEvent(kind, ts, self.voiced, 0.0, self._probability),)
        voiced, self.speaking, self.voiced, self._run = self.voiced, False, 0.0, 0.0
        return (tp.VADEvent(kind, ts, voiced, self.silence, self._probability),)

    def _window(self, ts: float, probability: float, thresholds: Thresholds) -> None:
        length, self._timestamp, self._probability = max(ts - self._timestamp, 0.0), ts, probability
        activation, deactivation = thresholds
        voiced = probability >= activation or (self.speaking and probability > deactivation)
        if self.speaking and voiced:
            self.voiced += length
            self.silence = 0.0
        else:
            self.silence += length
            if not self.speaking:
                self._run = self._run + length if voiced else 0.0
