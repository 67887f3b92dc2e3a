"""Benchmarks: `pytest benches --benchmark-only` measures; with `--benchmark-disable`
(as CI runs them) each runs once at a small size, as a smoke check of correctness."""

import os

import pytest

os.environ.setdefault("FERROFLOW_LOGGING_LEVEL", "WARNING")


def pytest_collection_modifyitems(items):
    # Measuring a slow peer three times takes minutes: the suite-wide 60 s cap on a test
    # (there to catch deadlocks) is raised for benchmarks.
    for item in items:
        item.add_marker(pytest.mark.timeout(900))


@pytest.fixture
def size(benchmark):
    """The workload size: the real one when measuring, a small one for the smoke pass."""

    def pick(full: int, smoke: int = 1000) -> int:
        return smoke if benchmark.disabled else full

    return pick
