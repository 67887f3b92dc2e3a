"""Seed 001, "Asynchronous Execution": an async flow awaits an async task (it runs at
once), then gathers two task calls, which yield to one another and run concurrently.

Prints ``1 2 a 6 b 7 c 8 d 9 `` on one line (every value followed by a space), as the
seed's ``>>> await async_flow()`` shows, in about 6 s.

The seed's snippet has no imports of ``task`` and ``flow`` (its page imported them
earlier) and never calls the flow: this file adds ``from ferroflow import flow, task``
and an ``if __name__ == "__main__":`` guard that runs it with ``asyncio.run``.
"""
import asyncio

from ferroflow import flow, task

@task
async def print_values(values):
    for value in values:
        await asyncio.sleep(1) # yield
        print(value, end=" ")

@flow
async def async_flow():
    await print_values([1, 2]) # runs immediately
    coros = [] 
    coros.append(print_values("abcd"))
    coros.append(print_values("6789"))

    # asynchronously gather the tasks
    await asyncio.gather(*coros)

if __name__ == "__main__":
    asyncio.run(async_flow())
