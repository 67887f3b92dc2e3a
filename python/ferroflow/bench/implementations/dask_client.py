"""The workloads on dask.distributed, as its users write them: `client.map`,
`client.submit` with futures as arguments, `client.gather`.

The cluster is in-process (`LocalCluster(processes=False)`: one worker with a thread
per CPU): nothing is serialised and the whole cost shows in this process's peak RSS,
which makes the comparison with an in-process scheduler fair. It starts before the
timing. Dask's default `pure=True` keys each task by a hash of its arguments; every
workload's tasks have distinct arguments, so none is deduplicated.
"""

# dask is an optional peer, not installed where the package is type-checked: its imports
# do not resolve, and what they give is unknown to pyright.
# pyright: reportMissingImports=false, reportUnknownVariableType=false

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from ..workloads import inc, nap, total


class DaskClient:
    def __init__(self, client: Any) -> None:
        self.client = client

    def trivial_map(self, n: int) -> list[int]:
        results: list[int] = self.client.gather(self.client.map(inc, range(n)))
        return results

    def two_stage_map(self, n: int) -> list[int]:
        results: list[int] = self.client.gather(self.client.map(inc, self.client.map(inc, range(n))))
        return results

    def chain(self, n: int) -> int:
        future = self.client.submit(inc, 0)
        for _ in range(n - 1):
            future = self.client.submit(inc, future)
        result: int = future.result()
        return result

    def fan_in(self, n: int) -> int:
        result: int = self.client.submit(total, self.client.map(inc, range(n))).result()
        return result

    def submit_loop(self, n: int) -> list[int]:
        from dask.distributed import wait

        futures = [self.client.submit(inc, x) for x in range(n)]
        wait(futures)
        results: list[int] = self.client.gather(futures)
        return results

    def sleep_fanout(self, n: int) -> list[int]:
        results: list[int] = self.client.gather(self.client.map(nap, range(n)))
        return results


@contextmanager
def session(workers: int | None) -> Generator[DaskClient, None, None]:
    from dask.distributed import Client, LocalCluster

    threads = workers or os.cpu_count() or 1
    with (
        LocalCluster(
            processes=False,
            n_workers=1,
            threads_per_worker=threads,
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield DaskClient(client)
