"""The page of trio_playout.web in a real headless Chromium, against the real server.

Chromium's fake microphone plays a WAV made here with espeak-ng (the user): 2 s of
silence, a 0.7 s hum ("Mmm", no words: Silero hears voice, PocketSphinx no word),
silence, then words at 6.5 s. The offline agent (Silero VAD, PocketSphinx STT,
RuleLLM, espeak-ng) greets when the page connects. What must happen, each step
observed where it happens (the page's own state over the DevTools protocol, the
server's sink and session in this process):

* the page loads, connects and says hello; the agent's greeting really plays: the
  page's player reports ``started`` and ``progress`` and the server's sink gets them;
* the hum barges in: the server pauses, the player stops (``paused``), and with no
  words after it the interruption is false: ``resume``, the greeting goes on from
  the very sample where it stopped;
* the words barge in: pause, then (the STT's words) a clear; the player answers
  ``cleared`` with the position it really played, the server's history holds the
  greeting cut exactly there (computed here from the TTS's own word timings) and
  marked interrupted; the agent answers the user's turn and the page plays that too.

Bounds are generous and nothing asserts on wall-clock time. Without
``/usr/bin/chromium`` (``TRIO_PLAYOUT_CHROMIUM`` overrides) the tests skip; CI installs
it (``.ci/run``). ``TRIO_PLAYOUT_SCREENSHOT=docs/web.png`` also saves the page's
screenshot there (the README's picture).
"""

from __future__ import annotations

import dataclasses
import json
import os
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import browser
import pytest
import trio

pytest.importorskip("trio_websocket")
np = pytest.importorskip("numpy")
pytest.importorskip("onnxruntime")
pytest.importorskip("pocketsphinx")

import trio_playout as tp  # noqa: E402
from trio_playout.web import Agent, Conversation, ConversationInfo, ServerOptions, WebServer  # noqa: E402

pytestmark = pytest.mark.skipif(
    browser.chromium_path() is None,
    reason=f"{browser.CHROMIUM} is not installed (Debian: apt-get install chromium)")

RATE = 16000
GREETING = ("Hello! I am a trio playout agent. I run in one trio process, and I stop talking "
            "the moment you do. Try it now: talk over me, or just hum.")
HUM_AT, WORDS_AT, WAV_END = 2.0, 6.5, 17.0


def _espeak() -> Any:
    espeak = pytest.importorskip("trio_playout.espeak")
    try:
        espeak.library_path()
    except Exception as exc:  # no libespeak-ng at all
        pytest.skip(f"espeak-ng is not available: {exc}")
    return espeak


@pytest.fixture(scope="module")
def user_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fake microphone's file: silence, a hum at HUM_AT, words at WORDS_AT."""
    espeak = _espeak()
    hum = espeak.EspeakTTS("en+m3", rate=120).render_sync("Mmm.", sample_rate=RATE)
    words = espeak.EspeakTTS("en+m3", rate=165).render_sync("Wait, tell me about the river.",
                                                             sample_rate=RATE)
    out = np.zeros(int(WAV_END * RATE), dtype="<i2")
    for at, frame in ((HUM_AT, hum), (WORDS_AT, words)):
        pcm = np.frombuffer(frame.data, dtype="<i2")
        start = int(at * RATE)
        out[start:start + len(pcm)] = pcm
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


@dataclasses.dataclass
class Run:
    server: WebServer
    conversations: list[Conversation]
    clock: WordClock


@pytest.fixture(scope="module")
def offline_parts() -> Any:
    _espeak()
    from trio_playout.offline import offline_agent

    return offline_agent()


def _server(offline: Any, options: ServerOptions | None = None) -> Run:
    clock = WordClock(offline.tts)
    conversations: list[Conversation] = []

    def factory(info: ConversationInfo) -> Agent:
        return Agent(llm=offline.llm, tts=clock, vad=offline.vad, stt=offline.stt, tools=offline.tools,
                     greeting=GREETING)

    return Run(WebServer(factory, options, on_conversation=conversations.append), conversations, clock)


STATE = """JSON.stringify({connection: trioPage.connection, sent: trioPage.sent, received: trioPage.received,
  reports: trioPage.reports, events: trioPage.events.map(e => e.data), bargeIns: trioPage.bargeIns,
  history: trioPage.history, errors: trioPage.errors, closeCode: trioPage.closeCode,
  agent: document.getElementById('agent-state').textContent,
  timeline: document.getElementById('timeline-marks').innerText,
  historyText: document.getElementById('history').innerText})"""


async def test_talk_barge_in_and_false_interruption_in_chromium(
        user_wav: Path, offline_parts: Any, tmp_path: Path) -> None:
    run = _server(offline_parts)
    shot = tmp_path / "web.png"
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            await nursery.start(run.server.serve, "127.0.0.1", 0)
            async with browser.launch(fake_capture=user_wav) as chromium:
                page = await chromium.open_page(f"http://127.0.0.1:{run.server.port}/")
                assert await page.evaluate("trioPage.connection") == "idle"
                assert (await page.evaluate("document.title")).startswith("trio-playout")
                await page.click("#talk")
                await page.wait_for("trioPage.connection === 'open'", limit=20)
                # the greeting plays in the page
                await page.wait_for("trioPage.reports.filter(r => r.type === 'progress').length >= 3",
                                    limit=20)
                # the hum: paused, then resumed (a false interruption)
                await page.wait_for("trioPage.events.some(e => e.event === 'false_interruption')", limit=25)
                # the words: paused, then cleared; then the reply plays
                await page.wait_for("trioPage.sent.cleared >= 1", limit=25)
                await page.wait_for("trioPage.reports.some(r => r.type === 'progress' && r.segment > 1"
                                    " && r.position >= 0.6)", limit=25)
                await page.screenshot(shot)
                await page.wait_for("trioPage.reports.some(r => r.type === 'finished' && r.segment > 1)",
                                    limit=25)
                state = json.loads(await page.evaluate(STATE))
                await page.click("#talk")  # hang up
                assert run.conversations, "the server never saw the page's hello"
                with trio.fail_after(10):
                    await run.conversations[0].finished.wait()
                console = list(chromium.console)
            nursery.cancel_scope.cancel()

    target = os.environ.get("TRIO_PLAYOUT_SCREENSHOT")
    png = await trio.Path(shot).read_bytes()
    if target:
        await trio.Path(target).write_bytes(png)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not state["errors"], state["errors"]
    assert not [line for line in console if line.startswith("exception")], console
    conversation = run.conversations[0]
    assert conversation.hello is not None and conversation.hello.sample_rate == RATE
    assert conversation.close_code == 1000
    reports = state["reports"]

    # The greeting (segment 1) played in the page: its reports reached the server's sink.
    server_reports = [r.message for r in conversation.output.reports] if conversation.output else []
    page_kinds = [(r["type"], r.get("segment")) for r in reports if r["type"] != "progress"]
    assert page_kinds[0] == ("started", 1), page_kinds
    assert any(type(m).__name__ == "Started" and m.segment == 1 for m in server_reports)
    first = [r for r in reports if r.get("segment") == 1 and r["type"] in ("progress", "paused", "cleared")]
    positions = [r["position"] for r in first]
    assert positions == sorted(positions), "positions of a segment never go back"

    # The hum: a pause that stopped audible audio, then the resume; nothing skipped or replayed.
    pauses = [i for i, r in enumerate(reports) if r["type"] == "paused"]
    assert len(pauses) >= 2, page_kinds
    hum_pause = reports[pauses[0]]
    assert hum_pause["segment"] == 1 and hum_pause["position"] > 0.3
    after = reports[pauses[0] + 1:]
    assert after[0]["type"] == "resumed", page_kinds
    resumed_progress = next(r for r in after if r["type"] == "progress")
    assert resumed_progress["segment"] == 1
    assert hum_pause["position"] < resumed_progress["position"] <= hum_pause["position"] + 0.3
    false = [e for e in state["events"] if e.get("event") == "false_interruption"]
    assert false and false[0]["resumed"] is True

    # The words: pause, then clear; the page's cleared position is the one the server used.
    cleared = [r for r in reports if r["type"] == "cleared"]
    assert [r["segment"] for r in cleared] == [1]
    cut = cleared[0]["position"]
    words_pause = reports[pauses[1]]
    assert words_pause["segment"] == 1 and cut == words_pause["position"] > hum_pause["position"]
    server_cleared = [m for m in server_reports if type(m).__name__ == "Cleared"]
    assert [(m.segment, m.position) for m in server_cleared] == [(1, cut)]
    assert not [r for r in reports[reports.index(cleared[0]):] if r.get("segment") == 1 and
                r["type"] == "progress"], "segment 1 played on after the clear"

    # The server's history: the greeting cut where the page stopped, then the user, then the reply.
    history = [i for i in conversation.history if isinstance(i, tp.ChatMessage)]
    assert [m.role for m in history][:3] == ["assistant", "user", "assistant"], history
    greeting = history[0]
    assert greeting.interrupted
    expected = run.clock.heard(GREETING, cut)
    assert expected and len(expected) < len(GREETING.rstrip())
    assert greeting.text == expected, (greeting.text, expected, cut)
    assert history[1].text.strip()
    assert not history[2].interrupted
    # ... and the page shows that history
    assert state["history"][0] == {"role": "assistant", "text": expected, "interrupted": True}
    assert "interrupted" in state["historyText"]

    # Both barge-ins were timed on the server, and the page drew the last one.
    timed = conversation.barge_ins
    assert [b.action for b in timed] == ["pause", "pause"], timed
    for b in timed:
        assert b.decided_at is not None and b.sent_at is not None and b.stopped_at is not None
        assert b.onset_at <= b.decided_at <= b.sent_at <= b.stopped_at
        assert b.stopped_at - b.onset_at < 3.0  # generous: the VAD needs ~0.5 s of speech
    assert len(state["bargeIns"]) == 2 and all(b["server"] for b in state["bargeIns"])
    assert "player confirmed the stop" in state["timeline"]
    print("barge-ins (server, ms from onset: decided / sent / confirmed):",
          [(round(1000 * (b.decided_at - b.onset_at)), round(1000 * (b.sent_at - b.onset_at)),
            round(1000 * (b.stopped_at - b.onset_at))) for b in timed if b.decided_at and b.sent_at
           and b.stopped_at],
          "page (pause arrived -> player stopped, ms):",
          [round(b["stoppedAt"] - b["commandAt"], 1) for b in state["bargeIns"]])


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
