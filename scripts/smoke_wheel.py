"""Smoke test of an installed ferroflow: one sync flow and one async flow.

Run against a wheel installed in a fresh venv, as a script from anywhere
(``python scripts/smoke_wheel.py``): sys.path[0] is then this directory, which holds no
``ferroflow``, so the import below finds the installed package, and the script checks
that it did (a source tree or an editable install would not test the wheel). Shared by
the local wheel check (scripts/check_wheel.py) and the CI workflows (ci.yml, wheels.yml).

Exit status 0 and one line "smoke ok: ..." when both flows gave the expected results.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import sysconfig

import ferroflow
import ferroflow._core
from ferroflow import flow, task, unmapped


@task(retries=1)
def add(x: int, y: int) -> int:
    return x + y


@flow
def sync_flow(n: int) -> int:
    # .map, .submit and a future passed as an argument: the scheduling core's main paths.
    mapped = add.map(range(n), unmapped(1))
    total = add.submit(sum(mapped.result()), 0)
    return add(total, 0)


@task
async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


@flow
async def async_flow(n: int) -> list[int]:
    # Awaited calls, gathered calls and awaited futures, on the flow's event loop.
    first = await double(1)
    gathered = await asyncio.gather(*(double(x) for x in range(n)))
    futures = [double.submit(x) for x in range(n)]
    awaited = [await future for future in futures]
    assert gathered == awaited, (gathered, awaited)
    return [first, *gathered]


def installed_location() -> str:
    """Where ferroflow was imported from; an error unless it is this interpreter's site-packages."""
    paths = sysconfig.get_paths()
    sites = tuple(dict.fromkeys(os.path.realpath(paths[key]) + os.sep for key in ("purelib", "platlib")))
    for module in (ferroflow, ferroflow._core):
        location = os.path.realpath(module.__file__ or "?")
        if not location.startswith(sites):
            sys.exit(f"smoke: {module.__name__} was imported from {location}, not from site-packages ({sites})")
    return os.path.dirname(os.path.realpath(ferroflow._core.__file__ or "?"))


def main() -> int:
    location = installed_location()
    n = 1000
    got = sync_flow(n)
    want = sum(range(1, n + 1))
    assert got == want, f"sync flow: {got} != {want}"
    doubled = asyncio.run(async_flow(10))
    assert doubled == [2, *(2 * x for x in range(10))], f"async flow: {doubled}"
    print(
        f"smoke ok: ferroflow {ferroflow.__version__} on {platform.python_implementation()} "
        f"{platform.python_version()} ({platform.system()} {platform.machine()}), "
        f"sync flow {got}, async flow {len(doubled)} results, from {location}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
