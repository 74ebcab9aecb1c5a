"""The page of trio_playout.web in a real headless Chromium, against the real server.

Chromium's fake microphone plays a WAV made here with espeak-ng (the user): silence,
a 0.12 s "mm" blip at 2 s (Silero hears voice for ~0.2 s; PocketSphinx no word),
then words at 4.5 s. The offline agent (Silero VAD, PocketSphinx STT, RuleLLM,
espeak-ng) greets when the page connects. Each step is observed where it happens:
the page's own state over the DevTools protocol, the server's sink, session and
microphone in this process.

* Both tests: the page loads, connects, says hello; the greeting really plays (the
  page's player reports ``started``/``progress`` and the server's sink gets them);
  the words barge in: pause, then (the STT's words) clear; the player answers
  ``cleared`` with the position it really played, and the server's history holds
  the greeting cut exactly there (computed here from the TTS's own word timings),
  marked interrupted; the reply plays in the page; the server got the microphone as
  16 kHz PCM that matches the WAV (same pitch and timing).
* Default turn options: the blip is too short to barge in: nothing pauses before
  the words. Takes the screenshot.
* ``pause_on_speech_start`` (issue 12; the page's toggle): the blip pauses the
  greeting at once and, with no words, it resumes (a false interruption) from the
  very sample where it stopped.

Why a blip and not a longer hum for the false interruption: under the default
options a false interruption needs >= 0.5 s of voice and then no words, and
PocketSphinx hears words ("yeah", "m m m", "louis") in 9 of 10 espeak hums played
through the browser: that would test the recognizer's luck, not the transport.

Bounds are generous and nothing asserts on wall-clock time. Without
``/usr/bin/chromium`` (``TRIO_PLAYOUT_CHROMIUM`` overrides) the tests skip; CI installs
it (``.ci/run``). ``TRIO_PLAYOUT_SCREENSHOT=docs/web.png`` also saves the page's
screenshot there (the README's picture).
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import json
import os
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

# Locally a missing part skips these tests; in CI (CI=true; .ci/run installs Chromium
# and the test extra) it fails them, so the browser tests cannot vanish unnoticed.
IN_CI = os.environ.get("CI") == "true"


def _need(module: str) -> Any:
    return importlib.import_module(module) if IN_CI else pytest.importorskip(module)


_need("trio_websocket")
np = _need("numpy")
_need("onnxruntime")
_need("pocketsphinx")

import trio_playout as tp  # noqa: E402
from trio_playout.web import Agent, Conversation, ConversationInfo, ServerOptions, WebServer  # noqa: E402

from . import browser  # noqa: E402

pytestmark = pytest.mark.skipif(
    browser.chromium_path() is None and not IN_CI,
    reason=f"{browser.CHROMIUM} is not installed (Debian: apt-get install chromium)")

RATE = 16000
GREETING = ("Hello! I am a trio playout agent. I run in one trio process, and I stop talking "
            "the moment you do. Try it now: talk over me, or just cough.")
BLIP_AT, WORDS_AT, WAV_END = 2.0, 4.5, 14.0


def _espeak() -> Any:
    espeak = _need("trio_playout.espeak")
    try:
        espeak.library_path()
    except espeak.SpeechEngineError as exc:  # no libespeak-ng at all
        if IN_CI:
            raise
        pytest.skip(f"espeak-ng is not available: {exc}")
    return espeak


@pytest.fixture(scope="module")
def user_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone's file: silence, a blip at BLIP_AT, words at WORDS_AT."""
    espeak = _espeak()
    hum = np.frombuffer(espeak.EspeakTTS("en+m3", rate=120).render_sync("Mmm.", sample_rate=RATE).data,
                        dtype="<i2").astype(np.float64)
    start = int(np.nonzero(np.abs(hum) > 300)[0][0])
    blip = hum[start:start + int(0.12 * RATE)].copy()
    fade = int(0.01 * RATE)
    blip[:fade] *= np.linspace(0, 1, fade)
    blip[-fade:] *= np.linspace(1, 0, fade)
    words = espeak.EspeakTTS("en+m3", rate=165).render_sync("Wait, tell me about the river.",
                                                             sample_rate=RATE)
    out = np.zeros(int(WAV_END * RATE), dtype="<i2")
    for at, pcm in ((BLIP_AT, blip.astype("<i2")), (WORDS_AT, np.frombuffer(words.data, dtype="<i2"))):
        out[int(at * RATE):int(at * RATE) + len(pcm)] = pcm
    path = tmp_path_factory.mktemp("mic") / "user.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(out.tobytes())
    return path


class WordClock:
    """A TTS passed through unchanged that notes each synthesis' text, word timings and
    length, so the test knows the words' times without asking the session."""

    def __init__(self, inner: tp.TTS) -> None:
        self.inner = inner
        self.calls: list[tuple[str, list[tp.WordTiming], list[float]]] = []

    async def synthesize(self, text: str) -> AsyncIterator[tp.SynthesizedAudio]:
        words: list[tp.WordTiming] = []
        length = [0.0]
        self.calls.append((text, words, length))
        stream = self.inner.synthesize(text)
        try:
            async for chunk in stream:
                words.extend(chunk.words)
                length[0] += chunk.frame.duration
                yield chunk
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()

    def heard(self, text: str, position: float) -> str:
        """``text`` (said as one speech) up to the last word that started before ``position``."""
        offset, cursor, end = 0.0, 0, 0
        for said, words, length in self.calls:
            at = text.find(said.strip(), cursor)
            if at < 0:
                continue
            for word in words:
                if offset + word.start < position:
                    end = max(end, at + word.end_char)
            offset += length[0]
            cursor = at + len(said.strip())
            if cursor >= len(text.rstrip()):
                break
        return text[:end]


class MicTap:
    """A VAD passed through unchanged that keeps the PCM the server got from the page."""

    def __init__(self, inner: tp.VAD) -> None:
        self.inner = inner
        self.pcm = bytearray()
        self.rates: set[int] = set()

    def stream(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.VADEvent]:
        return self.inner.stream(self._tap(frames))

    async def _tap(self, frames: AsyncIterator[tp.AudioFrame]) -> AsyncIterator[tp.AudioFrame]:
        async for frame in frames:
            self.pcm += frame.data
            self.rates.add(frame.sample_rate)
            yield frame


@dataclasses.dataclass
class Run:
    server: WebServer
    conversations: list[Conversation]
    clock: WordClock
    mics: list[MicTap]


@pytest.fixture(scope="module")
def offline_parts() -> Any:
    _espeak()
    from trio_playout.offline import offline_agent

    return offline_agent()


def _server(offline: Any, options: ServerOptions | None = None) -> Run:
    clock = WordClock(offline.tts)
    conversations: list[Conversation] = []
    mics: list[MicTap] = []

    def factory(info: ConversationInfo) -> Agent:
        mics.append(MicTap(offline.vad))
        # the page's toggle, as python -m trio_playout.web takes it
        turn = tp.TurnOptions(pause_on_speech_start=info.query.get("pause_on_speech_start") == "1")
        return Agent(llm=offline.llm, tts=clock, vad=mics[-1], stt=offline.stt, tools=offline.tools,
                     turn=turn, greeting=GREETING)

    return Run(WebServer(factory, options, on_conversation=conversations.append), conversations, clock, mics)


STATE = """JSON.stringify({connection: trioPage.connection, sent: trioPage.sent, received: trioPage.received,
  reports: trioPage.reports, events: trioPage.events.map(e => e.data), bargeIns: trioPage.bargeIns,
  history: trioPage.history, errors: trioPage.errors, closeCode: trioPage.closeCode,
  segments: trioPage.segments, pauseOnSpeechStart: trioPage.pauseOnSpeechStart,
  server: trioPage.server, timeline: document.getElementById('timeline-marks').innerText,
  historyText: document.getElementById('history').innerText})"""


async def _converse(run: Run, wav: Path, *, query: str = "", toggle: bool = False,
                    shot: Path | None = None) -> tuple[dict[str, Any], list[str], str]:
    """One conversation from Talk to hang-up: the page's final state, its console, and
    the websocket URL it opened."""
    with trio.fail_after(90):
        async with trio.open_nursery() as nursery:
            await nursery.start(run.server.serve, "127.0.0.1", 0)
            async with browser.launch(fake_capture=wav) as chromium:
                page = await chromium.open_page(f"http://127.0.0.1:{run.server.port}/{query}")
                assert await page.evaluate("trioPage.connection") == "idle"
                assert (await page.evaluate("document.title")).startswith("trio-playout")
                if toggle:
                    await page.click("#pause-on-start")
                await page.send("Network.enable")
                async with chromium.expect(lambda m, p: m == "Network.webSocketCreated") as created:
                    await page.click("#talk")
                    await page.wait_for("trioPage.connection === 'open'", limit=20)
                    ws_url = (await created.receive())[1]["url"]
                # the greeting plays in the page
                await page.wait_for("trioPage.reports.filter(r => r.type === 'progress').length >= 3",
                                    limit=20)
                # the words: paused, then cleared; then the reply plays
                await page.wait_for("trioPage.sent.cleared >= 1", limit=30)
                await page.wait_for("trioPage.reports.some(r => r.type === 'progress' && r.segment > 1"
                                    " && r.position >= 0.6)", limit=30)
                if shot is not None:
                    await page.screenshot(shot)
                await page.wait_for("trioPage.reports.some(r => r.type === 'finished' && r.segment > 1)",
                                    limit=30)
                state = json.loads(await page.evaluate(STATE))
                await page.click("#talk")  # hang up
                assert run.conversations, "the server never saw the page's hello"
                with trio.fail_after(10):
                    await run.conversations[0].finished.wait()
                console = list(chromium.console)
            nursery.cancel_scope.cancel()
    return state, console, ws_url


def _check_conversation(run: Run, state: dict[str, Any], console: list[str], wav: Path) -> float:
    """What both tests check (see the module); returns the cleared position."""
    assert not state["errors"], state["errors"]
    assert not [line for line in console if line.startswith("exception")], console
    conversation = run.conversations[0]
    assert conversation.hello is not None and conversation.hello.sample_rate == RATE
    assert state["server"]["conversation"] == conversation.number
    assert conversation.close_code == 1000
    reports = state["reports"]
    kinds = [(r["type"], r.get("segment")) for r in reports if r["type"] != "progress"]

    # The greeting (segment 1) played in the page, and its reports reached the server's sink.
    assert conversation.output is not None
    server_reports = [r.message for r in conversation.output.reports]
    assert kinds[0] == ("started", 1), kinds
    assert any(type(m).__name__ == "Started" and m.segment == 1 for m in server_reports)
    assert any(type(m).__name__ == "Progress" and m.segment == 1 and m.position > 0.5 for m in server_reports)
    ones = [r["position"] for r in reports if r.get("segment") == 1 and "position" in r]
    assert ones == sorted(ones), "a segment's position never goes back"

    # The words: a pause, then a clear; the page's cleared position is the one the server used.
    cleared = [r for r in reports if r["type"] == "cleared"]
    assert [r["segment"] for r in cleared] == [1], kinds
    cut = cleared[0]["position"]
    before_clear = reports[:reports.index(cleared[0])]
    paused = [r for r in before_clear if r["type"] == "paused"]
    # No pause at all: the STT's final words arrived before 0.5 s of *voiced* speech (a
    # comma or two), and words interrupt at once (seen once in CI on Python 3.13).
    last_pause = paused[-1] if paused else None
    resumed_after = last_pause is not None and any(
        r["type"] == "resumed" for r in before_clear[before_clear.index(last_pause):])
    if last_pause is None:
        pass
    elif resumed_after:
        # The pause ended first (a false interruption: on a loaded machine the STT's
        # words can come after the timeout) and the words then stopped the playing audio.
        assert cut >= last_pause["position"], "a segment's position never goes back"
    else:
        assert last_pause["segment"] == 1
        assert last_pause["position"] == cut, f"no sound between pause and clear: {kinds}"
    server_cleared = [m for m in server_reports if type(m).__name__ == "Cleared"]
    assert [(m.segment, m.position) for m in server_cleared] == [(1, cut)]
    assert not [r for r in reports[reports.index(cleared[0]):] if r.get("segment") == 1
                and r["type"] == "progress"], "segment 1 played on after the clear"

    # The server's history: the greeting cut where the page stopped, the user, the reply.
    history = [i for i in conversation.history if isinstance(i, tp.ChatMessage)]
    assert [m.role for m in history][:3] == ["assistant", "user", "assistant"], history
    expected = run.clock.heard(GREETING, cut)
    assert expected and len(expected) < len(GREETING.rstrip())
    assert history[0].text == expected and history[0].interrupted, (history[0], expected, cut)
    assert history[1].text.strip() and not history[2].interrupted
    assert state["history"][0] == {"role": "assistant", "text": expected, "interrupted": True}
    assert "interrupted" in state["historyText"]

    # The reply played whole: the page's position at 'finished' is all the audio it got.
    done = [r for r in reports if r["type"] == "finished" and r["segment"] > 1]
    got = state["segments"][str(done[0]["segment"])]
    assert abs(done[0]["position"] - got["samples"] / got["rate"]) < 0.005, (done[0], got)

    # The words' barge-in was timed on the server, and the page drew it.
    timed = conversation.barge_ins
    assert timed and all(b.action == "pause" for b in timed), timed
    for b in timed:
        assert b.decided_at is not None and b.sent_at is not None and b.stopped_at is not None
        assert b.onset_at <= b.decided_at <= b.sent_at <= b.stopped_at
        assert b.stopped_at - b.onset_at < 3.0  # generous: the VAD needs up to ~0.5 s of voice
    # (the page times every pause of audible audio; the server one per VAD speech: with
    # pause_on_speech_start a pause between words resumes and pauses again inside it)
    assert len(state["bargeIns"]) >= len(timed)
    assert sum(1 for b in state["bargeIns"] if b["server"]) == len(timed)
    drawn = "player confirmed the stop" if state["bargeIns"][-1]["server"] else "agent audio stopped (player)"
    assert drawn in state["timeline"], state["timeline"]

    # The microphone reached the server as the WAV, at 16 kHz: same pitch, same timing.
    mic = run.mics[0]
    assert mic.rates == {RATE}
    heard = np.frombuffer(bytes(mic.pcm), dtype="<i2").astype(np.float64)
    with wave.open(str(wav)) as w:
        said = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float64)
    n = min(len(heard), len(said), int((WORDS_AT + 2) * RATE))
    xcorr = np.fft.irfft(np.fft.rfft(heard[:n], 2 * n) * np.conj(np.fft.rfft(said[:n], 2 * n)))
    half = RATE // 4
    lag = int(np.argmax(np.abs(np.concatenate([xcorr[-half:], xcorr[:half]])))) - half
    a, b = heard[max(0, lag):n], said[max(0, -lag):n]
    a, b = a[:min(len(a), len(b))], b[:min(len(a), len(b))]
    similarity = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
    assert similarity > 0.5 and abs(lag) < 0.2 * RATE, (similarity, lag)

    print(f"\nmic: lag {1000 * lag / RATE:.1f} ms, similarity {similarity:.3f}; cut at {cut:.3f} s; "
          "barge-ins (server, ms from onset: decided / sent / confirmed):",
          [(round(1000 * (b.decided_at - b.onset_at)), round(1000 * (b.sent_at - b.onset_at)),
            round(1000 * (b.stopped_at - b.onset_at))) for b in timed
           if b.decided_at and b.sent_at and b.stopped_at],
          "page (pause arrived -> player stopped, ms):",
          [round(b["stoppedAt"] - b["commandAt"], 1) for b in state["bargeIns"]])
    return cut


async def test_greeting_plays_and_words_interrupt_it_in_chromium(
        user_wav: Path, offline_parts: Any, tmp_path: Path) -> None:
    run = _server(offline_parts)
    shot = tmp_path / "web.png"
    state, console, ws_url = await _converse(run, user_wav, shot=shot)
    assert "pause_on_speech_start" not in ws_url
    assert state["pauseOnSpeechStart"] is False  # offered by the server, off
    _check_conversation(run, state, console, user_wav)
    reports = state["reports"]
    # the blip was too short to barge in: the only pause is the words' (none when their
    # final transcript came before 0.5 s of voiced speech and interrupted at once)
    assert [r["type"] for r in reports].count("paused") <= 1
    assert not [e for e in state["events"] if e.get("event") == "false_interruption"]
    png = await trio.Path(shot).read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    target = os.environ.get("TRIO_PLAYOUT_SCREENSHOT")
    if target:
        await trio.Path(target).write_bytes(png)


async def test_a_blip_pauses_and_resumes_with_pause_on_speech_start_in_chromium(
        user_wav: Path, offline_parts: Any) -> None:
    run = _server(offline_parts)
    state, console, ws_url = await _converse(run, user_wav, toggle=True)
    assert "pause_on_speech_start=1" in ws_url  # the page's toggle ...
    assert run.conversations[0].query == {"pause_on_speech_start": "1"}  # ... reached the factory
    assert state["pauseOnSpeechStart"] is True  # and the server's session message confirmed it
    cut = _check_conversation(run, state, console, user_wav)
    reports = state["reports"]
    pauses = [i for i, r in enumerate(reports) if r["type"] == "paused"]
    blip = reports[pauses[0]]
    assert blip["segment"] == 1 and 0.3 < blip["position"] < cut
    after = reports[pauses[0] + 1:]
    assert after[0]["type"] == "resumed", after[:3]
    # it went on from the very sample where it stopped: nothing skipped, nothing replayed
    going = next(r for r in after if r["type"] == "progress")
    assert going["segment"] == 1 and blip["position"] < going["position"] <= blip["position"] + 0.3
    false = [e for e in state["events"] if e.get("event") == "false_interruption"]
    assert false and false[0]["resumed"] is True and false[0]["provisional"] is True
    server_false = [b for b in run.conversations[0].barge_ins if b.stopped_at is not None]
    # The blip's pause was timed end to end on the server (the words' barge-in is usually
    # recorded too; a pause whose confirmation came after the next speech started used to
    # be dropped under load, see test_web_server's test of that).
    assert len(server_false) >= 1 and server_false[0].action == "pause"


# -- the worklets alone, in an OfflineAudioContext (rendered faster than real time) ------

CAPTURE = """(async ([rate, freq]) => {
  const ctx = new OfflineAudioContext({numberOfChannels: 1, length: rate, sampleRate: rate});
  await ctx.audioWorklet.addModule('/static/capture-worklet.js');
  const node = new AudioWorkletNode(ctx, 'trio-capture', {numberOfInputs: 1, numberOfOutputs: 1,
    outputChannelCount: [1], processorOptions: {targetRate: 16000, chunkMs: 20}});
  const chunks = [];
  node.port.onmessage = (e) => chunks.push(Array.from(new Int16Array(e.data.buffer)));
  const osc = new OscillatorNode(ctx, {frequency: freq});
  osc.connect(new GainNode(ctx, {gain: 0.5})).connect(node);
  node.connect(ctx.destination);
  osc.start();
  await ctx.startRendering();
  for (let seen = -1; seen !== chunks.length;) {
    seen = chunks.length;
    await new Promise((r) => setTimeout(r, 50));
  }
  return chunks;
})(%s)"""

# The player's script: at 0.1 s a pause with nothing queued, 0.2 resume; at 0.3 segment 1
# (0.3 s of a 440 Hz sine, flushed) and segment 2 (0.5 s, not flushed); a pause at 0.4,
# resume at 0.5; a clear at 1.0. Messages are posted while the context is suspended.
PLAYER = """(async ([rate, srcRate]) => {
  const ctx = new OfflineAudioContext({numberOfChannels: 1, length: rate * 1.2, sampleRate: rate});
  await ctx.audioWorklet.addModule('/static/player-worklet.js');
  const node = new AudioWorkletNode(ctx, 'trio-player', {numberOfInputs: 0, numberOfOutputs: 1,
    outputChannelCount: [1]});
  const reports = [];
  node.port.onmessage = (e) => reports.push(e.data);
  node.connect(ctx.destination);
  const settle = () => new Promise((r) => setTimeout(r, 30));
  const send = (m, t) => node.port.postMessage(m, t || []);
  const feed = (segment, seconds) => {
    const n = Math.round(seconds * srcRate), step = Math.round(0.02 * srcRate);
    for (let i = 0; i < n; i += step) {
      const a = new Int16Array(Math.min(step, n - i));
      for (let k = 0; k < a.length; k++) {
        a[k] = Math.round(16000 * Math.sin(2 * Math.PI * 440 * (i + k) / srcRate));
      }
      send({type: 'audio', segment, pcm: a.buffer}, [a.buffer]);
    }
  };
  const at = (t, fn) => ctx.suspend(t).then(async () => { fn(); await settle(); ctx.resume(); });
  at(0.1, () => send({type: 'pause'}));
  at(0.2, () => send({type: 'resume'}));
  at(0.3, () => {
    send({type: 'segment', segment: 1, rate: srcRate}); feed(1, 0.3); send({type: 'flush', segment: 1});
    send({type: 'segment', segment: 2, rate: srcRate}); feed(2, 0.5);
  });
  at(0.4, () => send({type: 'pause'}));
  at(0.5, () => send({type: 'resume'}));
  at(1.0, () => send({type: 'clear'}));
  const out = await ctx.startRendering();
  await settle();
  return {reports, out: Array.from(out.getChannelData(0))};
})(%s)"""


@asynccontextmanager
async def _blank_page() -> AsyncIterator[browser.Page]:
    """A page of the real server (the worklets' origin), no conversation."""
    def factory(info: ConversationInfo) -> Agent:
        raise AssertionError("no conversation here")

    server = WebServer(factory)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, "127.0.0.1", 0)
            async with browser.launch() as chromium:
                yield await chromium.open_page(f"http://127.0.0.1:{server.port}/")
            nursery.cancel_scope.cancel()


async def test_capture_worklet_sends_16k_pcm_in_20ms_chunks() -> None:
    async with _blank_page() as page:
        for rate in (48000, 44100):
            for freq in (1000, 3000, 12000):
                chunks = await page.evaluate(CAPTURE % json.dumps([rate, freq]))
                assert {len(c) for c in chunks} == {320}, (rate, freq)  # 20 ms at 16 kHz
                assert abs(len(chunks) - 50) <= 1  # one second
                x = np.array([v for c in chunks for v in c], dtype=np.float64)[200:] / 32768
                rms = float(np.sqrt(np.mean(x * x)))
                if freq < 8000:  # the pass band: the same tone, the same level
                    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
                    peak = float(np.fft.rfftfreq(len(x), 1 / RATE)[np.argmax(spectrum)])
                    assert abs(peak - freq) <= 2, (rate, freq, peak)
                    assert abs(rms - 0.5 / np.sqrt(2)) < 0.01, (rate, freq, rms)
                else:  # above 8 kHz: filtered out, not folded back as a 4 kHz ghost
                    assert rms < 0.5 / np.sqrt(2) / 100, (rate, freq, rms)


async def test_player_worklet_reports_the_samples_it_output() -> None:
    async with _blank_page() as page:
        for rate, src in ((48000, 22050), (44100, 24000), (48000, 48000)):
            result = await page.evaluate(PLAYER % json.dumps([rate, src]), bound=60)
            out = np.array(result["out"])
            r = [x for x in result["reports"] if x["type"] != "progress"]
            assert [(x["type"], x.get("segment")) for x in r] == [
                ("paused", None), ("resumed", None), ("started", 1), ("paused", 1), ("resumed", None),
                ("finished", 1), ("started", 2), ("cleared", 2)], r
            idle_pause, _, start, pause, resume, finish, start2, clear = r
            assert idle_pause["position"] == 0 and not idle_pause["audible"]
            assert pause["audible"] and clear["audible"]
            # positions are output samples: the time played, pauses excluded
            assert pause["position"] == pytest.approx(pause["time"] - start["time"], abs=1e-6)
            assert finish["position"] == pytest.approx(0.3, abs=1 / src + 1 / rate)  # all of it
            played = pause["position"] + finish["time"] - resume["time"]
            assert played == pytest.approx(finish["position"], abs=1e-6)
            assert start2["time"] == finish["time"]  # back to back
            assert clear["position"] == pytest.approx(clear["time"] - start2["time"], abs=1e-6)
            # progress about every 100 ms of output, never while paused, never backwards
            progress = [x for x in result["reports"] if x["type"] == "progress"]
            for seg in (1, 2):
                positions = [0.0] + [x["position"] for x in progress if x["segment"] == seg]
                assert len(positions) >= 3
                steps = [b - a for a, b in itertools.pairwise(positions)]
                assert all(0.1 - 1e-9 <= step < 0.1 + 128 / rate for step in steps), positions
            assert not [x for x in progress if pause["time"] < x["time"] < resume["time"]]
            # the sound: silence until the start, during the pause and after the clear; in
            # between, the sine resampled, continuing from the very sample where it paused
            i = [round(x["time"] * rate) for x in (start, pause, resume, start2, clear)]
            assert not out[:i[0]].any() and not out[i[1]:i[2]].any() and not out[i[4]:].any()
            one = np.concatenate([out[i[0]:i[1]], out[i[2]:i[3]]])
            two = out[i[3]:i[4]]
            for got in (one, two):
                t = np.arange(len(got)) / rate
                want = 16000 / 32768 * np.sin(2 * np.pi * 440 * t)
                assert np.max(np.abs(got - want)) < 0.002, (rate, src)


async def test_page_shows_why_it_was_closed(offline_parts: Any) -> None:
    run = _server(offline_parts, ServerOptions(token="right"))
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(run.server.serve, "127.0.0.1", 0)
            async with browser.launch() as chromium:
                page = await chromium.open_page(f"http://127.0.0.1:{run.server.port}/?token=wrong")
                await page.click("#talk")
                await page.wait_for("trioPage.closeCode !== null", limit=20)
                text = await page.evaluate("document.getElementById('close-reason').innerText")
                assert await page.evaluate("trioPage.closeCode") == 1008
                assert "1008" in text and "token" in text, text
                assert await page.evaluate("document.getElementById('conn').textContent") == "closed 1008"
                # the right token: connected, the greeting starts
                page = await chromium.open_page(f"http://127.0.0.1:{run.server.port}/?token=right")
                await page.click("#talk")
                await page.wait_for("trioPage.sent.started >= 1", limit=20)
                await page.click("#talk")
            nursery.cancel_scope.cancel()
    assert run.server.closes[1008] == 1
    assert len(run.conversations) == 1


async def test_closing_the_tab_mid_greeting_ends_the_conversation(offline_parts: Any) -> None:
    """A user who closes the tab while the agent speaks: the conversation ends, bounded,
    and the greeting is written as heard up to the last position the page reported."""
    run = _server(offline_parts)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            await nursery.start(run.server.serve, "127.0.0.1", 0)
            async with browser.launch() as chromium:
                page = await chromium.open_page(f"http://127.0.0.1:{run.server.port}/")
                await page.click("#talk")
                await page.wait_for("trioPage.reports.some(r => r.type === 'progress' && r.position > 0.5)",
                                    limit=20)
                await page.close()
                with trio.fail_after(10):
                    await run.conversations[0].finished.wait()
            nursery.cancel_scope.cancel()
    conversation = run.conversations[0]
    assert conversation.close_code in (1001, 1006), conversation.close_code
    assert not run.server.conversations
    assert conversation.output is not None
    positions = [r.message.position for r in conversation.output.reports
                 if type(r.message).__name__ == "Progress" and r.message.segment == 1]
    greeting = next(i for i in conversation.history if isinstance(i, tp.ChatMessage))
    assert greeting.interrupted
    assert greeting.text == run.clock.heard(GREETING, positions[-1]), (greeting, positions[-1])


def test_page_is_self_contained() -> None:
    """No CDN, no build step: every file the page loads is served from /static/."""
    import re

    web = Path(tp.__file__).with_name("data") / "web"
    html = (web / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs
    assert all(ref.startswith("/static/") and (web / ref[len("/static/"):]).is_file() for ref in refs)
    for path in web.iterdir():
        text = path.read_text()
        assert not re.search(r"https?://(?!127\.0\.0\.1)", text), path
        for module in re.findall(r"addModule\(\"([^\"]+)\"\)", text):
            assert (web / module[len("/static/"):]).is_file(), module
