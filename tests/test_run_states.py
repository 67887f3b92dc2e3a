"""States of real runs: names, str(), predicates, result(), timestamps.

(The State class itself is tested in tests/unit_py; here the states come from runs.)
"""
from __future__ import annotations

import datetime

import pytest

from ferroflow import flow, task
from ferroflow.exceptions import UnfinishedRun
from ferroflow.states import State, StateType


@task
def inc(x):
    return x + 1


@task
def boom():
    raise ValueError("boom")


PREDICATES = (
    "is_scheduled",
    "is_pending",
    "is_running",
    "is_completed",
    "is_failed",
    "is_crashed",
    "is_cancelled",
    "is_cancelling",
    "is_paused",
    "is_final",
)


def true_predicates(state):
    return {name for name in PREDICATES if getattr(state, name)()}


def run_in_flow(fn):
    box = {}

    @flow
    def wrapper():
        box["value"] = fn()

    wrapper()
    return box["value"]


def test_completed_task_run_state():
    state = run_in_flow(lambda: inc(1, return_state=True))
    assert isinstance(state, State)
    assert state.name == "Completed"
    assert state.type == StateType.COMPLETED
    assert state.type.value == "COMPLETED"
    assert str(state) == "Completed()"
    assert state.message is None
    assert true_predicates(state) == {"is_completed", "is_final"}
    assert state.result() == 2


def test_failed_task_run_state():
    state = run_in_flow(lambda: boom(return_state=True))
    assert state.name == "Failed"
    assert state.type == StateType.FAILED
    assert state.message == "Task run encountered an exception ValueError: boom"
    assert str(state) == "Failed('Task run encountered an exception ValueError: boom')"
    assert true_predicates(state) == {"is_failed", "is_final"}
    with pytest.raises(ValueError, match=r"^boom$"):
        state.result()
    exc = state.result(raise_on_failure=False)
    assert type(exc) is ValueError and str(exc) == "boom"


def test_submitted_run_final_state():
    def go():
        fut = inc.submit(2)
        fut.wait()
        return fut.state

    state = run_in_flow(go)
    assert str(state) == "Completed()"
    assert state.result() == 3


def test_not_ready_state():
    def go():
        up = boom.submit()
        down = inc.submit(up)
        down.wait()
        return up.task_run_id, down.state

    up_id, state = run_in_flow(go)
    assert state.name == "NotReady"
    assert state.type == StateType.PENDING
    assert true_predicates(state) == {"is_pending"}
    assert state.message == f"Upstream task run '{up_id}' did not reach a 'COMPLETED' state."
    assert str(state) == (
        f"NotReady(\"Upstream task run '{up_id}' did not reach a 'COMPLETED' state.\", type=PENDING)"
    )
    with pytest.raises(UnfinishedRun, match=r"^Run is in PENDING state, its result is not available\.$"):
        state.result()


def test_flow_run_states():
    @flow
    def good():
        return "v"

    @flow
    def bad():
        raise KeyError("nope")

    ok = good(return_state=True)
    assert str(ok) == "Completed()"
    assert true_predicates(ok) == {"is_completed", "is_final"}
    failed = bad(return_state=True)
    assert failed.name == "Failed"
    assert true_predicates(failed) == {"is_failed", "is_final"}
    assert str(failed) == "Failed(\"Flow run encountered an exception: KeyError: 'nope'\")"


def test_state_timestamp_is_aware_and_current():
    before = datetime.datetime.now(datetime.timezone.utc)
    state = run_in_flow(lambda: inc(1, return_state=True))
    after = datetime.datetime.now(datetime.timezone.utc)
    assert isinstance(state.timestamp, datetime.datetime)
    assert state.timestamp.tzinfo is not None
    slack = datetime.timedelta(seconds=1)
    assert before - slack <= state.timestamp <= after + slack


def test_later_runs_have_later_or_equal_timestamps():
    first = run_in_flow(lambda: inc(1, return_state=True))
    second = run_in_flow(lambda: inc(1, return_state=True))
    assert second.timestamp >= first.timestamp


def test_states_of_two_runs_hold_their_own_results():
    def go():
        a, b = inc.submit(1), inc.submit(2)
        a.wait(), b.wait()
        return a.state, b.state

    a, b = run_in_flow(go)
    assert a.result() == 2 and b.result() == 3
