"""Ordinary code that crashed, wedged or surprised ferroflow (issue 7: A6, A7, C9, C10,
C11). Scenarios that can kill or wedge the interpreter run in a fresh one.

- A6: a `.map` over more than 2^32 items raises OverflowError, not PanicException.
- A7: a child forked after flows have run, between runs, runs new flows: every time,
  so it is tested in a loop of forks.
- C9: each `.submit`/`.map`/async submit runs in a copy of the submitter's contextvars
  context (as in Prefect): what was set before is visible, what the run sets stays there.
- C10: `max_workers` bounds coroutine runs too.
- C11: work submitted from a done-callback belongs to the flow run of the future, so the
  flow waits for it.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import subprocess
import sys
import textwrap
import threading

import pytest

from ferroflow import flow, task
from ferroflow.task_runners import ThreadPoolTaskRunner


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"did not finish within {timeout} s; stdout so far:\n{out}")


def describe(proc: subprocess.CompletedProcess) -> str:
    code = proc.returncode
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    return f"{how}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


# A6: more than 2^32 items -------------------------------------------------------------

HUGE_MAP = """
import collections.abc
from ferroflow import flow, task

N = 2**32 + 1

@task
def ident(x):
    return x

class OldStyleSequence:
    # Only __len__ and __getitem__ (the old sequence protocol).
    def __len__(self):
        return N
    def __getitem__(self, i):
        if i >= N:
            raise IndexError(i)
        return i

class HugeSequence(collections.abc.Sequence):
    def __len__(self):
        return N
    def __getitem__(self, i):
        if not 0 <= i < N:
            raise IndexError(i)
        return i

def expect_overflow(name, thunk):
    try:
        thunk()
    except OverflowError:
        print("ok", name, flush=True)
    except BaseException as exc:
        print("wrong", name, type(exc).__module__, type(exc).__name__, str(exc)[:200], flush=True)
    else:
        print("wrong", name, "no error", flush=True)

@flow
def in_flow(items):
    return ident.map(items)

for name, make in [("range", lambda: range(N)), ("old_style", OldStyleSequence), ("sequence", HugeSequence)]:
    expect_overflow(f"{name} outside a flow", lambda: ident.map(make()))
    expect_overflow(f"{name} in a flow", lambda: in_flow(make()))
# The engine is not wedged by the refused map.
assert ident.map(range(3)).result() == [0, 1, 2]
print("ok still works", flush=True)
"""


@pytest.mark.timeout(90)
def test_map_over_more_than_2_to_the_32_items_raises_overflow_error_not_a_panic():
    proc = run_python(HUGE_MAP)
    lines = proc.stdout.splitlines()
    wrong = [line for line in lines if not line.startswith("ok ")]
    assert proc.returncode == 0 and not wrong and len(lines) == 7, describe(proc)


# A7: fork -------------------------------------------------------------------------------

FORKS = """
import multiprocessing, os, signal, sys
from ferroflow import flow, task

@task
def double(x):
    return 2 * x

@flow
def work(n):
    return sum(double.map(range(n)).result()) + double.submit(n).result() + double(1)

def expected(n):
    return n * (n - 1) + 2 * n + 2

def child_main():
    signal.alarm(10)  # a hang in the child ends it (SIGALRM), never the test
    ok = work(30) == expected(30) and double.submit(5).result() == 10  # a flow and the default runner
    return 0 if ok else 1

def mp_child():
    sys.exit(child_main())

HOW, FORKS = sys.argv[1], int(sys.argv[2])
context = multiprocessing.get_context("fork")
codes = []
for _ in range(FORKS):
    assert work(100) == expected(100)  # the parent runs flows between forks
    if HOW == "os.fork":
        pid = os.fork()
        if pid == 0:
            sys.exit(child_main())  # a normal exit in the child: its exit hooks run too
        codes.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
    else:
        process = context.Process(target=mp_child)
        process.start()
        process.join()
        codes.append(process.exitcode)
print(*codes)
"""


@pytest.mark.timeout(150)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.parametrize("how", ["os.fork", "multiprocessing"])
def test_every_child_forked_between_flow_runs_runs_a_new_flow(how):
    # One child in 20 to 100 died with SIGSEGV (at its exit, while its workers still ran
    # Python): many forks, not one. 100 forks take 1-3 s.
    forks = 100
    proc = run_python(FORKS, how, str(forks), timeout=120)
    assert proc.returncode == 0, describe(proc)
    codes = [int(code) for code in proc.stdout.split()]
    assert len(codes) == forks, describe(proc)
    failed = {}
    for code in codes:
        if code != 0:
            name = signal.Signals(-code).name if code < 0 else f"exit {code}"
            failed[name] = failed.get(name, 0) + 1
    assert not failed, f"{sum(failed.values())} of {forks} children failed: {failed}\n{proc.stderr[-2000:]}"


# C9: contextvars ------------------------------------------------------------------------

var: contextvars.ContextVar[str] = contextvars.ContextVar("ferroflow_test_var", default="unset")


@task
def read_then_set(gate=None):
    if gate is not None:
        assert gate.wait(10), "gate never opened"
    seen = var.get()
    var.set("set inside the run")
    return seen


@task
def read(i):
    return var.get()


@task
def set_inside(i):
    var.set("set inside a mapped run")
    return i


@task
async def async_read_then_set():
    await asyncio.sleep(0)
    seen = var.get()
    var.set("set inside the coroutine run")
    return seen


def test_submit_runs_in_a_copy_of_the_submitters_context_taken_at_submit(gate):
    @flow
    def f():
        var.set("before submit")
        future = read_then_set.submit(gate)
        var.set("after submit")  # the run's copy was taken at submit
        gate.set()
        first = future.result()
        here = var.get()  # the run's set did not leak back
        second = read_then_set.submit().result()  # nor into the next run on that worker
        return first, here, second

    assert f() == ("before submit", "after submit", "after submit")


def test_map_runs_see_the_submitters_context_and_their_sets_stay_inside():
    @flow
    def f():
        var.set("before map")
        seen = read.map(range(20)).result()
        set_inside.map(range(20)).result()
        return seen, var.get(), read.map(range(20)).result()

    seen, here, seen_after = f()
    assert seen == ["before map"] * 20
    assert here == "before map"
    assert seen_after == ["before map"] * 20


def test_submit_outside_a_flow_runs_in_a_copy_of_the_submitters_context():
    token = var.set("outside a flow")
    try:
        assert read_then_set.submit().result() == "outside a flow"
        assert var.get() == "outside a flow"
        assert read.map(range(4)).result() == ["outside a flow"] * 4
    finally:
        var.reset(token)


def test_async_submit_runs_in_a_copy_of_the_submitters_context():
    @flow
    def sync_flow():
        var.set("sync flow")
        return async_read_then_set.submit().result(), var.get()

    @flow
    async def async_flow():
        var.set("async flow")
        seen = await async_read_then_set.submit()
        return seen, var.get()

    assert sync_flow() == ("sync flow", "sync flow")
    assert asyncio.run(async_flow()) == ("async flow", "async flow")


# C10: max_workers bounds coroutine runs ---------------------------------------------


class InFlight:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["map_in_sync_flow", "submits_gathered_in_async_flow"])
def test_max_workers_bounds_concurrent_async_task_runs(how):
    counter = InFlight()

    @task
    async def throttled(i):
        counter.enter()
        try:
            await asyncio.sleep(0.05)
        finally:
            counter.leave()
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def sync_flow():
        return throttled.map(range(50)).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    async def async_flow():
        return list(await asyncio.gather(*[throttled.submit(i) for i in range(50)]))

    results = sync_flow() if how == "map_in_sync_flow" else asyncio.run(async_flow())
    assert results == list(range(50))
    assert counter.peak <= 2, f"{counter.peak} coroutine runs in flight at once with max_workers=2"


# C11: work submitted from a done-callback ----------------------------------------------

CALLBACK_CHAIN = """
import time
from ferroflow import flow, task

ran = []

@task
def step(i):
    time.sleep(0.001)
    ran.append(i)
    return i

@flow
def chain():
    def next_step(future):
        i = future.result()
        if i < 199:
            step.submit(i + 1).add_done_callback(next_step)
    step.submit(0).add_done_callback(next_step)

chain()
print("when the flow returned", len(ran), flush=True)
time.sleep(0.2)
print("later", len(ran), flush=True)
"""


@pytest.mark.timeout(60)
def test_a_flow_waits_for_work_submitted_from_done_callbacks_of_its_futures():
    proc = run_python(CALLBACK_CHAIN, timeout=30)
    counts = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines())
    assert counts.get("when the flow returned") == "200", describe(proc)
    assert counts.get("later") == "200", describe(proc)
    assert proc.returncode == 0, describe(proc)
