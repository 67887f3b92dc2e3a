"""The layer cluster runners share (`ferroflow._remote`, `_core.RemoteResult`), on a
small in-process "cluster" that keeps values in a dict: which readers get a value
kept in the cluster as its handle, which get it fetched, and that fetching happens once,
in one call for a map's values."""

from __future__ import annotations

import itertools
import os
import threading
import time
from typing import Any

import pytest

from ferroflow import _core, flow, task
from ferroflow._remote import Attempt, ClusterRuns, PreparedRun
from ferroflow._worker_runs import RAISED, RETURNED, run_in_cluster_worker
from ferroflow.task_runners import TaskRunner, ThreadPoolTaskRunner


class Handle:
    """A value's handle in the dict cluster."""

    def __init__(self, store: DictCluster, key: int) -> None:
        self.store, self.key = store, key


class DictCluster:
    """Values kept by key; counts what comes out of it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.values: dict[int, Any] = {}
        self.keys = itertools.count()
        self.fetch_calls: list[int] = []  # how many values each fetch call brought


def fetch(handles: list[Handle]) -> list[Any]:
    handles[0].store.fetch_calls.append(len(handles))
    return [handle.store.values[handle.key] for handle in handles]


def resolve(value: Any, store: DictCluster) -> Any:
    """What the cluster does to a run's arguments: its own handles become their values."""
    if isinstance(value, Handle):
        assert value.store is store, "a handle of another cluster reached this one"
        return store.values[value.key]
    if isinstance(value, (list, tuple)):
        return type(value)(resolve(item, store) for item in value)
    if isinstance(value, dict):
        return {key: resolve(item, store) for key, item in value.items()}
    return value


class DictRuns(ClusterRuns):
    def __init__(self, store: DictCluster) -> None:
        super().__init__(("dict", store.name), fetch)
        self.store = store
        self.launched: list[PreparedRun] = []

    def _launch(self, prepared: list[PreparedRun]) -> None:
        self.launched.extend(prepared)
        for item in prepared:
            key = self.task_key(item)
            self._track(Attempt(item, key), key)
            threading.Thread(target=self._execute_one, args=(item, key)).start()

    def _execute_one(self, item: PreparedRun, key: str) -> None:
        definition = (item.definition.key, item.definition.blob)
        args = resolve(item.args, self.store)
        kwargs = resolve(item.kwargs, self.store)
        kind, data, _ = run_in_cluster_worker(
            definition, None, item.identity, args, kwargs, os.getpid(), ThreadPoolTaskRunner
        )
        if kind == RAISED:
            self.raised(key, data)
            return
        assert kind == RETURNED
        handle = Handle(self.store, next(self.store.keys))
        self.store.values[handle.key] = data
        self._attempts[key].handle = handle  # the value's handle in this cluster
        self.completed_remote(key)

    def _cancel_remote(self, handles: list[Any]) -> None:
        pass


class DictRunner(TaskRunner[Any]):
    """A cluster runner on a `DictCluster`."""

    _executes_elsewhere = True

    def __init__(self, store: DictCluster) -> None:
        super().__init__()
        self.store = store
        self.runs: DictRuns | None = None

    @property
    def _worker_count(self) -> int:
        return 1

    def duplicate(self) -> DictRunner:
        return self  # (the test inspects the runs it launched)

    def _start(self, context: Any) -> Any:
        self.runs = DictRuns(self.store)
        return super()._start(context)

    def _execute(self, runs: list[Any]) -> None:
        assert self.runs is not None
        self.runs.submit(runs)


@task
def make(x):
    return {"made": x}


@task
def unpack(box, extra=0):
    return box["made"] + extra


@task
def total(boxes):
    return sum(box["made"] for box in boxes)


@task
def boom():
    raise KeyError("lost")


def test_a_value_kept_in_the_cluster_reaches_a_run_there_as_its_handle():
    store = DictCluster("one")
    runner = DictRunner(store)

    @flow(task_runner=runner)
    def chained():
        made = make.submit(1)
        mapped = make.map([1, 2, 3])
        return unpack.submit(made, 10).result(), total.submit(mapped).result(), total.submit([made, made]).result()

    assert chained() == (11, 6, 2)
    assert runner.runs is not None
    downstream = [item for item in runner.runs.launched if item.name.startswith(("unpack", "total"))]
    assert isinstance(downstream[0].args[0], Handle)  # not the value: its handle
    assert all(isinstance(handle, Handle) for handle in downstream[1].args[0])  # a map's list
    assert all(isinstance(handle, Handle) for handle in downstream[2].args[0])  # nested in a list
    # Only the three `.result()` values came out of the cluster, one fetch each.
    assert store.fetch_calls == [1, 1, 1]


def test_a_maps_values_are_fetched_in_one_call_and_only_once():
    store = DictCluster("map")

    @flow(task_runner=DictRunner(store))
    def mapped():
        futures = make.map(range(5))
        first = futures.result()
        again = futures.result()
        return first, again, futures[0].result()

    first, again, one = mapped()
    assert first == again == [{"made": x} for x in range(5)]
    assert one == {"made": 0}
    assert store.fetch_calls == [5]


def test_state_result_and_hooks_get_the_value():
    store = DictCluster("hooks")
    seen = []

    @task(on_completion=[lambda task, run, state: seen.append(state.result())])
    def hooked(x):
        return x * 2

    @flow(task_runner=DictRunner(store))
    def states():
        future = hooked.submit(4)
        future.wait()
        return future.state.result()

    assert states() == 8
    assert seen == [8]


def test_a_failure_is_not_kept_and_reaches_result_with_its_type():
    @flow(task_runner=DictRunner(DictCluster("fail")))
    def fails():
        return boom.submit().result()

    with pytest.raises(KeyError, match="lost"):
        fails()


def test_a_run_on_another_place_gets_the_value_fetched():
    first, second = DictCluster("first"), DictCluster("second")
    made_here: list[Any] = []

    @flow(task_runner=DictRunner(second))
    def elsewhere(value):
        made_here.append(value)
        return unpack.submit(value).result()

    @flow(task_runner=DictRunner(first))
    def parent():
        return elsewhere(make.submit(7))

    assert parent() == 7
    assert made_here == [{"made": 7}]


def test_remote_result_fetches_once_and_keeps_its_parts():
    store = DictCluster("unit")
    store.values[0] = "value"
    result = _core.RemoteResult(Handle(store, 0), ("dict", "unit"), fetch)
    assert result.place == ("dict", "unit")
    assert result.fetched_here is False
    assert result.value() == "value"
    assert result.value() == "value"
    assert result.fetched_here is True
    assert store.fetch_calls == [1]
    assert "RemoteResult(" in repr(result)


# -- a cluster asked when an attempt started ---------------------------------------------------


class SlowStartRuns(DictRuns):
    """A cluster that tells when an attempt started only when asked: "not started yet",
    2.5 s later, then "long ago". Runs of `queued` wait in its queue forever."""

    reports_starts = True

    def __init__(self, store: DictCluster) -> None:
        super().__init__(store)
        self.questions = 0

    def _launch(self, prepared: list[PreparedRun]) -> None:
        waiting = [item for item in prepared if item.identity[0].startswith("queued")]
        for item in waiting:
            key = self.task_key(item)
            self._track(Attempt(item, key), key)
        super()._launch([item for item in prepared if item not in waiting])

    def _ask_start(self, attempt: Attempt, answered: Any) -> bool:
        self.questions += 1
        started, delay = (None, 2.5) if self.questions == 1 else (time.monotonic() - 100, 0.1)

        def answer() -> None:
            attempt.started_at = started
            answered()

        threading.Timer(delay, answer).start()
        return True


class SlowStartRunner(DictRunner):
    def _start(self, context: Any) -> Any:
        self.runs = SlowStartRuns(self.store)
        return TaskRunner._start(self, context)


@task(timeout_seconds=0.3)
def queued():
    return "never"


slow_attempts: list[float] = []


@task(retries=1, retry_delay_seconds=0.5)
def fails_once_slowly():
    slow_attempts.append(time.monotonic())
    if len(slow_attempts) == 1:
        time.sleep(1.5)
        raise ValueError("first attempt")
    return "second attempt"


def test_a_start_question_out_holds_up_no_other_timer():
    """The flow's fallback limit of a run queued on the cluster asks when it started
    (at 1.3 s); while the answer takes 2.5 s, another run's retry delay (due at 2 s)
    still ends on time: the timer thread never waits for an answer."""
    slow_attempts.clear()

    @flow(task_runner=SlowStartRunner(DictCluster("slow")))
    def both():
        started = time.monotonic()
        stuck = queued.submit()
        retried = fails_once_slowly.submit()
        value = retried.result()
        retried_after = time.monotonic() - started
        return value, retried_after, stuck.wait() or stuck.state

    value, retried_after, stuck = both(return_state=True).result(raise_on_failure=False)
    assert value == "second attempt"
    assert retried_after < 3.3, f"the retry waited for the start question ({retried_after:.1f} s)"
    assert stuck.name == "TimedOut", stuck
