"""What history records when bridge.with_sink_grace finishes a segment the sink never confirmed.

The arrangement is the one the docs suggest: the graced sink under livekit's
TranscriptSynchronizer (``harness.running_session`` attaches it that way). Virtual
time: the preamble is 14 words, 7.5 s of audio; the tests interrupt 1.5 s in. The
synchronizer paces words on its own estimate of the speech rate, so each case is
compared with an honest sink whose audio stopped at the same moment and which said so.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
import trio
from harness import PREAMBLE, running_session
from livekit import rtc
from livekit.agents import Agent, AgentSession
from livekit.agents.voice.io import AudioOutput, AudioOutputCapabilities

import bridge
from bridge.testing import FakeAudioSink, Reply, ScriptedLLM, SilentTTS, attach_sink

T_INTERRUPT = 1.5


async def heard_text(sink: Any) -> tuple[str, bool]:
    """The assistant message a 1.5 s barge-in into the preamble leaves in history."""
    async with running_session([], [Reply(text=PREAMBLE)], sink=sink) as env:
        handle = env.session.generate_reply(user_input="hi")
        await trio.sleep(T_INTERRUPT)
        handle.interrupt()
        with trio.fail_after(30):
            await bridge.wait_for_playout(handle)
        (msg,) = env.assistant_messages()
        return msg.text_content or "", msg.interrupted


def words(text: str) -> int:
    return len(text.split())


def frame(seconds: float = 0.1, rate: int = 16000) -> rtc.AudioFrame:
    n = int(seconds * rate)
    return rtc.AudioFrame(data=b"\x00\x00" * n, sample_rate=rate, num_channels=1, samples_per_channel=n)


class PassThrough(AudioOutput):
    """A wrapper that only forwards (like livekit's own sink proxy)."""

    def __init__(self, inner: AudioOutput) -> None:
        caps = AudioOutputCapabilities(pause=False)
        super().__init__(label="PassThrough", capabilities=caps, next_in_chain=inner)

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        assert self.next_in_chain is not None
        await self.next_in_chain.capture_frame(frame)

    def flush(self) -> None:
        super().flush()
        assert self.next_in_chain is not None
        self.next_in_chain.flush()

    def clear_buffer(self) -> None:
        assert self.next_in_chain is not None
        self.next_in_chain.clear_buffer()


@pytest.mark.parametrize("wrapped", [False, True], ids=["under-sync", "under-wrapper"])
@pytest.mark.parametrize("deaf", [False, True], ids=["stopped", "deaf"])
async def test_history_holds_only_the_audio_a_silent_sink_was_given(
    autojump_clock: trio.abc.Clock, deaf: bool, wrapped: bool
) -> None:
    """A sink that buffers 0.2 s ahead (like a room's audio source) never confirms the
    clear: it stopped and lost the confirmation, or it ignored the clear (deaf) and
    played what it held. Either way it had 1.7 s of audio (3 words), never the rest.
    The synchronizer used to pace on through the grace and over the whole reply's text
    (all 14 words recorded); history must end where the given audio ends. Also with a
    pass-through wrapper between the synchronizer and the grace."""
    silent = FakeAudioSink(buffer=0.2, clear_delay=math.inf if deaf else 0.0, confirm_clear=False)
    graced = bridge.with_sink_grace(silent, grace=2.0)
    text, interrupted = await heard_text(PassThrough(graced) if wrapped else graced)
    # the honest references: confirmed stops at the clear, and where the given audio ended
    at_clear, _ = await heard_text(FakeAudioSink(buffer=0.2, clear_delay=0.0))
    at_end, _ = await heard_text(FakeAudioSink(buffer=0.2, clear_delay=0.19))
    assert interrupted and PREAMBLE.startswith(text)
    # never less than played before the clear, at most the word in flight past the end
    assert words(at_clear) <= words(text) <= words(at_end) + 1 < words(PREAMBLE)
    (expiry,) = graced.expiries
    assert expiry.position == pytest.approx(T_INTERRUPT + 0.2, abs=0.05) and not expiry.played_out


async def test_deaf_sink_that_took_the_whole_reply_is_recorded_with_all_of_it(
    autojump_clock: trio.abc.Clock,
) -> None:
    """The sink never tells and holds the whole reply: by the bridge's (and the core's)
    rule, what it was given counts as heard. It was recorded with the words paced in
    the grace, and a position (1.5 s) that matched neither."""
    deaf = FakeAudioSink(clear_delay=math.inf)
    graced = bridge.with_sink_grace(deaf, grace=2.0)
    text, interrupted = await heard_text(graced)
    assert text == PREAMBLE and interrupted  # the message still says the speech was cut
    (expiry,) = graced.expiries
    given = deaf.segments[0].captured
    assert expiry.position == pytest.approx(given) and expiry.played_out
    assert expiry.at == pytest.approx(T_INTERRUPT + 2.0)
    assert deaf.segments[0].clear_ignored  # it plays on: all of it will have been heard


async def test_sink_confirming_late_within_the_grace_is_recorded_where_it_stopped(
    autojump_clock: trio.abc.Clock,
) -> None:
    """A slow but honest sink (confirms 1 s after the clear, 0.2 s buffer): the grace
    never runs out, and history is what the same sink gets without the wrapper."""
    graced = bridge.with_sink_grace(FakeAudioSink(buffer=0.2, clear_delay=0.15), grace=2.0)
    text, _ = await heard_text(graced)
    assert graced.expiries == []
    plain, _ = await heard_text(FakeAudioSink(buffer=0.2, clear_delay=0.15))
    assert text == plain


async def test_reply_cut_while_synthesizing_is_not_claimed_whole(autojump_clock: trio.abc.Clock) -> None:
    """The interrupt lands while the TTS is still producing the reply: the deaf sink holds
    the audio of two sentences, the third was never synthesized. Taking what the sink
    was given as heard must not claim the third sentence (the segment was reported as
    played out, so livekit's synchronizer wrote the whole reply)."""
    reply = "One two three four. Five six seven eight. Nine ten eleven twelve."
    deaf = FakeAudioSink(clear_delay=math.inf)
    graced = bridge.with_sink_grace(deaf, grace=2.0)
    async with bridge.open_loop():
        session: AgentSession[Any] = AgentSession(
            llm=ScriptedLLM([Reply(text=reply)]), tts=SilentTTS(words_per_second=2.0, ttfb=1.0)
        )
        sync = attach_sink(session, graced)
        await bridge.aio(session.start)(Agent(instructions="test"))
        try:
            handle = session.generate_reply(user_input="count")
            await trio.sleep(1.5)
            assert 0 < deaf.segments[0].captured < SilentTTS().duration_of(reply)  # still synthesizing
            handle.interrupt()
            with trio.fail_after(30):
                await bridge.wait_for_playout(handle)
            (msg,) = [i for i in session.history.items if i.type == "message" and i.role == "assistant"]
        finally:
            with trio.move_on_after(30, shield=True):
                await bridge.aio(session.aclose)()
                await bridge.aio(sync.aclose)()
    text = msg.text_content or ""
    assert msg.interrupted and reply.startswith(text) and words(text) > 0
    assert "Nine" not in text  # no word of audio the sink never had
    (expiry,) = graced.expiries
    assert not expiry.played_out and expiry.position == pytest.approx(deaf.segments[0].captured)


async def test_time_spent_paused_extends_the_audio_still_to_play(autojump_clock: trio.abc.Clock) -> None:
    """The wrapper sees pause()/resume() on their way to the sink: audio paused for a
    while plays out that much later, and a sink paused when the grace runs out is not
    playing on (not finished as played out)."""

    async def run(pause_for: float, resume: bool) -> bool:
        async with bridge.open_loop():
            graced = bridge.with_sink_grace(FakeAudioSink(clear_delay=math.inf), grace=0.9)

            async def play_then_clear() -> None:
                for _ in range(20):  # 2 s, taken at once
                    await graced.capture_frame(frame())
                graced.flush()
                await asyncio.sleep(0.3)
                graced.pause()
                await asyncio.sleep(pause_for)
                if resume:
                    graced.resume()
                graced.clear_buffer()
                await graced.wait_for_playout()

            await bridge.aio(play_then_clear)()
            (expiry,) = graced.expiries
            return expiry.played_out

    # audio 0-2 s (the fake sink itself ignores the pause), cleared at 0.3 + the pause,
    # given up 0.9 s later
    assert await run(pause_for=0.0, resume=True) is True  # ends 2.0 > 1.2: it plays on
    assert await run(pause_for=1.0, resume=True) is True  # ends 3.0 > 2.2 (2.0 without the pause)
    assert await run(pause_for=1.0, resume=False) is False  # still paused: not playing
