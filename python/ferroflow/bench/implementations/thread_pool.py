"""The workloads on `concurrent.futures.ThreadPoolExecutor`, as its users write them.

Each run opens its own pool (`with ThreadPoolExecutor() as pool:`, and for the CPU-bound
map `ProcessPoolExecutor`), as a script does;
threads start on demand, so this costs nothing up front. The executor has no futures
as arguments: the chain waits for each result before submitting the next run, and the
fan-in collects the results before handing them to the last task.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, wait
from contextlib import nullcontext

from ..workloads import crunch, inc, nap, total


class ThreadPool:
    def __init__(self, workers: int | None) -> None:
        self.workers = workers

    def _pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.workers)

    def trivial_map(self, n: int) -> list[int]:
        with self._pool() as pool:
            return list(pool.map(inc, range(n)))

    def two_stage_map(self, n: int) -> list[int]:
        with self._pool() as pool:
            return list(pool.map(inc, pool.map(inc, range(n))))

    def chain(self, n: int) -> int:
        x = 0
        with self._pool() as pool:
            for _ in range(n):
                x = pool.submit(inc, x).result()
        return x

    def fan_in(self, n: int) -> int:
        with self._pool() as pool:
            return pool.submit(total, list(pool.map(inc, range(n)))).result()

    def submit_loop(self, n: int) -> list[int]:
        with self._pool() as pool:
            futures = [pool.submit(inc, x) for x in range(n)]
            wait(futures)
            return [future.result() for future in futures]

    def sleep_fanout(self, n: int) -> list[int]:
        with self._pool() as pool:
            return list(pool.map(nap, range(n)))

    def cpu_map(self, n: int) -> list[int]:
        """CPU-bound work needs processes: `ProcessPoolExecutor().map` as its users
        write it (default chunksize and start method)."""
        with ProcessPoolExecutor(max_workers=self.workers) as pool:
            return list(pool.map(crunch, range(n)))


def session(workers: int | None) -> nullcontext[ThreadPool]:
    return nullcontext(ThreadPool(workers))
