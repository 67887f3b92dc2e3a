"""The `ferroflow bench` workloads as pytest-benchmark suites, in-process, for tracking
regressions: `pytest benches/test_workloads.py --benchmark-only`.

Each workload runs at its `--quick` size (the largest), on the bare loop (the floor),
ferroflow, and concurrent.futures (the reference every machine has). Peers that need a
cluster or a server (Dask, Ray, Prefect) are compared by `ferroflow bench`, which runs
each measurement in a fresh interpreter. With `--benchmark-disable`, as CI runs it, each
runs once at a small size: a smoke check that every workload still gives the right answer.
"""

import pytest

from ferroflow.bench.systems import BARE_LOOP, FERROFLOW, SYSTEMS
from ferroflow.bench.workloads import WORKLOADS

BENCHED_SYSTEMS = [BARE_LOOP, FERROFLOW, SYSTEMS["concurrent.futures"]]

#: Smoke sizes where the default (1000) would be slow: 1000 naps take 2.5 s on 20 workers,
#: 1000 CPU-bound tasks 2 s on the bare loop alone.
SMOKE_SIZES = {"sleep_fanout": 40, "cpu_map": 100}


@pytest.mark.parametrize("system", BENCHED_SYSTEMS, ids=lambda s: s.name.replace(" ", "_"))
@pytest.mark.parametrize("workload", WORKLOADS.values(), ids=lambda w: w.name)
def test_workload(benchmark, size, workload, system):
    if workload.name in system.not_applicable:
        pytest.skip(f"{system.name}: {system.not_applicable[workload.name]}")
    n = size(workload.quick_sizes[-1], SMOKE_SIZES.get(workload.name, 1000))
    benchmark.group = f"{workload.name} N={n}"
    with system.open_session(workload.workers) as session:
        result = benchmark.pedantic(getattr(session, workload.name), args=(n,), rounds=3, iterations=1)
    assert result == workload.expected(n)
