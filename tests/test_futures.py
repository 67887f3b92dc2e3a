"""ferroflow.futures: wait, as_completed, resolve_futures_to_*, and waiting without the GIL."""
from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from ferroflow import flow, task
from ferroflow.futures import (
    PrefectFuture,
    as_completed,
    resolve_futures_to_results,
    resolve_futures_to_states,
    wait,
)
from ferroflow.states import State


@task
def inc(x):
    return x + 1


@task
def fail(msg="boom"):
    raise ValueError(msg)


@task
def wait_on(event, value=None):
    assert event.wait(10), "gate never opened"
    return value


@dataclasses.dataclass
class Holder:
    item: object


# wait --------------------------------------------------------------------------------


def test_wait_returns_done_and_not_done_sets():
    box = {}

    @flow
    def f():
        futs = [inc.submit(i) for i in range(4)]
        result = wait(futs)
        box["done"], box["not_done"] = result.done, result.not_done
        box["by_name"] = (result[0] is result.done, result[1] is result.not_done)
        box["ids"] = {fut.task_run_id for fut in futs}

    f()
    assert isinstance(box["done"], set) and isinstance(box["not_done"], set)
    assert {fut.task_run_id for fut in box["done"]} == box["ids"]
    assert box["not_done"] == set()
    assert box["by_name"] == (True, True)


def test_wait_with_timeout_returns_unfinished_without_raising(gate):
    box = {}

    @flow
    def f():
        fast = inc.submit(1)
        slow = wait_on.submit(gate)
        fast.wait()
        try:
            done, not_done = wait([fast, slow], timeout=0.05)
        finally:
            gate.set()
        box["done"] = {fut.task_run_id for fut in done}
        box["not_done"] = {fut.task_run_id for fut in not_done}
        box["fast"], box["slow"] = fast.task_run_id, slow.task_run_id

    f()
    assert box["done"] == {box["fast"]}
    assert box["not_done"] == {box["slow"]}


def test_wait_removes_duplicates():
    box = {}

    @flow
    def f():
        fut = inc.submit(1)
        box["done"] = wait([fut, fut, fut]).done

    f()
    assert len(box["done"]) == 1


def test_wait_negative_timeout_is_a_value_error():
    @flow
    def f():
        fut = inc.submit(1)
        with pytest.raises(ValueError):
            wait([fut], timeout=-1)
        return "checked"

    assert f() == "checked"


def test_future_list_negative_timeout_is_a_value_error():
    @flow
    def f():
        futs = inc.map([1, 2])
        with pytest.raises(ValueError):
            futs.result(timeout=-1)
        return "checked"

    assert f() == "checked"


# as_completed --------------------------------------------------------------------------


def test_as_completed_yields_every_future():
    box = {}

    @flow
    def f():
        futs = [inc.submit(i) for i in range(5)]
        box["yielded"] = sorted(fut.result() for fut in as_completed(futs))

    f()
    assert box["yielded"] == [1, 2, 3, 4, 5]


def test_as_completed_yields_in_completion_order(gate):
    box = {}

    @flow
    def f():
        slow = wait_on.submit(gate, "slow")
        fast = inc.submit(1)
        order = []
        try:
            for fut in as_completed([slow, fast]):
                order.append(fut.result())
                # Only once the fast one has been yielded may the slow one finish.
                gate.set()
        finally:
            gate.set()
        box["order"] = order

    f()
    assert box["order"] == [2, "slow"]


def test_as_completed_timeout_names_unfinished_count(gate):
    box = {}

    @flow
    def f():
        done = inc.submit(1)
        done.wait()
        blocked = wait_on.submit(gate)
        yielded = []
        try:
            with pytest.raises(TimeoutError) as info:
                for fut in as_completed([done, blocked], timeout=0.05):
                    yielded.append(fut.result())
        finally:
            gate.set()
        box["msg"] = str(info.value)
        box["yielded"] = yielded

    f()
    assert box["yielded"] == [2]
    assert box["msg"] == "1 (of 2) futures unfinished"


# resolve_futures_to_* ------------------------------------------------------------------


def test_resolve_futures_to_states_walks_nested_structures():
    box = {}

    @flow
    def f():
        a, b, c = inc.submit(1), inc.submit(2), inc.submit(3)
        box["resolved"] = resolve_futures_to_states(
            {"list": [a, (b,)], "plain": 9, "holder": Holder(item=c)}
        )

    f()
    resolved = box["resolved"]
    assert resolved["plain"] == 9
    [sa, (sb,)] = resolved["list"]
    sc = resolved["holder"].item
    for state, value in ((sa, 2), (sb, 3), (sc, 4)):
        assert isinstance(state, State)
        assert state.is_completed()
        assert state.result() == value


def test_resolve_futures_to_states_keeps_failures_as_states():
    box = {}

    @flow
    def f():
        box["resolved"] = resolve_futures_to_states([fail.submit("x"), inc.submit(0)])

    f()
    bad, good = box["resolved"]
    assert bad.is_failed() and good.is_completed()


def test_resolve_futures_to_results_walks_nested_structures():
    box = {}

    @flow
    def f():
        a, b, c = inc.submit(1), inc.submit(2), inc.submit(3)
        box["resolved"] = resolve_futures_to_results(
            {"list": [a, (b,)], "set": {c}, "plain": "s"}
        )

    f()
    assert box["resolved"] == {"list": [2, (3,)], "set": {4}, "plain": "s"}


def test_resolve_futures_to_results_raises_on_failure():
    box = {}

    @flow
    def f():
        with pytest.raises(Exception) as info:
            resolve_futures_to_results([inc.submit(1), fail.submit()])
        box["exc"] = info.value
        return "handled"

    assert f() == "handled"
    assert type(box["exc"]) is Exception
    assert str(box["exc"]) == "At least one result did not complete successfully"


# the GIL -------------------------------------------------------------------------------


def test_blocking_result_releases_the_gil():
    @task
    def sleeper():
        time.sleep(0.3)
        return "slept"

    counter = [0]
    stop = threading.Event()

    def count():
        while not stop.is_set():
            counter[0] += 1

    box = {}

    @flow
    def f():
        fut = sleeper.submit()
        start = counter[0]
        box["value"] = fut.result()
        box["advanced"] = counter[0] - start

    thread = threading.Thread(target=count, daemon=True)
    thread.start()
    try:
        while counter[0] == 0:
            time.sleep(0.001)
        f()
    finally:
        stop.set()
        thread.join(5)
    assert box["value"] == "slept"
    # Waiting with the GIL held would let the counter advance hardly at all.
    assert box["advanced"] > 10_000, box["advanced"]


def test_future_is_a_prefect_future():
    box = {}

    @flow
    def f():
        box["is"] = isinstance(inc.submit(1), PrefectFuture)

    f()
    assert box["is"] is True
