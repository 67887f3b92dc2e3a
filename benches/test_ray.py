"""RayTaskRunner against plain Ray on the same local instance, in the same run (issue 10).
Run: `pytest benches/test_ray.py --benchmark-only -s`; with `--benchmark-disable` each
test runs once at a small size, as a smoke check.

- A `.map` of 10^4 trivial tasks on `RayTaskRunner()` (which uses the instance this
  process is connected to) against `f.remote(x)` for each x + `ray.get` of their refs:
  the median of several rounds each, alternated, and their ratio (the issue's target:
  at most 1.5).
- A two-stage map (`inc.map(inc.map(xs))`): the intermediate results stay in the
  cluster (the second stage receives ObjectRefs), against the same with `.remote` over
  refs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Read by Ray when it is imported and by the processes it starts: 127.0.0.1 only, no
# token files, no usage reports; this directory on the workers' path (they import
# `inc_fn` from this module by name).
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(Path(__file__).parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
)

ray = pytest.importorskip("ray", reason="ray is in the test extra; no wheel for this platform")

from timing import interleaved  # noqa: E402

from ferroflow import flow, task  # noqa: E402
from ferroflow.ray.task_runners import RayTaskRunner  # noqa: E402

#: What `interleaved` calls the two systems.
NAMES = ("RayTaskRunner", "plain Ray")


def inc_fn(x: int) -> int:
    return x + 1


inc = task(inc_fn, name="inc")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance of two CPUs on 127.0.0.1, shared by both sides."""
    temp_dir = tempfile.mkdtemp(prefix="ffray", dir="/tmp")  # Ray's socket paths must stay short
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 2**20,
        _temp_dir=temp_dir,
        _node_ip_address="127.0.0.1",
    )
    yield ray.remote(inc_fn)
    ray.shutdown()
    shutil.rmtree(temp_dir, ignore_errors=True)



def ferroflow_map(n: int) -> list[int]:
    @flow(task_runner=RayTaskRunner())
    def mapped() -> list[int]:
        return inc.map(range(n)).result()

    return mapped()


def ferroflow_two_stage(n: int) -> list[int]:
    @flow(task_runner=RayTaskRunner())
    def two_stage() -> list[int]:
        return inc.map(inc.map(range(n))).result()

    return two_stage()


def ray_map(remote_inc, n: int) -> list[int]:
    return ray.get([remote_inc.remote(x) for x in range(n)])


def ray_two_stage(remote_inc, n: int) -> list[int]:
    return ray.get([remote_inc.remote(ref) for ref in [remote_inc.remote(x) for x in range(n)]])



def test_map_of_trivial_tasks(benchmark, size, local_ray):
    n = size(10_000, 200)
    if benchmark.disabled:
        assert benchmark.pedantic(ferroflow_map, args=(n,), rounds=1, iterations=1) == ray_map(local_ray, n)
        return
    ratio = interleaved(benchmark, ferroflow_map, lambda k: ray_map(local_ray, k), n, "map of trivial tasks", NAMES)
    assert ratio <= 1.5


def test_two_stage_map(benchmark, size, local_ray):
    n = size(10_000, 200)
    if benchmark.disabled:
        result = benchmark.pedantic(ferroflow_two_stage, args=(n,), rounds=1, iterations=1)
        assert result == ray_two_stage(local_ray, n)
        return
    interleaved(benchmark, ferroflow_two_stage, lambda k: ray_two_stage(local_ray, k), n, "two-stage map", NAMES)
