"""Audio frames, TTS word timings and STT events between livekit and trio_playout.

The pure conversions under ``bridge.tts`` and ``bridge.stt`` (and the frames
``bridge.vad`` pushes): ``rtc.AudioFrame`` to and from
:class:`~trio_playout.AudioFrame`, livekit's timed words located in the text sent
(:class:`_WordLocator`), livekit's end-of-segment marker frame, and a
``SpeechEvent`` as a :class:`~trio_playout.Transcript`. No I/O and no loop here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from livekit import rtc
from livekit.agents import stt as lk_stt
from livekit.agents.types import NOT_GIVEN, USERDATA_TIMED_TRANSCRIPT

import trio_playout as tp


def from_rtc_frame(frame: rtc.AudioFrame) -> tp.AudioFrame:
    """A livekit ``rtc.AudioFrame`` (native-endian int16, little-endian on every platform
    livekit ships wheels for) as our frame."""
    data = bytes(frame.data.cast("B"))[: 2 * frame.samples_per_channel * frame.num_channels]
    return tp.AudioFrame(data, frame.sample_rate, frame.num_channels)


def to_rtc_frame(frame: tp.AudioFrame) -> rtc.AudioFrame:
    """Our frame as a livekit ``rtc.AudioFrame``."""
    return rtc.AudioFrame(frame.data, frame.sample_rate, frame.num_channels, frame.samples_per_channel)


class _WordLocator:
    """Turns livekit's timed words into :class:`~trio_playout.WordTiming` over ``text``.

    livekit gives each word's text and times (seconds from the start of the
    synthesis); we need its character span in the text we sent. Words are found by
    searching forward from the end of the previous one; a word not found (the TTS
    normalized it: "10" spoken as "ten") is skipped, so the heard text is cut at the
    last word that could be placed, never past it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.cursor = 0

    def words(self, frame: rtc.AudioFrame) -> tuple[tp.WordTiming, ...]:
        timed = frame.userdata.get(USERDATA_TIMED_TRANSCRIPT) or ()
        out: list[tp.WordTiming] = []
        for word in timed:
            start, end = getattr(word, "start_time", NOT_GIVEN), getattr(word, "end_time", NOT_GIVEN)
            token = str(word).strip()
            if not token or not isinstance(start, (int, float)):
                continue
            at = self.text.find(token, self.cursor)
            if at < 0:
                continue
            self.cursor = at + len(token)
            stop = float(end) if isinstance(end, (int, float)) else float(start)
            out.append(tp.WordTiming(float(start), stop, at, self.cursor))
        return tuple(out)


def _is_end_marker(frame: rtc.AudioFrame) -> bool:
    """livekit's end-of-segment marker: 10 ms of zeros that its ``AudioEmitter`` adds when
    the segment's audio was all sent already. It is not the provider's audio and would
    lengthen every sentence by 10 ms, so the TTS adapter drops it (unless it carries
    timed words, which must not be lost)."""
    return (frame.samples_per_channel == frame.sample_rate // 100
            and not frame.userdata.get(USERDATA_TIMED_TRANSCRIPT)
            and not any(frame.data.cast("B")))


def _push_frame(stream: Any, frame: tp.AudioFrame) -> None:
    stream.push_frame(to_rtc_frame(frame))


_TRANSCRIPT_KINDS = {
    lk_stt.SpeechEventType.FINAL_TRANSCRIPT: True,
    lk_stt.SpeechEventType.INTERIM_TRANSCRIPT: False,
    lk_stt.SpeechEventType.PREFLIGHT_TRANSCRIPT: False,
}


def from_speech_event(event: lk_stt.SpeechEvent) -> Iterable[tp.Transcript]:
    """A livekit ``SpeechEvent`` as our transcript (its first alternative), if it is one."""
    final = _TRANSCRIPT_KINDS.get(event.type)
    if final is None or not event.alternatives:
        return ()
    text = event.alternatives[0].text.strip()
    return (tp.Transcript(text, final=final),) if text else ()
