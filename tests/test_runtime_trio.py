"""Awaiting ferroflow futures under anyio's trio backend (issue 7, item 23): the engine
wakes trio through its token, never by polling. Skipped where trio is not installed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from ferroflow import task

trio = pytest.importorskip("trio")
anyio = pytest.importorskip("anyio")


@task
def slow_inc(x):
    time.sleep(0.05)
    return x + 1


def test_await_a_future_and_a_map_under_trio():
    async def main():
        single = await slow_inc.submit(1)
        mapped = await slow_inc.map([1, 2, 3])
        return single, mapped

    assert anyio.run(main, backend="trio") == (2, [2, 3, 4])
    assert anyio.run(main, backend="asyncio") == (2, [2, 3, 4])


def test_cancelling_a_trio_await_cancels_the_unstarted_run():
    @task
    def blocker():
        time.sleep(0.3)

    async def main():
        first = blocker.submit()
        second = blocker.submit(wait_for=[first])
        with trio.move_on_after(0.05):
            await second
        return first, second

    first, second = anyio.run(main, backend="trio")
    first.wait()
    second.wait()
    assert first.state.is_completed()
    assert second.state.is_cancelled()


def test_code_without_trio_never_imports_it():
    code = (
        "import asyncio, sys; from ferroflow import task\n"
        "@task\nasync def f():\n    await asyncio.sleep(0)\n    return 1\n"
        "async def main():\n    return await f.submit()\n"
        "print(asyncio.run(main()), 'trio' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["1", "False"], out.stderr
