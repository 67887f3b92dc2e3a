"""The workloads on dask.distributed, as its users write them: `client.map`,
`client.submit` with futures as arguments, `client.gather`.

The cluster is in-process (`LocalCluster(processes=False)`: one worker with a thread
per CPU): nothing is serialised and the whole cost shows in this process's peak RSS,
which makes the comparison with an in-process scheduler fair. It starts before the
timing. The CPU-bound map needs processes: it runs on a `LocalCluster` of one
single-threaded worker process per CPU, started inside the timing, as the process
pools of the other systems start inside theirs. Dask's default `pure=True` keys each
task by a hash of its arguments; every workload's tasks have distinct arguments, so
none is deduplicated.
"""

# dask is an optional peer: where the package is type-checked it may be missing (its
# imports do not resolve) or installed (its API is partly untyped, and its stubs say a
# string where None turns the dashboard off).
# pyright: reportMissingImports=false, reportUnknownVariableType=false, reportUnknownMemberType=false
# pyright: reportArgumentType=false

from __future__ import annotations

import logging
import os
import sys
import tempfile
import zipfile
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

from .. import workloads
from ..workloads import crunch, inc, nap, total


class DaskClient:
    def __init__(self, client: Any, workers: int) -> None:
        self.client = client
        self.workers = workers

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

    def cpu_map(self, n: int) -> list[int]:
        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(
                processes=True,
                n_workers=self.workers,
                threads_per_worker=1,
                dashboard_address=None,
                silence_logs=logging.WARNING,
            ) as cluster,
            Client(cluster) as client,
        ):
            _ship_workloads(client)
            results = cast("list[int]", client.gather(client.map(crunch, range(n))))
        return results


def _ship_workloads(client: Any) -> None:
    """Lets the worker processes import the CPU-bound task: Dask pickles a function by
    its module's name, and a measuring child loads this package under a private one
    (see `measure`), so the package's `__init__` and `workloads` go to the workers under
    that name, as a zip (`Client.upload_file`, Dask's way to ship code to workers)."""
    package = workloads.__name__.rpartition(".")[0]
    if "." in package:
        return  # the real `ferroflow.bench`: the workers import it themselves
    with tempfile.TemporaryDirectory(prefix="ferroflow-bench-") as directory:
        archive_path = Path(directory, "bench_workloads.zip")
        with zipfile.ZipFile(archive_path, "w") as archive:
            for module in (sys.modules[package], workloads):
                source = Path(module.__file__ or "")
                archive.write(source, f"{package}/{source.name}")
        client.upload_file(str(archive_path))


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
        yield DaskClient(client, threads)
