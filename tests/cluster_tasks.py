"""Tasks the tests run in other processes: on Dask's and Ray's clusters (test_dask,
test_ray) and in the process pool's workers (test_process_pool).

They live in a module of their own, at module level: cloudpickle sends them to the
workers by reference, and the workers import this module (the tests' folder is on their
path).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from ferroflow import task


@task
def boom(message="boom"):
    raise ValueError(message)


@task
def nap(seconds, value):
    time.sleep(seconds)
    return value


@task
async def async_double(x):
    import asyncio

    await asyncio.sleep(0.01)
    return 2 * x


class ParentPoison:
    """A value that cannot be unpickled in the flow's process: it proves that a value
    passed between runs on the cluster never travels through that process."""

    def __init__(self, parent_pid, value):
        self.parent_pid = parent_pid
        self.value = value

    def __reduce__(self):
        return _rebuild_poison, (self.parent_pid, self.value)


def _rebuild_poison(parent_pid, value):
    if os.getpid() == parent_pid:
        raise RuntimeError("a ParentPoison value was unpickled in the flow's process")
    return ParentPoison(parent_pid, value)


@task
def poison(parent_pid, value):
    return ParentPoison(parent_pid, value)


@task
def poison_value(poisoned, extra=0):
    return poisoned.value + extra


@task
def poison_values(poisoned):
    return sum(item.value for item in poisoned)


@task
def dies(pid_file):
    """Its worker is killed (`kill_when_written`) while it runs."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


@task(retries=1)
def dies_once(pid_file):
    """Its first attempt's worker is killed (`kill_when_written`); the retry returns."""
    path = Path(pid_file)
    if path.exists():
        return "second attempt"
    path.write_text(str(os.getpid()))
    time.sleep(60)


def kill_when_written(pid_file: Path) -> None:
    """Kills (SIGKILL, as the OOM killer would) the process whose pid appears in the file."""
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        if time.monotonic() > deadline:
            return
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)


@contextlib.contextmanager
def killing_when_written(pid_file: Path) -> Iterator[None]:
    """Meanwhile, a thread kills the process whose pid appears in the file (`dies`,
    `dies_once` write their worker's); it is joined at the end."""
    killer = threading.Thread(target=kill_when_written, args=(pid_file,))
    killer.start()
    try:
        yield
    finally:
        killer.join()
