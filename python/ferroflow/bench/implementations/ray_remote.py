"""The workloads on Ray, as its users write them: `@ray.remote` tasks, object refs as
arguments, `ray.get`.

`ray.init(num_cpus=workers)` (default: the CPU count) starts the local cluster, and a
warm-up task per CPU slot starts its worker processes, before the timing (as Prefect's
server and Dask's cluster start before it); each task takes one CPU, so `num_cpus` bounds
the concurrency. Workers are separate processes: the peak RSS measured is the driver's
alone. Ray does not resolve
refs nested in a list, so the fan-in task gets the list of refs and `ray.get`s it.
"""

# ray is an optional peer, not installed where the package is type-checked: its import
# does not resolve, and the module's members are unknown to pyright.
# pyright: reportMissingImports=false, reportUnknownMemberType=false, reportUnknownArgumentType=false

from __future__ import annotations

import logging
import sys
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

from .. import workloads
from ..workloads import crunch, inc, nap, total


def total_of_refs(refs: list[Any]) -> int:
    import ray

    return total(ray.get(refs))


class RayRemote:
    def __init__(self, ray: Any) -> None:
        self.ray = ray
        self.inc = ray.remote(inc)
        self.nap = ray.remote(nap)
        self.total_of_refs = ray.remote(total_of_refs)
        self.crunch = ray.remote(crunch)

    def trivial_map(self, n: int) -> list[int]:
        results: list[int] = self.ray.get([self.inc.remote(x) for x in range(n)])
        return results

    def two_stage_map(self, n: int) -> list[int]:
        firsts = [self.inc.remote(x) for x in range(n)]
        results: list[int] = self.ray.get([self.inc.remote(ref) for ref in firsts])
        return results

    def chain(self, n: int) -> int:
        ref = self.inc.remote(0)
        for _ in range(n - 1):
            ref = self.inc.remote(ref)
        result: int = self.ray.get(ref)
        return result

    def fan_in(self, n: int) -> int:
        result: int = self.ray.get(self.total_of_refs.remote([self.inc.remote(x) for x in range(n)]))
        return result

    def submit_loop(self, n: int) -> list[int]:
        refs = [self.inc.remote(x) for x in range(n)]
        self.ray.wait(refs, num_returns=len(refs))
        results: list[int] = self.ray.get(refs)
        return results

    def sleep_fanout(self, n: int) -> list[int]:
        results: list[int] = self.ray.get([self.nap.remote(x) for x in range(n)])
        return results

    def cpu_map(self, n: int) -> list[int]:
        # Ray's workers are processes already, started before the timing.
        results: list[int] = self.ray.get([self.crunch.remote(x) for x in range(n)])
        return results


@contextmanager
def session(workers: int | None) -> Generator[RayRemote, None, None]:
    import ray
    from ray import cloudpickle as ray_cloudpickle  # Ray's own copy: it pickles with that one

    # Functions travel by value: a measuring child loads this package under a name
    # that Ray's worker processes could not import (see `measure`).
    for module in (workloads, sys.modules[__name__]):
        ray_cloudpickle.register_pickle_by_value(module)
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    try:
        remote = RayRemote(ray)
        remote.sleep_fanout(int(ray.available_resources()["CPU"]))
        yield remote
    finally:
        ray.shutdown()
