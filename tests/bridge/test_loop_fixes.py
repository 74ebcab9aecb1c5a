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


# -- fix 7: cancelled timers leave the heap -------------------------------------------------


async def test_fix7_cancelled_timers_do_not_pile_up_in_the_heap(
    autojump_clock: trio.abc.Clock,
) -> None:
    """livekit arms and cancels timeouts all the time (~200 per interrupted speech, most
    of them far in the future). They used to stay in the loop's timer heap until their
    time came: thousands of dead entries, each push and pop paying Python comparisons."""
    async with bridge.open_loop() as loop:

        async def churn() -> int:
            for _ in range(50):
                # cancelled after they reached the heap (a pass in between) ...
                handles = [loop.call_later(3600, lambda: None) for _ in range(20)]
                await asyncio.sleep(0)
                for h in handles:
                    h.cancel()
                # ... and before (same pass)
                loop.call_later(3600, lambda: None).cancel()
                await asyncio.sleep(0)
            fired = loop.create_future()
            loop.call_later(1.0, fired.set_result, "live timers still fire")
            assert await fired == "live timers still fire"
            return len(loop._timers)  # type: ignore[attr-defined]

        left = await bridge.aio(churn)()
    # 1050 timers were armed and cancelled; asyncio keeps at most ~half a heap of dead
    # ones (and at most 100 when the heap is small)
    assert left <= 200


async def test_fix7_timer_order_and_cancel_semantics(autojump_clock: trio.abc.Clock) -> None:
    async with bridge.open_loop() as loop:

        async def scenario() -> list[str]:
            got: list[str] = []
            done = loop.create_future()
            for i in range(300):  # enough cancelled ones to trigger the compaction
                h = loop.call_later(0.5 + i / 1000, got.append, f"dead{i}")
                if i % 3:
                    h.cancel()
            loop.call_later(0.2, got.append, "a")
            loop.call_at(loop.time() + 0.1, got.append, "first")
            late = loop.call_later(0.3, got.append, "cancelled late")
            loop.call_later(2.0, done.set_result, None)
            await asyncio.sleep(0.25)
            late.cancel()
            await done
            return got

        got = await bridge.aio(scenario)()
    assert got[:2] == ["first", "a"]
    assert "cancelled late" not in got
    assert got[2:] == [f"dead{i}" for i in range(300) if i % 3 == 0]


# -- fix 8: the loop's own queue instead of trio's memory channel ---------------------------


async def test_fix8_callback_order_across_sources() -> None:
    """call_soon from the loop, from trio code and call_soon_threadsafe from a thread
    all run, same-source in call order, also while the loop task is parked."""
    async with bridge.open_loop() as loop:
        got: list[str] = []
        # from trio code while the loop task is parked (it has nothing to run)
        await trio.sleep(0.01)
        for i in range(3):
            loop.call_soon(got.append, f"trio{i}")

        async def from_asyncio() -> None:
            for i in range(3):
                loop.call_soon(got.append, f"aio{i}")
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        await bridge.aio(from_asyncio)()
        assert got == ["trio0", "trio1", "trio2", "aio0", "aio1", "aio2"]

        done = trio.Event()
        token = trio.lowlevel.current_trio_token()

        def thread() -> None:
            for i in range(3):
                loop.call_soon_threadsafe(got.append, f"thread{i}")
            loop.call_soon_threadsafe(token.run_sync_soon, done.set)

        await trio.to_thread.run_sync(thread)
        with trio.fail_after(5):
            await done.wait()
        assert got[6:] == ["thread0", "thread1", "thread2"]


async def test_fix8_stop_and_close_with_callbacks_queued() -> None:
    """Callbacks queued as the loop closes still run (trio-asyncio drains its queue)."""
    got: list[str] = []
    async with bridge.open_loop() as loop:
        loop.call_soon(got.append, "queued before close")
    assert got == ["queued before close"]


# -- fix 9: asyncio's running loop is set while callbacks run --------------------------------


async def test_fix9_the_thread_running_loop_is_set_while_callbacks_run() -> None:
    """Code that bound asyncio's own (C) get_running_loop before trio-asyncio patched it
    (anyio's asyncio backend, under the openai SDK and livekit's plugins) must find the
    bridge loop from asyncio callbacks and tasks; trio code never sees it set."""
    import _asyncio

    c_get_running_loop = _asyncio.get_running_loop  # the C function, never patched
    async with bridge.open_loop() as loop:

        async def in_a_task() -> object:
            await asyncio.sleep(0)
            return c_get_running_loop()

        seen: list[object] = []
        loop.call_soon(lambda: seen.append(c_get_running_loop()))
        assert await bridge.aio(in_a_task)() is loop
        assert seen == [loop]
        # back in trio code: the thread has no running asyncio loop
        assert _asyncio._get_running_loop() is None
