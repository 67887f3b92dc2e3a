"""Seed 000, "Asynchronous execution" (In [6]): an async flow awaits an async task
(it runs at once, inline on the flow's event loop), then runs two more task calls
concurrently with ``asyncio.gather``.

Prints ``1 2 a 6 b 7 c 8 d 9 `` on one line (every value followed by a space, no
newline): ``1 2`` first (about 2 s), then the two gathered calls take turns, one value
each per second (about 4 s more). On stderr: ``Task run 'print_values-0'`` to
``'print_values-2' - Finished in state Completed()`` and the flow's ``Finished in state
Completed()``.

The seed ran this in a notebook, where an event loop is already running and
``asyncio.run()`` raised ``RuntimeError: asyncio.run() cannot be called from a running
event loop`` (there, write ``await async_flow()``). As a script, it runs.
"""
import asyncio

from ferroflow import task, flow

@task
async def print_values(values):
    for value in values:
        await asyncio.sleep(1) # yield
        print(value, end=" ")

@flow
async def async_flow():
    await print_values([1, 2])  # runs immediately
    coros = [print_values("abcd"), print_values("6789")]

    # asynchronously gather the tasks
    await asyncio.gather(*coros)

asyncio.run(async_flow())
