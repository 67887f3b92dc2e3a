"""Seed 004, ``complex_mixed_flow``: an async flow starts, in one anyio task group, a
coroutine per number that awaits a submitted sync task and one that awaits a submitted
async task.

Prints::

    Sync results: [2, 4, 6]
    Async results: [3, 6, 9]

after about 1 s (the six runs sleep 1 s each, at the same time).

Fixed from the seed, minimally, where it would not run under Prefect either: the block
uses ``List`` without importing it (``from typing import List`` added), and it ends on
``if name == "__main__":`` with no body (the message was cut off): the guard reads
``__name__`` and runs the flow on ``[1, 2, 3]`` with ``asyncio.run``, as the seed's
other examples do.
"""
from ferroflow import flow, task
from anyio import create_task_group
import asyncio
import time
from typing import List

@task
def sync_task(x: int) -> int:
    time.sleep(1)
    return x * 2

@task
async def async_task(x: int) -> int:
    await asyncio.sleep(1)
    return x * 3

@flow
async def complex_mixed_flow(numbers: List[int]):
    results = {"sync": [], "async": []}

    async def _run_sync(n):
        result = await sync_task.submit(n)
        results["sync"].append(result)

    async def _run_async(n):
        result = await async_task.submit(n)
        results["async"].append(result)

    async with create_task_group() as tg:
        # Start all tasks
        for n in numbers:
            tg.start_soon(_run_sync, n)
            tg.start_soon(_run_async, n)

    print(f"Sync results: {sorted(results['sync'])}")
    print(f"Async results: {sorted(results['async'])}")
    return results

# Run the flow
if __name__ == "__main__":
    asyncio.run(complex_mixed_flow([1, 2, 3]))
