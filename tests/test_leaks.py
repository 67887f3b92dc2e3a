"""Nothing leaks (issue 7, B8): a long-lived process that uses tasks as a parallel
library, outside any flow, stays flat.

The results of dropped futures and of direct calls are freed once nobody can read them
any more: resident memory stays flat over 300 results of 1 MiB each, and weak
references to those results are dead after `gc.collect()`. Each measurement runs in a
fresh interpreter, so that nothing else the test session did moves the numbers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("psutil")

RUNS = 300
#: 300 leaked results would be 300 MB; allocator slack and thread stacks are far less.
MAX_GROWTH_MB = 100

SCRIPT = """
import gc, json, sys, time, weakref
import psutil
from ferroflow import flow, task

MODE, RUNS = sys.argv[1], int(sys.argv[2])
refs = []

class Blob:
    # 1 MiB, written (so resident), and weakly referenceable.
    __slots__ = ("data", "__weakref__")
    def __init__(self):
        self.data = bytearray(b"x") * (1 << 20)

@task
def blob(i):
    made = Blob()
    refs.append(weakref.ref(made))
    return made

def settle(expected):
    # Every run has executed; then give the engine a moment to drop what it holds.
    deadline = time.monotonic() + 20
    while len(refs) < expected and time.monotonic() < deadline:
        time.sleep(0.01)
    deadline = time.monotonic() + 3
    while True:
        gc.collect()
        alive = sum(ref() is not None for ref in refs)
        if alive == 0 or time.monotonic() > deadline:
            return alive
        time.sleep(0.05)

def cycle(n):
    if MODE == "dropped_futures":
        for i in range(n):
            blob.submit(i)  # nobody keeps the future
    elif MODE == "read_then_dropped_futures":
        for i in range(n):
            blob.submit(i).result()
    elif MODE == "mapped_then_dropped":
        blob.map(range(n)).result()
    elif MODE == "direct_calls":
        for i in range(n):
            blob(i)
    elif MODE == "flow_runs":
        @flow
        def inside():
            blob.map(range(n)).wait()
            blob.submit(-1)
        inside()

process = psutil.Process()
cycle(20)  # warm-up: threads started, code paths taken
settle(20)
refs.clear()
gc.collect()
baseline = process.memory_info().rss
cycle(RUNS)
alive = settle(RUNS + (1 if MODE == "flow_runs" else 0))
growth = (process.memory_info().rss - baseline) / 2**20
print(json.dumps({"ran": len(refs), "alive": alive, "growth_mb": round(growth, 1)}))
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "mode",
    ["dropped_futures", "read_then_dropped_futures", "mapped_then_dropped", "direct_calls", "flow_runs"],
)
def test_results_nobody_can_read_are_freed_and_memory_stays_flat(mode):
    # glibc's malloc raises its mmap threshold after the first free of a 1 MiB block and
    # then keeps freed blocks in per-thread arenas: RSS would stay high with nothing
    # alive. A fixed threshold returns every freed 1 MiB block to the system, so RSS
    # measures what is held.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(256 * 1024))
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(SCRIPT), mode, str(RUNS)],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
    )
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    expected_runs = RUNS + (1 if mode == "flow_runs" else 0)
    assert report["ran"] == expected_runs, report
    assert report["alive"] == 0, f"{report['alive']} of {expected_runs} results of 1 MiB are still alive: {report}"
    assert report["growth_mb"] < MAX_GROWTH_MB, f"resident memory grew by {report['growth_mb']} MB: {report}"
