"""ferroflow._runtime: the functions the bindings call back (make_state, returned_state,
run_name, task_failed), checked directly, without the engine."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone

import pytest

from ferroflow import _runtime, task
from ferroflow.exceptions import FailedRun, TaskRunNameError
from ferroflow.states import Cancelled, Completed, Failed, Pending, State, StateType


def run_id():
    return uuid.uuid4()


# make_state with a State the task returned (issue 7, item 16) ----------------------------


def test_make_state_copies_a_returned_completed_state():
    returned = Completed(name="SKIPPED", message="No work to do", data=[1])
    rid = run_id()
    state = _runtime.make_state("Completed", returned, 1_700_000_000.5, rid)
    assert state is not returned
    assert (state.type, state.name, state.message, state.data) == (StateType.COMPLETED, "SKIPPED", "No work to do", [1])
    assert state.data is returned.data
    assert state.state_details.task_run_id == rid
    assert state.timestamp == datetime.fromtimestamp(1_700_000_000.5, tz=timezone.utc)
    assert returned.state_details.task_run_id is None  # the user's object is left alone
    assert state.result() == [1]


def test_make_state_keeps_a_returned_failed_state_and_its_type():
    error = ValueError("bad input")
    returned = Failed(name="Rejected", message="input was bad", data=error)
    state = _runtime.make_state("Failed", returned, None, run_id())
    assert (state.type, state.name, state.message) == (StateType.FAILED, "Rejected", "input was bad")
    with pytest.raises(ValueError, match="bad input"):
        state.result()
    cancelled = _runtime.make_state("Failed", Cancelled(message="not today"), None, run_id())
    assert cancelled.is_cancelled() and cancelled.message == "not today"


def test_make_state_of_a_failed_state_without_data_raises_failed_run():
    state = _runtime.make_state("Failed", Failed(message="told so"), None, run_id())
    with pytest.raises(FailedRun, match="told so"):
        state.result()
    assert str(state) == "Failed('told so')"


def test_make_state_is_stable_across_reads():
    returned = Completed(name="SKIPPED")
    rid = run_id()
    assert _runtime.make_state("Completed", returned, 5.0, rid) == _runtime.make_state("Completed", returned, 5.0, rid)


def test_make_state_aggregates_a_returned_run_state():
    other_run = Failed(message="upstream failed", state_details={"task_run_id": run_id()})
    state = _runtime.make_state("Failed", other_run, None, run_id())
    assert state.is_failed() and state.message == "1/1 states failed."
    done = Completed(data=3, state_details={"task_run_id": run_id()})
    state = _runtime.make_state("Completed", done, None, run_id())
    assert state.is_completed() and state.message == "All states completed."


def test_make_state_of_plain_values_is_unchanged():
    assert _runtime.make_state("Completed", 5, None, run_id()).result() == 5
    failed = _runtime.make_state("Failed", KeyError("k"), None, run_id())
    assert failed.message == "Task run encountered an exception KeyError: 'k'"


# returned_state -------------------------------------------------------------------------


def test_returned_state_of_a_completed_state_is_its_data():
    assert _runtime.returned_state(Completed(data=7)) == (True, 7)
    assert _runtime.returned_state(Completed(name="SKIPPED")) == (True, None)


def test_returned_state_of_a_failed_state_is_its_exception():
    error = ValueError("x")
    assert _runtime.returned_state(Failed(data=error)) == (False, error)
    completed, exception = _runtime.returned_state(Failed(message="told so"))
    assert completed is False and isinstance(exception, FailedRun) and str(exception) == "told so"


def test_returned_state_of_a_run_state_is_aggregated():
    completed, value = _runtime.returned_state(Completed(data=1, state_details={"task_run_id": run_id()}))
    assert completed is True and isinstance(value, State)  # Prefect: the data is that state
    completed, exception = _runtime.returned_state(Failed(data=KeyError("k"), state_details={"task_run_id": run_id()}))
    assert completed is False and isinstance(exception, KeyError)


def test_returned_state_of_a_non_final_state_fails():
    completed, exception = _runtime.returned_state(Pending())
    assert completed is False and isinstance(exception, FailedRun) and "Pending" in str(exception)


# run_name (issue 7, item 13) -------------------------------------------------------------


@task
def sq(x, y=2):
    return x * y


def test_run_name_formats_a_template_and_calls_callables():
    assert _runtime.run_name(sq, "sq-{x}-{y}", (3,), None) == "sq-3-2"
    assert _runtime.run_name(sq, lambda: "fixed", (3,), None) == "fixed"
    assert _runtime.run_name(sq, lambda parameters: f"p{parameters['x']}", (4,), {"y": 1}) == "p4"


def test_run_name_template_failure_names_the_task_and_the_template():
    with pytest.raises(TaskRunNameError) as info:
        _runtime.run_name(sq, "sq-{missing}", (3,), None)
    assert str(info.value) == "Task 'sq': task_run_name 'sq-{missing}' could not be formatted: KeyError: 'missing'"
    assert isinstance(info.value.__cause__, KeyError)
    assert isinstance(info.value, ValueError)


def test_run_name_callable_failure_names_the_task():
    def namer():
        raise RuntimeError("down")

    expected = r"Task 'sq': task_run_name callable '.*namer' raised RuntimeError: down"
    with pytest.raises(TaskRunNameError, match=expected):
        _runtime.run_name(sq, namer, (3,), None)


def test_run_name_non_string_is_a_type_error_naming_the_task():
    with pytest.raises(TypeError, match=r"Task 'sq': .* returned type int but a string is required"):
        _runtime.run_name(sq, lambda: 5, (3,), None)


# task_failed log lines ---------------------------------------------------------------------


class Unprintable(Exception):
    def __repr__(self):
        raise RuntimeError("no repr")


def test_task_failed_lines_are_safe_and_name_a_returned_state(caplog):
    with caplog.at_level(logging.INFO, logger="ferroflow"):
        _runtime.task_failed(None, sq, "sq-0", Unprintable(), 0, 1, 0.0, exhausted=False, timed_out=False)
        _runtime.task_failed(None, sq, "sq-0", Failed(message="told so"), 1, 1, None, exhausted=True, timed_out=False)
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "Task run failed with exception: Unprintable - Retry 1/1 will start immediately",
        "Task run failed with state: Failed(message='told so', type=FAILED, result=None) - Retries are exhausted",
    ]
