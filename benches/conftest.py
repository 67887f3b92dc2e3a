"""Benchmarks: `pytest benches --benchmark-only` measures; with `--benchmark-disable`
(as CI runs them) each runs once at a small size, as a smoke check of correctness."""

import os

import pytest

os.environ.setdefault("FERROFLOW_LOGGING_LEVEL", "WARNING")


@pytest.fixture
def size(benchmark):
    """The workload size: the real one when measuring, a small one for the smoke pass."""

    def pick(full: int, smoke: int = 1000) -> int:
        return smoke if benchmark.disabled else full

    return pick
