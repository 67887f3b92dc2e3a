"""Seed 004, ``sync_mixed_flow``: a sync flow submits sync and async tasks alike (the
async ones run on the flow run's background event loop) and returns the six futures.

A flow that returns futures hands back their final states (as Prefect 3 does), so this
prints one list of six states, the sync results then the async ones::

    [Completed(message=None, type=COMPLETED, result=2), ... result=4), ... result=6),
     Completed(message=None, type=COMPLETED, result=3), ... result=6), ... result=9)]

(on one line), after about 1 s: the six runs sleep 1 s each, at the same time.

The seed defines this flow next to ``mixed_flow`` (``seed_004_mixed_flow.py``) and
leaves its call commented out (``# sync_mixed_flow([1, 2, 3])``): here the call is
the ``__main__`` guard's, and its return value is printed.
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

# Alternative: Synchronous flow with mixed tasks
@flow
def sync_mixed_flow(numbers: List[int]):
    # This will work too! Prefect handles the async/sync conversion
    sync_results = [sync_task.submit(n) for n in numbers]
    async_results = [async_task.submit(n) for n in numbers]

    # In a sync flow, you don't need asyncio.gather
    # Prefect handles the waiting automatically
    return sync_results + async_results

# Or run the sync flow
if __name__ == "__main__":
    print(sync_mixed_flow([1, 2, 3]))
