"""A real headless Chromium for the browser tests, driven over the DevTools protocol.

Debian's ``chromium`` package (``/usr/bin/chromium``; ``.ci/run`` installs it) runs
headless with a fake microphone that reads a WAV file and with autoplay allowed, so a
page can capture and play audio without a person. Nothing is downloaded at run time.

The DevTools protocol is JSON over a websocket: trio-websocket (the web extra's own
websocket library) carries it, and the small CDP session here matches replies to
requests by id and hands events to whoever waits for them. Use :func:`launch` and
:meth:`Browser.open_page`, then :meth:`Page.evaluate`.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

CHROMIUM = os.environ.get("TRIO_PLAYOUT_CHROMIUM", "/usr/bin/chromium")


def chromium_path() -> str | None:
    """The browser to drive, or None when it is not installed."""
    path = shutil.which(CHROMIUM)
    return path


class CDPError(Exception):
    """A DevTools command failed, or a page script threw."""


@dataclass
class _Waiter:
    predicate: Callable[[str, dict[str, Any]], bool]
    send: trio.MemorySendChannel[tuple[str, dict[str, Any]]]


@dataclass
class Browser:
    """One Chromium process and its DevTools connection."""

    ws: WebSocketConnection
    stderr: bytearray
    _next_id: int = 0
    _pending: dict[int, trio.MemorySendChannel[dict[str, Any]]] = field(default_factory=dict)
    _waiters: list[_Waiter] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def _reader(self) -> None:
        try:
            while True:
                message = json.loads(await self.ws.get_message())
                if "id" in message:
                    channel = self._pending.pop(message["id"], None)
                    if channel is not None:
                        channel.send_nowait(message)
                    continue
                method, params = message.get("method", ""), message.get("params", {})
                if method == "Runtime.consoleAPICalled":
                    args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                    self.console.append(f"console.{params['type']}: {args}")
                elif method == "Runtime.exceptionThrown":
                    self.console.append(f"exception: {params['exceptionDetails']}")
                for waiter in list(self._waiters):
                    if waiter.predicate(method, params):
                        waiter.send.send_nowait((method, params))
        except ConnectionClosed:
            for channel in self._pending.values():
                channel.close()

    async def send(self, method: str, params: dict[str, Any] | None = None,
                   session: str | None = None, *, bound: float = 20) -> dict[str, Any]:
        """Run one DevTools command and return its result (within ``bound`` seconds)."""
        self._next_id += 1
        number = self._next_id
        send, receive = trio.open_memory_channel[dict[str, Any]](1)
        self._pending[number] = send
        message: dict[str, Any] = {"id": number, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        await self.ws.send_message(json.dumps(message))
        with trio.fail_after(bound):
            try:
                reply = await receive.receive()
            except trio.EndOfChannel:
                raise CDPError(f"{method}: the browser went away") from None
        if "error" in reply:
            raise CDPError(f"{method}: {reply['error']}")
        result: dict[str, Any] = reply.get("result", {})
        return result

    @asynccontextmanager
    async def expect(self, predicate: Callable[[str, dict[str, Any]], bool]
                     ) -> AsyncIterator[trio.MemoryReceiveChannel[tuple[str, dict[str, Any]]]]:
        """Collect the events matching ``predicate`` while the block runs."""
        send, receive = trio.open_memory_channel[tuple[str, dict[str, Any]]](1000)
        waiter = _Waiter(predicate, send)
        self._waiters.append(waiter)
        try:
            yield receive
        finally:
            self._waiters.remove(waiter)

    async def open_page(self, url: str) -> Page:
        """A new tab at ``url``, attached, with its console collected; waits for ``load``."""
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})
        page = Page(self, attached["sessionId"], target["targetId"])
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        async with self.expect(lambda m, p: m == "Page.loadEventFired") as loaded:
            await page.send("Page.navigate", {"url": url})
            with trio.fail_after(20):
                await loaded.receive()
        return page


@dataclass
class Page:
    browser: Browser
    session: str
    target: str

    async def close(self) -> None:
        """Close the tab, as a user would (its websockets go with it)."""
        await self.browser.send("Target.closeTarget", {"targetId": self.target})

    async def send(self, method: str, params: dict[str, Any] | None = None, *,
                   bound: float = 20) -> dict[str, Any]:
        return await self.browser.send(method, params, self.session, bound=bound)

    async def evaluate(self, expression: str, *, bound: float = 20) -> Any:
        """The JSON value of ``expression`` in the page, promises awaited (a thrown error
        raises CDPError)."""
        result = await self.send("Runtime.evaluate", {
            "expression": expression, "awaitPromise": True, "returnByValue": True,
            "userGesture": True}, bound=bound)
        if "exceptionDetails" in result:
            raise CDPError(f"{expression!r} threw: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, limit: float) -> Any:
        """The first truthy value of ``expression``, waited for inside the page.

        The page re-evaluates it every 20 ms (its own state changes on its events);
        we make one call and bound it by ``limit`` seconds (a bound, not a timing
        assertion). An expression that throws fails at once.
        """
        script = ("new Promise((resolve, reject) => { const check = () => { let v; "
                  f"try {{ v = ({expression}); }} catch (e) {{ reject(e); return; }} "
                  "if (v) resolve(v); else setTimeout(check, 20); }; check(); })")
        with trio.fail_after(limit):
            return await self.evaluate(script, bound=limit + 5)

    async def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element (a user gesture)."""
        box = await self.evaluate(
            f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        x, y = box
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent",
                            {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    async def screenshot(self, path: Path, *, width: int = 1100, height: int | None = None) -> None:
        """A PNG of the page at ``width`` CSS pixels; ``height`` defaults to the content's."""
        async def metrics(h: int) -> None:
            await self.send("Emulation.setDeviceMetricsOverride",
                            {"width": width, "height": h, "deviceScaleFactor": 1, "mobile": False})

        await metrics(height or 800)
        if height is None:
            bottom = await self.evaluate("Math.ceil(document.body.getBoundingClientRect().bottom)")
            await metrics(min(2000, int(bottom) + 8))
        shot = await self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False})
        await trio.Path(path).write_bytes(base64.b64decode(shot["data"]))


BASE_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required", "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream", "--remote-debugging-port=0",
    "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
    "--mute-audio",
)


@asynccontextmanager
async def launch(*, fake_capture: Path | None = None, loop_capture: bool = False,
                 extra_flags: tuple[str, ...] = ()) -> AsyncIterator[Browser]:
    """Start headless Chromium; kill and reap it on the way out (bounded).

    ``fake_capture``: a 16-bit PCM WAV that the fake microphone plays from the
    moment a page opens it (once, then silence, unless ``loop_capture``).
    """
    path = chromium_path()
    if path is None:
        raise FileNotFoundError(f"{CHROMIUM} is not installed")
    with tempfile.TemporaryDirectory(prefix="trio-playout-chromium-") as profile:
        flags = [*BASE_FLAGS, f"--user-data-dir={profile}", *extra_flags]
        if fake_capture is not None:
            flags.append(f"--use-file-for-fake-audio-capture={fake_capture}"
                         + ("" if loop_capture else "%noloop"))
        process = await trio.lowlevel.open_process(
            [path, *flags, "about:blank"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)
        stderr = bytearray()
        try:
            async with trio.open_nursery() as nursery:
                found: trio.MemorySendChannel[str]
                found, endpoint = trio.open_memory_channel[str](1)

                async def drain() -> None:
                    assert process.stderr is not None
                    announced = False
                    async for chunk in process.stderr:
                        stderr.extend(chunk)
                        if len(stderr) > 1 << 20:
                            del stderr[:len(stderr) - (1 << 19)]
                        match = re.search(rb"DevTools listening on (ws://\S+)", stderr)
                        if match and not announced:
                            announced = True
                            found.send_nowait(match.group(1).decode())

                nursery.start_soon(drain)
                with trio.fail_after(30):
                    url = await endpoint.receive()
                async with open_websocket_url(url, max_message_size=64 << 20) as ws:
                    browser = Browser(ws, stderr)
                    nursery.start_soon(browser._reader)
                    try:
                        yield browser
                    finally:
                        with trio.move_on_after(2, shield=True):
                            with suppress(CDPError, ConnectionClosed):
                                await browser.send("Browser.close")
                nursery.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                with trio.move_on_after(3, shield=True):
                    await process.wait()
            if process.returncode is None:
                process.kill()
                with trio.move_on_after(3, shield=True):
                    await process.wait()
