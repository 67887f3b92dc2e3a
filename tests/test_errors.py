"""Bad input gets a clear error where the user called, naming the task and argument;
nothing hangs."""
from __future__ import annotations

import re

import pytest

from ferroflow import Task, flow, task
from ferroflow.exceptions import MappingLengthMismatch, MappingMissingIterable


@task
def pair_sum(left, right):
    return left + right


def raised_in_flow(call, exc_type):
    """Run ``call`` inside a flow, expect ``exc_type`` at the call site and return
    the exception; the flow itself must go on and return normally."""
    box = {}

    @flow
    def wrapper():
        with pytest.raises(exc_type) as info:
            call()
        box["exc"] = info.value
        return "went on"

    assert wrapper() == "went on"
    return box["exc"]


# binding ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        lambda: pair_sum(1),
        lambda: pair_sum.submit(1),
        lambda: pair_sum.map([1, 2]),
    ],
    ids=["call", "submit", "map"],
)
def test_missing_argument_names_task_and_parameter(call):
    exc = raised_in_flow(call, TypeError)
    assert "pair_sum" in str(exc)
    assert "right" in str(exc)


@pytest.mark.parametrize(
    "call",
    [
        lambda: pair_sum(1, 2, middle=3),
        lambda: pair_sum.submit(1, 2, middle=3),
        lambda: pair_sum.map([1], [2], middle=[3]),
    ],
    ids=["call", "submit", "map"],
)
def test_unexpected_keyword_names_task_and_keyword(call):
    exc = raised_in_flow(call, TypeError)
    assert "pair_sum" in str(exc)
    assert "middle" in str(exc)


def test_too_many_positional_arguments_name_the_task():
    exc = raised_in_flow(lambda: pair_sum.submit(1, 2, 3), TypeError)
    assert "pair_sum" in str(exc)


def test_missing_argument_outside_a_flow():
    with pytest.raises(TypeError, match="right"):
        pair_sum(1)
    with pytest.raises(TypeError, match="right"):
        pair_sum.submit(1)


def test_flow_missing_argument_names_flow_and_parameter():
    @flow
    def needs_arg(count):
        return count

    with pytest.raises(TypeError) as info:
        needs_arg()
    assert "needs_arg" in str(info.value) or "needs-arg" in str(info.value)
    assert "count" in str(info.value)


# decoration --------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [lambda: task(5), lambda: Task(5), lambda: flow(5)], ids=["task", "Task", "flow"])
def test_non_callable_is_rejected(make):
    with pytest.raises(TypeError):
        make()


# map ---------------------------------------------------------------------------------------


def test_map_length_mismatch_names_task_parameters_and_lengths():
    exc = raised_in_flow(lambda: pair_sum.map([1, 2, 3], [1, 2]), MappingLengthMismatch)
    msg = str(exc)
    assert "pair_sum" in msg
    assert re.search(r"left\W+3", msg), msg
    assert re.search(r"right\W+2", msg), msg


def test_map_without_iterable_names_the_task():
    exc = raised_in_flow(lambda: pair_sum.map(1, 2), MappingMissingIterable)
    assert "pair_sum" in str(exc)


def test_map_with_a_non_iterable_mapped_keyword_is_missing_iterable():
    exc = raised_in_flow(lambda: pair_sum.map(left=1, right=2), MappingMissingIterable)
    assert "pair_sum" in str(exc)


# nothing hangs ------------------------------------------------------------------------------


def test_failures_everywhere_do_not_hang_the_flow(call_with_deadline):
    @task
    def bad(x):
        raise ValueError(f"bad {x}")

    @flow
    def chaos():
        first = bad.map(range(50))
        second = pair_sum.map(first, 1)
        pair_sum.submit(second[0], 1)
        return "returned"

    assert call_with_deadline(chaos, 20) == "returned"


def test_binding_error_after_submits_does_not_hang(call_with_deadline):
    @flow
    def half_built():
        pair_sum.submit(1, 2)
        pair_sum.submit(1)

    def run():
        with pytest.raises(TypeError, match="right"):
            half_built()
        return "raised"

    assert call_with_deadline(run, 20) == "raised"
