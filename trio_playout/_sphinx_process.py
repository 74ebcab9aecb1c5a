"""The parent's side of a PocketSphinx worker process, for :mod:`trio_playout.sphinx`.

:class:`_WorkerProcess` starts one :mod:`trio_playout._sphinx_worker` process per
stream and runs the two daemon threads that move bytes to and from its pipes;
:class:`_Outbox` is the writer thread's queue, which bounds the audio held for a
worker that falls behind. Also here: the pipe's framing (``_HEADER``), how the
worker is started (``_WORKER``, ``_BOOT``) and the model's ``SAMPLE_RATE``. Kept
apart from the stream's logic because this is the only part that deals in threads,
locks and a subprocess; everything it hands trio goes through ``run_sync_soon``.
"""

from __future__ import annotations

import contextlib
import json
import struct
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from ._exceptions import SpeechEngineError

if TYPE_CHECKING:
    from ._sphinx_stt import PocketSphinxSTT


SAMPLE_RATE = 16000  # the shipped acoustic model's rate
_HEADER = struct.Struct("<cI")
_WORKER = Path(__file__).with_name("_sphinx_worker.py")
# Run the worker file by path (not ``-m``): importing the trio_playout package in every
# worker would cost time for nothing. Drop the ``-c`` entry ('' = cwd) from sys.path first.
_BOOT = "import sys, runpy; del sys.path[0]; runpy.run_path(sys.argv[1], run_name='__main__')"


class _Outbox:
    """What the writer thread sends to the worker, with the audio in it counted.

    The writer thread takes items (blocking); the trio side puts them and asks
    :meth:`full`. Only audio counts towards ``max_bytes``: the parent never holds
    more than that for a worker that cannot keep up (plus the pipe's own buffer).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: deque[tuple[bytes | None, int]] = deque()
        self._audio = 0
        self._cond = threading.Condition()
        self._on_room: Any = None

    def put(self, item: bytes | None, audio: int = 0) -> None:
        with self._cond:
            self._items.append((item, audio))
            self._audio += audio
            self._cond.notify()

    def full(self) -> bool:
        with self._cond:
            return self._audio >= self.max_bytes

    def when_room(self, callback: Any) -> bool:
        """Arrange ``callback()`` (from the writer thread) once there is room; False if there is now."""
        with self._cond:
            if self._audio < self.max_bytes:
                return False
            self._on_room = callback
            return True

    def get(self) -> bytes | None:
        with self._cond:
            while not self._items:
                self._cond.wait()
            item, audio = self._items.popleft()
            self._audio -= audio
            callback = None
            if self._on_room is not None and self._audio < self.max_bytes:
                callback, self._on_room = self._on_room, None
        if callback is not None:
            callback()
        return item


class _WorkerProcess:
    """One worker process and the two threads that talk to it.

    The writer thread drains :class:`_Outbox` into the worker's stdin, so sending
    never blocks trio; the stream stops reading its input while the outbox holds
    ``max_backlog`` seconds of audio. The reader thread turns stdout lines into
    messages (see :meth:`take`), and reports the exit code last (``{"exit": code}``).
    """

    def __init__(self, owner: PocketSphinxSTT) -> None:
        self._owner = owner
        self._token = trio.lowlevel.current_trio_token()
        self._messages: deque[dict[str, Any]] = deque()  # from the reader, not handled yet
        self._lot = trio.lowlevel.ParkingLot()  # woken by a message, room, or the end
        self._outbox = _Outbox(max(2, round(owner.max_backlog * SAMPLE_RATE) * 2))
        self.done = trio.Event()
        self._threads = 2
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(_WORKER)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
        except OSError as exc:
            raise SpeechEngineError(f"cannot start the PocketSphinx worker: {exc}") from exc
        owner.running_workers += 1
        pid = self.proc.pid
        self._thread_objects = [
            threading.Thread(target=self._write_loop, name=f"sphinx-writer-{pid}", daemon=True),
            threading.Thread(target=self._read_loop, name=f"sphinx-reader-{pid}", daemon=True)]
        for thread in self._thread_objects:
            thread.start()

    def send(self, kind: bytes, payload: bytes) -> None:
        self._outbox.put(_HEADER.pack(kind, len(payload)) + payload, len(payload) if kind == b"A" else 0)

    def end_input(self) -> None:
        self._outbox.put(None)  # the writer closes stdin after what is queued

    def full(self) -> bool:
        return self._outbox.full()

    def has_message(self) -> bool:
        return bool(self._messages)

    def take(self) -> list[dict[str, Any]]:
        """The messages that arrived so far, without waiting."""
        out = list(self._messages)
        self._messages.clear()
        return out

    async def next_message(self) -> dict[str, Any] | None:
        """The next message, waiting for it; None once the worker and its threads ended."""
        while not self._messages:
            if self.done.is_set():
                return None
            await self._lot.park()
        return self._messages.popleft()

    async def wait_for_room_or_message(self, *, room: bool = True) -> None:
        """Wait until a message is queued (for :meth:`take`), the worker has ended or,
        if ``room``, the outbox has room again. Cancel-safe: it takes nothing."""
        while not self._messages and not self.done.is_set():
            if room and not self._outbox.when_room(lambda: self._post(self._lot.unpark_all)):
                return
            await self._lot.park()

    async def close(self) -> None:
        """Kill the worker unless it has exited, and wait for both threads (shielded)."""
        self._outbox.put(None)
        if self.proc.poll() is None:
            self.proc.kill()  # abandons a decode in progress; the worker holds nothing shared
        with trio.CancelScope(shield=True):
            await self.done.wait()
        for thread in self._thread_objects:
            thread.join()  # each has posted its last call: only its return is left

    # -- worker threads (must never raise) ----------------------------------------------------
    def _post(self, fn: Any, *args: Any) -> None:
        with contextlib.suppress(trio.RunFinishedError):
            self._token.run_sync_soon(fn, *args)

    def _deliver(self, message: dict[str, Any]) -> None:
        self._messages.append(message)
        self._lot.unpark_all()

    def _thread_ended(self) -> None:
        self._threads -= 1
        if self._threads == 0:
            self._owner.running_workers -= 1
            self.done.set()
            self._lot.unpark_all()

    def _write_loop(self) -> None:
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            while (item := self._outbox.get()) is not None:
                stdin.write(item)
        except (OSError, ValueError):
            pass  # the worker died or was killed: the reader reports it
        finally:
            with contextlib.suppress(OSError):
                stdin.close()
            self._post(self._thread_ended)

    def _read_loop(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            for line in stdout:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = {"error": "decode", "message": f"unreadable worker output {line[:80]!r}"}
                self._post(self._deliver, message)
        except (OSError, ValueError):
            pass
        finally:
            stdout.close()
            self._post(self._deliver, {"exit": self.proc.wait()})
            self._post(self._thread_ended)
