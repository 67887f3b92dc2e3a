"""Issue 7, item 13: task options are checked when the task is decorated, and errors
name the option and the task; a failing `task_run_name` fails the run with a message
naming the task."""
from __future__ import annotations

import math

import pytest

from ferroflow import Task, flow, task
from ferroflow.exceptions import TaskRunNameError


def decorate(**options):
    @task(**options)
    def my_task(x=1):
        return x

    return my_task


def error_of(exc_type, **options):
    with pytest.raises(exc_type) as info:
        decorate(**options)
    message = str(info.value)
    assert "my_task" in message, message
    return message


# retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("retries", ["3", 1.5, 2.0, [1], True])
def test_non_int_retries_is_a_type_error_naming_option_and_task(retries):
    message = error_of(TypeError, retries=retries)
    assert "retries" in message


@pytest.mark.parametrize("retries", [-1, -10])
def test_negative_retries_is_a_value_error(retries):
    message = error_of(ValueError, retries=retries)
    assert "retries" in message and str(retries) in message


@pytest.mark.parametrize("retries", [None, 0, 3])
def test_valid_retries(retries):
    assert decorate(retries=retries).retries == (retries or 0)


# retry_delay_seconds ------------------------------------------------------------------


def test_string_delay_is_a_type_error_not_split_into_characters():
    message = error_of(TypeError, retries=2, retry_delay_seconds="10")
    assert "retry_delay_seconds" in message


@pytest.mark.parametrize("delay", [b"10", {"a": 1}, object(), True])
def test_non_number_delay_is_a_type_error(delay):
    message = error_of(TypeError, retries=1, retry_delay_seconds=delay)
    assert "retry_delay_seconds" in message


@pytest.mark.parametrize("delay", [-1, -0.5, math.nan, math.inf])
def test_negative_or_non_finite_delay_is_a_value_error(delay):
    message = error_of(ValueError, retries=1, retry_delay_seconds=delay)
    assert "retry_delay_seconds" in message


@pytest.mark.parametrize("delays", [[1, "2"], [1, None], ["1"], [[1]]])
def test_delay_list_with_a_non_number_is_a_type_error(delays):
    message = error_of(TypeError, retries=2, retry_delay_seconds=delays)
    assert "retry_delay_seconds" in message


@pytest.mark.parametrize("delays", [[1, -2], [math.nan]])
def test_delay_list_with_a_negative_or_nan_is_a_value_error(delays):
    message = error_of(ValueError, retries=2, retry_delay_seconds=delays)
    assert "retry_delay_seconds" in message


def test_more_than_fifty_delays_is_a_value_error():
    message = error_of(ValueError, retries=51, retry_delay_seconds=[1] * 51)
    assert "50" in message


def test_callable_delays_are_checked_after_expansion():
    message = error_of(TypeError, retries=2, retry_delay_seconds=lambda retries: "12")
    assert "retry_delay_seconds" in message
    message = error_of(ValueError, retries=2, retry_delay_seconds=lambda retries: [-1] * retries)
    assert "retry_delay_seconds" in message


@pytest.mark.parametrize(
    ("delay", "shown"),
    [
        (None, 0),
        (0, 0),
        (2, 2),
        (0.5, 0.5),
        ([1, 2], [1.0, 2.0]),
        ((1, 2), [1.0, 2.0]),
        (lambda n: [3] * n, [3.0, 3.0]),
    ],
)
def test_valid_delays(delay, shown):
    assert decorate(retries=2, retry_delay_seconds=delay).retry_delay_seconds == shown


# other options ------------------------------------------------------------------------


def test_tags_given_as_one_string_is_a_type_error():
    message = error_of(TypeError, tags="etl")
    assert "tags" in message


def test_tags_with_a_non_string_is_a_type_error():
    message = error_of(TypeError, tags=["ok", 3])
    assert "tags" in message


@pytest.mark.parametrize("name", [3, ["x"]])
def test_non_string_name_is_a_type_error(name):
    with pytest.raises(TypeError, match="name"):
        decorate(name=name)


@pytest.mark.parametrize(("option", "value"), [("description", 3), ("version", 1.0), ("log_prints", "yes")])
def test_description_version_and_log_prints_are_checked(option, value):
    message = error_of(TypeError, **{option: value})
    assert option in message


def test_task_run_name_of_another_type_is_a_type_error():
    message = error_of(TypeError, task_run_name=3)
    assert "task_run_name" in message


def test_with_options_checks_too():
    t = decorate()
    with pytest.raises(TypeError, match=r"retries.*my_task|my_task.*retries"):
        t.with_options(retries="3")
    with pytest.raises(TypeError, match="retry_delay_seconds"):
        t.with_options(retries=1, retry_delay_seconds="10")


def test_task_class_checks_too():
    def fn():
        pass

    with pytest.raises(TypeError, match="retries"):
        Task(fn, retries="3")


# task_run_name failures -----------------------------------------------------------------


def test_template_with_a_missing_parameter_fails_the_run_naming_the_task():
    @task(task_run_name="run-{missing}")
    def named(x):
        return x

    state = named(1, return_state=True)
    assert state.is_failed()
    with pytest.raises(TaskRunNameError) as info:
        state.result()
    message = str(info.value)
    assert "named" in message and "run-{missing}" in message and "KeyError" in message and "missing" in message


def test_template_failure_fails_a_submitted_run():
    @task(task_run_name="run-{x.nope}")
    def named(x):
        return x

    @flow
    def f():
        future = named.submit(1)
        with pytest.raises(TaskRunNameError, match="named"):
            future.result()
        return future.state.is_failed()

    assert f() is True


def test_callable_that_raises_fails_the_run_naming_the_task():
    def bad_name():
        raise ValueError("no name today")

    @task(task_run_name=bad_name)
    def named():
        return 1

    with pytest.raises(TaskRunNameError) as info:
        named()
    message = str(info.value)
    assert "named" in message and "ValueError: no name today" in message
    assert isinstance(info.value.__cause__, ValueError)


def test_callable_returning_a_non_string_fails_the_run_with_a_type_error():
    @task(task_run_name=lambda: 42)
    def named():
        return 1

    with pytest.raises(TypeError) as info:
        named()
    message = str(info.value)
    assert "named" in message and "int" in message and "string" in message


def test_a_good_template_still_names_the_run():
    from ferroflow._runtime import run_name

    @task(task_run_name="sq-{x}")
    def sq(x):
        return x * x

    assert run_name(sq, sq.task_run_name, (-1,), None) == "sq--1"
