"""Seed 004, ``parallel_flow_with_taskgroup``: the same five async runs, each awaited
(``await async_task.submit(n)``) in its own task of an anyio task group.

Prints ``Results: [2, 4, 6, 8, 10]`` (sorted: the runs finish in any order), after
about 1 s: the five runs sleep at the same time.
"""
from ferroflow import flow, task
import asyncio
from typing import List
from anyio import create_task_group

@task
async def async_task(number: int) -> int:
    await asyncio.sleep(1)
    return number * 2

@flow
async def parallel_flow_with_taskgroup(numbers: List[int]):
    results = []

    async def _run_task(n):
        result = await async_task.submit(n)
        results.append(result)

    async with create_task_group() as tg:
        for n in numbers:
            tg.start_soon(_run_task, n)

    print(f"Results: {sorted(results)}")
    return results

# Run the flow
if __name__ == "__main__":
    asyncio.run(parallel_flow_with_taskgroup([1, 2, 3, 4, 5]))
