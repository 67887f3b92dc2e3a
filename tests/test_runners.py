"""Task runners: names, duplicates, context managers, limits and thread usage."""
from __future__ import annotations

import itertools
import threading
import time

import pytest

from ferroflow import flow, task
from ferroflow.futures import PrefectFuture
from ferroflow.task_runners import (
    ConcurrentTaskRunner,
    SequentialTaskRunner,
    TaskRunner,
    ThreadPoolTaskRunner,
)


@task
def inc(x):
    return x + 1


def test_thread_pool_is_the_default_runner():
    @flow
    def f():
        pass

    assert type(f.task_runner) is ThreadPoolTaskRunner


def test_concurrent_task_runner_is_the_thread_pool():
    assert ConcurrentTaskRunner is ThreadPoolTaskRunner


def test_runners_are_task_runners():
    assert isinstance(ThreadPoolTaskRunner(), TaskRunner)
    assert isinstance(SequentialTaskRunner(), TaskRunner)


def test_runner_names():
    assert ThreadPoolTaskRunner().name == "threadpool"
    assert ThreadPoolTaskRunner(max_workers=2).name == "threadpool"
    assert SequentialTaskRunner().name == "sequential"


def test_duplicate_makes_an_equal_new_runner():
    runner = ThreadPoolTaskRunner(max_workers=3)
    copy = runner.duplicate()
    assert type(copy) is ThreadPoolTaskRunner
    assert copy is not runner
    assert copy == runner
    assert ThreadPoolTaskRunner(max_workers=4) != runner
    seq = SequentialTaskRunner()
    assert type(seq.duplicate()) is SequentialTaskRunner
    assert seq.duplicate() is not seq


def test_runner_used_directly_as_a_context_manager():
    with ThreadPoolTaskRunner(2) as runner:
        fut = runner.submit(inc, {"x": 1})
        assert isinstance(fut, PrefectFuture)
        assert fut.result() == 2


def test_runner_submit_with_wait_for():
    order = []

    @task
    def first():
        time.sleep(0.1)
        order.append("first")

    @task
    def second():
        order.append("second")

    with ThreadPoolTaskRunner(2) as runner:
        a = runner.submit(first, {})
        runner.submit(second, {}, wait_for=[a]).wait()
    assert order == ["first", "second"]


def test_runner_map_directly():
    with SequentialTaskRunner() as runner:
        assert runner.map(inc, {"x": [1, 2, 3]}).result() == [2, 3, 4]


def test_entering_a_started_runner_raises():
    runner = ThreadPoolTaskRunner(2)
    with runner:
        with pytest.raises(RuntimeError):
            with runner:
                pass


def test_sequential_runner_runs_one_at_a_time_in_submission_order():
    lock = threading.Lock()
    spans = []

    @task
    def work(i):
        start = time.monotonic()
        time.sleep(0.03)
        with lock:
            spans.append((i, start, time.monotonic()))

    @flow(task_runner=SequentialTaskRunner())
    def f():
        futs = [work.submit(i) for i in range(6)]
        for fut in futs:
            fut.wait()

    f()
    assert [i for i, _, _ in spans] == list(range(6))
    for (_, _, prev_end), (_, start, _) in itertools.pairwise(spans):
        assert start >= prev_end


def test_sequential_runner_map_keeps_order():
    order = []

    @task
    def record(i):
        order.append(i)
        return i

    @flow(task_runner=SequentialTaskRunner())
    def f():
        return record.map(range(20)).result()

    assert f() == list(range(20))
    assert order == list(range(20))


class ConcurrencyProbe:
    def __init__(self):
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1


def test_thread_pool_never_exceeds_max_workers():
    probe = ConcurrencyProbe()

    @task
    def busy(i):
        with probe:
            time.sleep(0.05)
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def f():
        return busy.map(range(12)).result()

    assert f() == list(range(12))
    assert 1 <= probe.peak <= 3


def test_thread_pool_does_run_max_workers_at_once(call_with_deadline):
    barrier = threading.Barrier(3, timeout=10)

    @task
    def meet(i):
        barrier.wait()
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def f():
        return meet.map(range(3)).result()

    # Only three runs at the same time can all pass the barrier.
    assert call_with_deadline(f, 20) == [0, 1, 2]


def test_sequential_runner_never_overlaps():
    probe = ConcurrencyProbe()

    @task
    def busy(i):
        with probe:
            time.sleep(0.01)

    @flow(task_runner=SequentialTaskRunner())
    def f():
        busy.map(range(10)).wait()

    f()
    assert probe.peak == 1


def test_big_map_does_not_create_thousands_of_threads(os_thread_count):
    # Threads are counted from here: earlier tests may leave idle pool threads of the
    # process-wide runner, or time-limit helper threads still blocked, behind them.
    before = (threading.active_count(), os_thread_count())
    samples = []

    @task
    def trivial(x):
        if x % 500 == 0:
            samples.append((threading.active_count(), os_thread_count()))
        return x

    @flow
    def f():
        return sum(trivial.map(range(5000)).result())

    assert f() == sum(range(5000))
    samples.append((threading.active_count(), os_thread_count()))
    assert len(samples) == 11
    assert max(py for py, _ in samples) - before[0] < 50, (before, samples)
    assert max(os_ for _, os_ in samples) - before[1] < 50, (before, samples)


@pytest.mark.parametrize("runner", [ThreadPoolTaskRunner(max_workers=3), SequentialTaskRunner()])
def test_runners_pickle_and_copy_as_their_configuration(runner):
    import copy
    import pickle

    with runner.duplicate() as started:
        for again in (pickle.loads(pickle.dumps(started)), copy.copy(started), copy.deepcopy(runner)):
            assert again == runner and type(again) is type(runner)
            assert not again._started
            with again:
                assert again.submit(inc, {"x": 1}).result() == 2
