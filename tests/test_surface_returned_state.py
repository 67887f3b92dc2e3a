"""Issue 7, item 16: a task that returns a State keeps it, as in Prefect 3.

Prefect's engine uses a hand-made returned state as the run's final state (its type,
name, message and data; `return_value_to_state`), a returned Failed state is a failure
(retried while retries remain), and a direct call returns the object the function
returned (`TaskRunEngine.result()` gives `_return_value`): the State itself.
"""
from __future__ import annotations

import logging

import pytest

from ferroflow import flow, task
from ferroflow.exceptions import FailedRun
from ferroflow.states import Completed, Failed, State


@task
def skipped():
    return Completed(name="SKIPPED", message="No work to do")


@task
def told_to_fail():
    return Failed(message="told so")


@task
def with_data():
    return Completed(message="done", data=42)


def test_returned_completed_state_keeps_its_name_and_message():
    @flow
    def f():
        future = skipped.submit()
        future.wait()
        return {"state": future.state}  # a returned State would decide the flow's

    state = f()["state"]
    assert state.is_completed()
    assert (state.name, state.message) == ("SKIPPED", "No work to do")
    assert str(state) == "SKIPPED('No work to do', type=COMPLETED)"


def test_returned_state_has_the_run_s_id():
    @flow
    def f():
        future = skipped.submit()
        return future.task_run_id, future.state

    run_id, state = f()
    assert state.state_details.task_run_id == run_id


def test_return_state_of_a_direct_call_is_the_returned_state():
    state = skipped(return_state=True)
    assert (state.type.value, state.name, state.message) == ("COMPLETED", "SKIPPED", "No work to do")


def test_direct_call_returns_the_returned_state_itself():
    # Prefect returns the task's return value: the State object.
    value = skipped()
    assert isinstance(value, State)
    assert (value.name, value.message) == ("SKIPPED", "No work to do")


def test_result_of_a_returned_state_is_its_data():
    @flow
    def f():
        return with_data.submit().result(), skipped.submit().result()

    assert f() == (42, None)


def test_downstream_receives_the_returned_state_s_data():
    @task
    def plus_one(x):
        return x + 1

    @flow
    def f():
        return plus_one.submit(with_data.submit()).result()

    assert f() == 43


def test_returned_failed_state_keeps_its_message():
    @flow
    def f():
        future = told_to_fail.submit()
        future.wait()
        return {"state": future.state}

    state = f()["state"]
    assert state.is_failed()
    assert state.message == "told so"
    assert str(state) == "Failed('told so')"


def test_returned_failed_state_result_raises_failed_run_with_its_message():
    @flow
    def f():
        future = told_to_fail.submit()
        with pytest.raises(FailedRun, match="told so"):
            future.result()
        return "ok"

    assert f() == "ok"


def test_direct_call_of_a_task_returning_failed_returns_that_state():
    # Prefect: the direct call returns the function's return value, the Failed state,
    # without raising; the run itself is Failed.
    state = told_to_fail()
    assert isinstance(state, State) and state.is_failed() and state.message == "told so"


def test_returned_failed_state_keeps_its_name():
    @task
    def named():
        return Failed(name="Rejected", message="input was bad")

    state = named(return_state=True)
    assert (state.type.value, state.name, state.message) == ("FAILED", "Rejected", "input was bad")


def test_returned_failed_state_is_retried():
    attempts = []

    @task(retries=2)
    def fails_then_succeeds():
        attempts.append(1)
        if len(attempts) < 3:
            return Failed(message=f"attempt {len(attempts)}")
        return "ok"

    assert fails_then_succeeds() == "ok"
    assert len(attempts) == 3


def test_finished_line_shows_the_returned_state(caplog):
    @flow
    def f():
        skipped.submit().wait()
        told_to_fail.submit().wait()

    with caplog.at_level(logging.INFO, logger="ferroflow"):
        f()
    lines = [r.getMessage() for r in caplog.records]
    assert "Finished in state SKIPPED('No work to do', type=COMPLETED)" in lines, lines
    assert "Finished in state Failed('told so')" in lines, lines
