"""Seed 004, ``parallel_flow``: an async flow submits an async task five times and
awaits the futures together with ``asyncio.gather`` (ferroflow's futures are
awaitable; Prefect 3's raise ``TypeError``).

Prints ``Results: [2, 4, 6, 8, 10]``. The five runs sleep 1 s each at the same time, on
the flow run's event loop for submitted coroutines, so the flow takes about 1 s, not 5.
"""
from ferroflow import flow, task
import asyncio
from typing import List

@task
async def async_task(number: int) -> int:
    # Simulate some async work
    await asyncio.sleep(1)
    return number * 2

@flow
async def parallel_flow(numbers: List[int]):
    # Create task coroutines
    tasks = [async_task.submit(n) for n in numbers]
    # Wait for all tasks to complete and get results
    results = await asyncio.gather(*tasks)
    print(f"Results: {results}")
    return results

# Run the flow
if __name__ == "__main__":
    asyncio.run(parallel_flow([1, 2, 3, 4, 5]))
