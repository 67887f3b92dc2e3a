"""The main job: a flow that maps a trivial task over N items (default 10^6), timed.

Run it with `bash scripts/main.sh` (which sets everything up), or `python examples/huge_map.py N`.
"""

import sys
import time

from ferroflow import flow, task


@task
def inc(x: int) -> int:
    return x + 1


@flow
def huge_map(n: int) -> int:
    results = inc.map(range(n)).result()
    assert results[-1] == n, "the last result is wrong"
    return len(results)


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10**6
    started = time.perf_counter()
    count = huge_map(n)
    elapsed = time.perf_counter() - started
    print(f"mapped {count:,} task runs in {elapsed:.2f} s ({elapsed / count * 1e6:.2f} µs per run)")
