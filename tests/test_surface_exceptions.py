"""Issue 7, item 15: an exception whose ``__str__`` or ``__repr__`` raises still reaches
the user as itself; states and log lines fall back to its class name."""
from __future__ import annotations

import logging

import pytest

from ferroflow import flow, task
from ferroflow.states import exception_to_crashed_state, exception_to_failed_state, format_exception


class Unprintable(Exception):
    """str() and repr() both raise."""

    def __str__(self) -> str:
        raise RuntimeError("str exploded")

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class NoStr(ValueError):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class NoRepr(ValueError):
    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


@task
def raises(kind):
    raise kind()


@pytest.mark.parametrize("kind", [Unprintable, NoStr, NoRepr])
def test_direct_call_raises_the_users_exception(kind):
    with pytest.raises(kind):
        raises(kind)


@pytest.mark.parametrize(
    "kind",
    [
        # The flow engine's "Encountered exception during execution: {exc!r}" line must
        # format safely (ferroflow.utilities.text.safe_repr): _flow_engine.py.
        Unprintable,
        NoStr,
        NoRepr,
    ],
)
def test_direct_call_in_a_flow_raises_the_users_exception(kind):
    @flow
    def f():
        return raises(kind)

    with pytest.raises(kind):
        f()


@pytest.mark.parametrize("kind", [Unprintable, NoStr, NoRepr])
def test_result_of_a_submitted_run_raises_the_users_exception(kind):
    @flow
    def f():
        future = raises.submit(kind)
        with pytest.raises(kind):
            future.result()
        return type(future.result(raise_on_failure=False)).__name__

    assert f() == kind.__name__


@pytest.mark.parametrize("kind", [Unprintable, NoStr])
def test_return_state_gives_a_failed_state_whose_message_names_the_class(kind):
    state = raises(kind, return_state=True)
    assert state.is_failed()
    assert isinstance(state.data, kind)
    assert state.message == f"Task run encountered an exception {kind.__name__}"
    str(state), repr(state)  # neither raises
    with pytest.raises(kind):
        state.result()


def test_a_mapped_run_keeps_the_users_exception():
    @flow
    def f():
        futures = raises.map([Unprintable, NoStr])
        return [type(x).__name__ for x in futures.result(raise_on_failure=False)], [
            fut.state.message for fut in futures
        ]

    kinds, messages = f()
    assert kinds == ["Unprintable", "NoStr"]
    assert messages == [
        "Task run encountered an exception Unprintable",
        "Task run encountered an exception NoStr",
    ]


def test_log_lines_fall_back_to_the_class_name(caplog):
    @task(retries=1)
    def flaky():
        raise Unprintable()

    with caplog.at_level(logging.INFO, logger="ferroflow"), pytest.raises(Unprintable):
        flaky()
    lines = [r.getMessage() for r in caplog.records]
    assert any("Task run failed with exception: Unprintable - Retry 1/1" in line for line in lines), lines
    assert any("Task run failed with exception: Unprintable - Retries are exhausted" in line for line in lines), lines
    finished = "Finished in state Failed('Task run encountered an exception Unprintable')"
    assert any(finished in line for line in lines), lines


def test_format_exception_is_prefect_s_and_safe():
    assert format_exception(ValueError("boom")) == "ValueError: boom"
    assert format_exception(Unprintable()) == "Unprintable"


def test_state_constructors_are_safe():
    failed = exception_to_failed_state(Unprintable())
    assert failed.message == "Task run encountered an exception Unprintable"
    crashed = exception_to_crashed_state(Unprintable())
    assert crashed.message == "Execution was interrupted by an unexpected exception: Unprintable"
    assert "Unprintable" in repr(failed)
