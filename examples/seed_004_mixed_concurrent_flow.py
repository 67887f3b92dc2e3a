"""Seed 004, ``mixed_concurrent_flow``: a sync flow maps a sync task and an async task
over five numbers and returns both future lists.

A flow that returns futures hands back their final states (as Prefect 3 does), so this
prints two lists of five states::

    Sync results: [Completed(message=None, type=COMPLETED, result=2), ... result=10)]
    Async results: [Completed(message=None, type=COMPLETED, result=3), ... result=15)]

(the results 2, 4, 6, 8, 10 and 3, 6, 9, 12, 15, in order), after about 1 s: the ten
runs sleep 1 s each, at the same time.

Fixed from the seed, minimally: the block uses ``List`` without importing it, a
``NameError`` under Prefect too (``from typing import List`` added).
"""
from ferroflow import flow, task
import asyncio
import time
from typing import List

@task
def sync_task(x: int) -> int:
    time.sleep(1)  # Simulating work
    return x * 2

@task
async def async_task(x: int) -> int:
    await asyncio.sleep(1)  # Simulating async work
    return x * 3

@flow
def mixed_concurrent_flow(numbers: List[int]):
    # Run concurrent tasks using simple map
    sync_results = sync_task.map(numbers)
    async_results = async_task.map(numbers)
    return sync_results, async_results

# Run the flow
if __name__ == "__main__":
    numbers = [1, 2, 3, 4, 5]
    sync_results, async_results = mixed_concurrent_flow(numbers)
    print(f"Sync results: {sync_results}")
    print(f"Async results: {async_results}")
