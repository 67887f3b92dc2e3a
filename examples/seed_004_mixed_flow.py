"""Seed 004, ``mixed_flow``: an async flow submits sync tasks (they run on the thread
pool) and async tasks (on the flow run's event loop for coroutines), then awaits all
six futures with one ``asyncio.gather``; the sync futures are awaited without blocking
the flow's loop.

Prints::

    Sync results: [2, 4, 6]
    Async results: [3, 6, 9]

after about 1 s (the six runs sleep 1 s each, at the same time).

The seed's code block also defines ``sync_mixed_flow``, run by
``seed_004_sync_mixed_flow.py``; here it is kept, as in the seed, and not called.
"""
from ferroflow import flow, task
import asyncio
import time
from typing import List

# Synchronous task
@task
def sync_task(x: int) -> int:
    time.sleep(1)  # Simulating some CPU-bound work
    return x * 2

# Asynchronous task
@task
async def async_task(x: int) -> int:
    await asyncio.sleep(1)  # Simulating some I/O-bound work
    return x * 3

# Async flow that combines both types of tasks
@flow
async def mixed_flow(numbers: List[int]):
    # Run sync tasks in parallel
    sync_results = []
    for n in numbers:
        # .submit() works for both sync and async tasks
        sync_results.append(sync_task.submit(n))

    # Run async tasks in parallel
    async_tasks = [async_task.submit(n) for n in numbers]

    # Wait for all tasks to complete
    # Note: Prefect handles the conversion of sync tasks to async automatically
    all_results = await asyncio.gather(
        *sync_results,
        *async_tasks
    )

    # Split results (first half are sync results, second half are async)
    sync_completed = all_results[:len(numbers)]
    async_completed = all_results[len(numbers):]

    print(f"Sync results: {sync_completed}")
    print(f"Async results: {async_completed}")
    return all_results

# Alternative: Synchronous flow with mixed tasks
@flow
def sync_mixed_flow(numbers: List[int]):
    # This will work too! Prefect handles the async/sync conversion
    sync_results = [sync_task.submit(n) for n in numbers]
    async_results = [async_task.submit(n) for n in numbers]

    # In a sync flow, you don't need asyncio.gather
    # Prefect handles the waiting automatically
    return sync_results + async_results

# Run the async flow
if __name__ == "__main__":
    asyncio.run(mixed_flow([1, 2, 3]))
    # Or run the sync flow
    # sync_mixed_flow([1, 2, 3])
