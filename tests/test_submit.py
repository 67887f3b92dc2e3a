""".submit(): futures, their methods, argument resolution, upstream failures."""
from __future__ import annotations

import dataclasses
import threading
import time
import uuid

import pytest

from ferroflow import allow_failure, flow, task
from ferroflow.exceptions import UnfinishedRun
from ferroflow.futures import PrefectConcurrentFuture, PrefectFuture
from ferroflow.states import State
from ferroflow.task_runners import ThreadPoolTaskRunner
from ferroflow.utilities.annotations import quote


@task
def inc(x):
    return x + 1


@task
def ident(x):
    return x


@task
def fail(msg="upstream boom"):
    raise ValueError(msg)


@task
def wait_on(event, value=None):
    assert event.wait(10), "gate never opened"
    return value


# the future --------------------------------------------------------------------------


def test_submit_returns_a_future_at_once(gate):
    @flow
    def f():
        try:
            fut = wait_on.submit(gate, "done")
            assert isinstance(fut, PrefectFuture)
            assert isinstance(fut, PrefectConcurrentFuture)
            # The run cannot finish before the gate opens: submit did not wait.
            assert not fut.state.is_final()
        finally:
            gate.set()
        return fut.result()

    assert f() == "done"


def test_result_returns_the_value():
    @flow
    def f():
        return inc.submit(1).result()

    assert f() == 2


def test_wait_returns_none_and_completes_the_state():
    @flow
    def f():
        fut = inc.submit(1)
        assert fut.wait() is None
        return fut.state

    state = f()
    assert state.is_completed()
    assert str(state) == "Completed()"


def test_state_before_completion_is_pending_or_running(gate):
    box = {}

    @flow
    def f():
        fut = wait_on.submit(gate)
        try:
            box["early"] = fut.state
        finally:
            gate.set()
        fut.wait()
        box["late"] = fut.state

    f()
    early, late = box["early"], box["late"]
    assert isinstance(early, State)
    assert early.name in ("Pending", "Running")
    assert not early.is_final()
    assert late.is_completed()


def test_task_run_id_is_a_uuid():
    @flow
    def f():
        a, b = inc.submit(1), inc.submit(2)
        return a.task_run_id, b.task_run_id

    a, b = f()
    assert isinstance(a, uuid.UUID) and isinstance(b, uuid.UUID)
    assert a != b


def test_add_done_callback_is_called_with_the_future(gate):
    called = threading.Event()
    seen = []

    def callback(fut):
        seen.append(fut)
        called.set()

    @flow
    def f():
        fut = wait_on.submit(gate, 5)
        try:
            fut.add_done_callback(callback)
            before = list(seen)
        finally:
            gate.set()
        assert called.wait(10)
        # Futures returned from a flow become States: hand back plain values.
        return fut.task_run_id, before

    run_id, before = f()
    assert before == []
    [arg] = seen
    assert isinstance(arg, PrefectFuture)
    assert arg.task_run_id == run_id
    assert arg.state.is_completed()


def test_add_done_callback_on_a_done_future_is_called_at_once():
    seen = []

    @flow
    def f():
        fut = inc.submit(1)
        fut.wait()
        fut.add_done_callback(seen.append)
        return fut.task_run_id

    run_id = f()
    assert len(seen) == 1
    assert seen[0].task_run_id == run_id


# arguments ---------------------------------------------------------------------------


@dataclasses.dataclass
class Pair:
    a: object
    b: object


@task
def show(x):
    return x


def test_future_argument_becomes_its_value():
    @flow
    def f():
        return inc.submit(inc.submit(1)).result()

    assert f() == 3


@pytest.mark.parametrize(
    "build, expected",
    [
        (lambda f1, f2: [f1, f2], [2, 3]),
        (lambda f1, f2: (f1, (f2,)), (2, (3,))),
        (lambda f1, f2: {"k": f1, "j": [f2]}, {"k": 2, "j": [3]}),
        (lambda f1, f2: {f1, f2}, {2, 3}),
        (lambda f1, f2: Pair(a=1, b=f2), Pair(a=1, b=3)),
    ],
    ids=["list", "tuple", "dict", "set", "dataclass"],
)
def test_nested_futures_in_arguments_become_values(build, expected):
    @flow
    def f():
        f1, f2 = inc.submit(1), inc.submit(2)
        return show.submit(build(f1, f2)).result()

    got = f()
    assert got == expected
    assert type(got) is type(expected)


def test_nested_futures_in_direct_call_arguments_become_values():
    @flow
    def f():
        return show([inc.submit(1), {"k": inc.submit(2)}])

    assert f() == [2, {"k": 3}]


def test_wait_for_orders_runs_without_data():
    order = []

    @task
    def first():
        time.sleep(0.2)
        order.append("first")

    @task
    def second():
        order.append("second")

    @flow
    def f():
        a = first.submit()
        b = second.submit(wait_for=[a])
        b.wait()

    f()
    assert order == ["first", "second"]


def test_wait_for_on_direct_call():
    order = []

    @task
    def first():
        time.sleep(0.2)
        order.append("first")

    @task
    def second():
        order.append("second")
        return "second done"

    @flow
    def f():
        a = first.submit()
        return second(wait_for=[a])

    assert f() == "second done"
    assert order == ["first", "second"]


def test_allow_failure_passes_the_exception_object():
    @flow
    def f():
        up = fail.submit()
        return show.submit(allow_failure(up)).result()

    exc = f()
    assert type(exc) is ValueError
    assert str(exc) == "upstream boom"


def test_quote_passes_the_value_untouched():
    box = {}

    @flow
    def f():
        up = inc.submit(1)
        up.wait()
        box["up"] = up
        box["got"] = show.submit(quote([up])).result()

    f()
    got = box["got"]
    assert isinstance(got, list) and len(got) == 1
    assert isinstance(got[0], PrefectFuture)
    assert got[0].task_run_id == box["up"].task_run_id


# upstream failure ----------------------------------------------------------------------


def test_failed_upstream_makes_downstream_not_ready():
    calls = []

    @task
    def downstream(x):
        calls.append(x)
        return x

    box = {}

    @flow
    def f():
        up = fail.submit()
        down = downstream.submit(up)
        down.wait()
        box.update(up=up, down=down)

    f()
    up, down = box["up"], box["down"]
    assert calls == []
    state = down.state
    assert state.is_pending()
    assert not state.is_failed()
    assert state.name == "NotReady"
    assert str(state) == (
        f"NotReady(\"Upstream task run '{up.task_run_id}' did not reach a "
        "'COMPLETED' state.\", type=PENDING)"
    )
    with pytest.raises(UnfinishedRun, match=r"^Run is in PENDING state, its result is not available\.$"):
        down.result()
    with pytest.raises(UnfinishedRun):
        down.result(raise_on_failure=False)


def test_failed_wait_for_upstream_makes_downstream_not_ready():
    calls = []

    @task
    def downstream():
        calls.append(1)

    box = {}

    @flow
    def f():
        up = fail.submit()
        down = downstream.submit(wait_for=[up])
        down.wait()
        box["state"] = down.state

    f()
    state = box["state"]
    assert calls == []
    assert state.name == "NotReady"


def test_not_ready_propagates_down_a_chain():
    box = {}

    @flow
    def f():
        up = fail.submit()
        mid = inc.submit(up)
        low = inc.submit(mid)
        low.wait()
        box.update(mid=mid.state, low=low.state)

    f()
    mid, low = box["mid"], box["low"]
    assert mid.name == "NotReady"
    assert low.name == "NotReady"


def test_result_raises_the_tasks_exception():
    box = {}

    @flow
    def f():
        fut = fail.submit("bad value")
        with pytest.raises(ValueError, match=r"^bad value$"):
            fut.result()
        box["state"] = fut.state
        return "handled"

    assert f() == "handled"
    assert box["state"].is_failed()


def test_result_without_raise_returns_the_exception():
    @flow
    def f():
        return fail.submit("soft").result(raise_on_failure=False)

    exc = f()
    assert type(exc) is ValueError
    assert str(exc) == "soft"


# timeouts ----------------------------------------------------------------------------


def test_result_timeout_raises_timeout_error(gate):
    @flow
    def f():
        fut = wait_on.submit(gate, 1)
        try:
            with pytest.raises(TimeoutError) as info:
                fut.result(timeout=0.05)
        finally:
            gate.set()
        return fut.task_run_id, info.value, fut.result()

    run_id, exc, value = f()
    assert value == 1
    assert str(exc) == f"Task run {run_id} did not complete within 0.05 seconds"


def test_wait_timeout_returns_none_without_raising(gate):
    @flow
    def f():
        fut = wait_on.submit(gate, 1)
        try:
            assert fut.wait(timeout=0.05) is None
            still_open = not fut.state.is_final()
        finally:
            gate.set()
        return still_open

    assert f() is True


# return_state ------------------------------------------------------------------------


def test_submit_return_state_gives_the_final_state():
    box = {}

    @flow
    def f():
        # (States returned from a flow decide its final state: keep them aside.)
        box["ok"] = inc.submit(1, return_state=True)
        box["bad"] = fail.submit(return_state=True)

    f()
    ok, bad = box["ok"], box["bad"]
    assert isinstance(ok, State) and isinstance(bad, State)
    assert ok.is_completed() and ok.result() == 2
    assert bad.is_failed()
    assert str(bad) == "Failed('Task run encountered an exception ValueError: upstream boom')"


# where submit works ----------------------------------------------------------------------


def test_submit_outside_a_flow_works():
    # ferroflow differs from Prefect on purpose: no flow is needed.
    fut = inc.submit(1)
    assert isinstance(fut, PrefectFuture)
    assert fut.result() == 2
    assert inc.submit(fut).result() == 3


def test_nested_submit_inside_a_task_does_not_deadlock_one_worker(call_with_deadline):
    @task
    def outer(x):
        return inc.submit(x).result() + inc.submit(x + 1).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        return outer.submit(1).result()

    assert call_with_deadline(f, 20) == 5


def test_nested_map_inside_a_task_does_not_deadlock_one_worker(call_with_deadline):
    @task
    def outer(xs):
        return sum(inc.map(xs).result())

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def f():
        return [outer.submit([1, 2, 3]).result(), outer.submit([10]).result()]

    assert call_with_deadline(f, 20) == [9, 11]


def test_many_tasks_waiting_on_nested_submits_do_not_deadlock(call_with_deadline):
    @task
    def outer(x):
        return inc.submit(x).result()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def f():
        return outer.map(range(20)).result()

    assert call_with_deadline(f, 30) == list(range(1, 21))


def test_flow_waits_for_runs_it_never_waited_on():
    appended = []

    @task
    def slow_append():
        time.sleep(0.2)
        appended.append("done")

    @flow
    def f():
        slow_append.submit()
        return "returned"

    assert f() == "returned"
    assert appended == ["done"]


def test_flow_waits_for_dependent_runs_it_never_waited_on():
    appended = []

    @task
    def slow(x):
        time.sleep(0.1)
        return x

    @task
    def record(x):
        appended.append(x)

    @flow
    def f():
        record.submit(slow.submit(7))

    f()
    assert appended == [7]


def test_a_run_waiting_on_its_own_future_fails_instead_of_hanging(gate, call_with_deadline):
    # A task cannot get its own future as an argument, but it can reach it through
    # a closure. Prefect hangs here; ferroflow raises RuntimeError in the run.
    box = {}

    @task
    def selfish():
        assert gate.wait(10)
        return box["fut"].result()

    @flow
    def f():
        box["fut"] = selfish.submit()
        gate.set()
        with pytest.raises(RuntimeError, match=r"selfish-0. waits on its own future"):
            box["fut"].result()
        return box["fut"].state.name

    assert call_with_deadline(f, 20) == "Failed"
