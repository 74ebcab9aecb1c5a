"""Regression tests for the four trio-asyncio breakages the bridge loop fixes."""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import threading
from typing import Any

import pytest
import trio
import trio.testing

import bridge
from bridge._loop import BridgeTrioEventLoop


async def test_open_loop_gives_the_bridge_loop() -> None:
    async with bridge.open_loop() as loop:
        assert isinstance(loop, BridgeTrioEventLoop)
        assert await bridge.aio(asyncio.sleep)(0, "x") == "x"


async def test_fix1_foreign_executor() -> None:
    """livekit's VAD and audio decoder bring their own ThreadPoolExecutor."""
    async with bridge.open_loop() as loop:
        with concurrent.futures.ThreadPoolExecutor(1) as pool:

            async def use_pool() -> str:
                return await loop.run_in_executor(pool, lambda: threading.current_thread().name)

            name = await bridge.aio(use_pool)()
        assert name != threading.current_thread().name


async def test_fix2_cancel_while_waiting_on_a_thread() -> None:
    """Cancelling a task that awaits a thread raises CancelledError at once."""
    release = threading.Event()
    thread_finished = threading.Event()

    def blocking() -> str:
        release.wait(30)
        thread_finished.set()
        return "thread result"

    async with bridge.open_loop():
        outcome: list[str] = []

        async def waiter() -> None:
            try:
                await asyncio.to_thread(blocking)
                outcome.append("resumed with result")
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise

        async def scenario() -> None:
            task = asyncio.ensure_future(waiter())
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        await bridge.aio(scenario)()
        assert outcome == ["cancelled"]
        assert not thread_finished.is_set()  # abandoned, not waited for
        release.set()
        await trio.to_thread.run_sync(thread_finished.wait, 30)


async def test_fix3_negative_delays(autojump_clock: trio.abc.Clock) -> None:
    async with bridge.open_loop() as loop:
        fired: list[float] = []

        async def scenario() -> None:
            loop.call_later(-0.5, lambda: fired.append(loop.time()))
            fut = loop.create_future()
            done, pending = await asyncio.wait([fut], timeout=-1)
            assert not done and pending == {fut}
            fut.cancel()
            await asyncio.sleep(0)

        t0 = loop.time()
        await bridge.aio(scenario)()
        assert len(fired) == 1 and fired[0] == pytest.approx(t0)


async def test_fix4_unhandled_task_error_is_logged_not_fatal(caplog: Any) -> None:
    caplog.set_level(logging.ERROR)
    async with bridge.open_loop() as loop:

        async def boom() -> None:
            raise ValueError("fire and forget")

        async def scenario() -> str:
            asyncio.ensure_future(boom())  # noqa: RUF006 - nobody keeps or awaits it, on purpose
            await asyncio.sleep(0.01)
            gc.collect()
            await asyncio.sleep(0.01)
            loop.call_exception_handler({"message": "Task was destroyed but it is pending!"})
            await asyncio.sleep(0.01)
            return "still running"

        assert await bridge.aio(scenario)() == "still running"
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "never retrieved" in messages
    assert "destroyed but it is pending" in messages


def test_run_passes_trio_run_kwargs() -> None:
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main(x: int) -> float:
        await bridge.aio(asyncio.sleep)(100)
        return x + trio.current_time()

    assert bridge.run(main, 1, clock=clock) == pytest.approx(101.0)


@pytest.mark.parametrize("host", ["open_loop", "run"])
def test_trio_first_program_gives_worker_threads_the_fixed_loop(
    monkeypatch: pytest.MonkeyPatch, host: str
) -> None:
    """A trio-first program that never called bridge.install() (no bridged tool defined
    yet): asyncio.run() in a worker thread must still get a loop with the fixes."""
    import trio_asyncio._sync as ta_sync

    from bridge._loop import BridgeSyncEventLoop, _OriginalSyncLoop

    monkeypatch.setattr(ta_sync, "SyncTrioEventLoop", _OriginalSyncLoop)  # as if never installed

    async def probe() -> tuple[str, bool]:
        loop = asyncio.get_running_loop()
        try:
            fired = loop.create_future()
            loop.call_later(-1, fired.set_result, True)  # fix 3: the stock loop asserts
            return type(loop).__name__, await asyncio.wait_for(fired, 30)
        except AssertionError:
            return type(loop).__name__, False

    def in_thread() -> tuple[str, bool]:
        return asyncio.run(probe())

    async def main() -> tuple[str, bool]:
        return await trio.to_thread.run_sync(in_thread)

    async def via_open_loop() -> tuple[str, bool]:
        async with bridge.open_loop():
            return await main()

    result = bridge.run(main) if host == "run" else trio.run(via_open_loop)
    assert result == (BridgeSyncEventLoop.__name__, True)
