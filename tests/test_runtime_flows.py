"""Flows as Prefect 3 has them (issue 7): returned collections of states (item 17), real
coroutines from async flows (item 20), `Flow` objects that look like their function and
take type arguments (items 18, 19), and options checked where they are given (item 13)."""

from __future__ import annotations

import asyncio
import gc
import inspect
import logging

import pytest

from ferroflow import Flow, flow, task
from ferroflow.task_runners import SequentialTaskRunner, ThreadPoolTaskRunner


@task
def inc(x):
    return x + 1


@task
def boom():
    raise ValueError("boom")


# item 17 -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [list, tuple, set])
def test_a_returned_collection_with_a_failed_future_fails_the_flow_and_is_returned(kind):
    @flow
    def f():
        return kind([inc.submit(1), boom.submit()])

    got = f()
    assert type(got) is kind and len(got) == 2
    assert sorted(state.type.value for state in got) == ["COMPLETED", "FAILED"]
    state = f(return_state=True)
    assert state.is_failed()
    assert state.message == "1/2 states failed."


def test_a_returned_dict_of_futures_is_judged_by_its_states_and_returned_whole():
    @flow
    def f():
        return {"good": inc.submit(1), "bad": boom.submit()}

    got = f()
    assert set(got) == {"good", "bad"}
    assert got["good"].result() == 2 and got["bad"].is_failed()
    state = f(return_state=True)
    assert state.is_failed() and state.message == "1/2 states failed."
    assert state.result(raise_on_failure=False) is not None


def test_a_returned_list_of_states_with_a_failure_is_returned():
    @flow
    def f():
        return [inc(1, return_state=True), boom(return_state=True)]

    got = f()
    assert [state.is_completed() for state in got] == [True, False]


def test_a_single_returned_failed_future_or_state_still_raises():
    @flow
    def returns_future():
        return boom.submit()

    @flow
    def returns_state():
        return boom(return_state=True)

    with pytest.raises(ValueError, match="boom"):
        returns_future()
    with pytest.raises(ValueError, match="boom"):
        returns_state()


# item 20 -------------------------------------------------------------------------------


def test_calling_an_async_flow_gives_a_real_coroutine():
    @flow
    async def f(x):
        await asyncio.sleep(0)
        return x

    call = f(3)
    assert inspect.iscoroutine(call)
    assert asyncio.run(call) == 3


def test_an_async_flow_call_never_started_says_how_to_run_it(caplog):
    @flow
    async def forgotten():
        return 1

    with caplog.at_level(logging.ERROR, logger="ferroflow"):
        logging.getLogger("ferroflow").addHandler(caplog.handler)
        try:
            call = forgotten()
            with pytest.warns(RuntimeWarning, match="forgotten"):
                del call
                gc.collect()
        finally:
            logging.getLogger("ferroflow").removeHandler(caplog.handler)
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "'forgotten' was called but its run never started" in m and "asyncio.run(forgotten(" in m for m in messages
    )


def test_an_async_flow_call_that_ran_says_nothing(caplog):
    @flow
    async def used():
        return 1

    logging.getLogger("ferroflow").addHandler(caplog.handler)
    try:
        assert asyncio.run(used()) == 1
        gc.collect()
    finally:
        logging.getLogger("ferroflow").removeHandler(caplog.handler)
    assert not [r for r in caplog.records if "never started" in r.getMessage()]


# items 18 and 19 -----------------------------------------------------------------------


def documented(x: int) -> int:
    """Adds one."""
    return x + 1


def test_a_flow_looks_like_its_function():
    f = flow(documented)
    assert f.__name__ == "documented"
    assert f.__qualname__ == "documented"
    assert f.__doc__ == "Adds one."
    assert f.__module__ == __name__
    assert f.__wrapped__ is documented
    assert inspect.signature(f) == inspect.signature(documented)
    assert f(1) == 2


def test_flow_takes_type_arguments_at_runtime():
    alias = Flow[[int], int]
    assert alias.__origin__ is Flow
    hint: Flow[[int], int] = flow(documented)
    assert isinstance(hint, Flow)


class Calculator:
    factor = 3

    def __init__(self, offset):
        self.offset = offset

    @flow
    def shifted(self, x):
        return inc(x) + self.offset

    @flow
    @classmethod
    def scaled(cls, x):
        return inc.submit(x).result() * cls.factor

    @flow
    @staticmethod
    def plain(x):
        return inc(x)


def test_flows_on_methods_classmethods_and_staticmethods_bind_as_in_prefect():
    assert Calculator(10).shifted(1) == 12
    assert Calculator.scaled(1) == 6 and Calculator(0).scaled(1) == 6
    assert Calculator.plain(1) == 2 and Calculator(0).plain(1) == 2
    assert Calculator.scaled.__name__ == "scaled"
    assert Calculator.scaled.with_options(name="again")(2) == 9


# item 13 -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"retries": "3"}, TypeError, "retries"),
        ({"retries": 1.5}, TypeError, "retries"),
        ({"retries": -1}, ValueError, "retries"),
        ({"retry_delay_seconds": "10"}, TypeError, "retry_delay_seconds"),
        ({"retry_delay_seconds": [1, 2]}, TypeError, "retry_delay_seconds"),
        ({"retry_delay_seconds": -1}, ValueError, "retry_delay_seconds"),
        ({"flow_run_name": 3}, TypeError, "flow_run_name"),
        ({"log_prints": "yes"}, TypeError, "log_prints"),
        ({"validate_parameters": "no"}, TypeError, "validate_parameters"),
        ({"version": 2}, TypeError, "version"),
        ({"name": 7}, TypeError, "name"),
    ],
)
def test_flow_options_are_checked_when_decorated(options, error, words):
    with pytest.raises(error, match=words) as raised:
        flow(**options)(documented)
    if "name" not in options:
        assert "'documented'" in str(raised.value)


@pytest.mark.parametrize(
    ("value", "error"),
    [("2", TypeError), (1.5, TypeError), (True, TypeError), (0, ValueError), (-3, ValueError)],
)
def test_max_workers_is_checked_naming_the_option_and_the_runner(value, error):
    with pytest.raises(error, match="ThreadPoolTaskRunner: max_workers"):
        ThreadPoolTaskRunner(max_workers=value)


@pytest.mark.parametrize(
    "variable", ["FERROFLOW_THREAD_POOL_MAX_WORKERS", "PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS"]
)
@pytest.mark.parametrize("raw", ["0", "abc", "-2", "1.5"])
def test_a_bad_max_workers_variable_raises_naming_the_variable(monkeypatch, variable, raw):
    monkeypatch.setenv(variable, raw)

    @flow
    def f():
        return 1

    with pytest.raises(ValueError, match=variable):
        f()


def test_a_good_max_workers_variable_is_used(monkeypatch):
    monkeypatch.setenv("FERROFLOW_THREAD_POOL_MAX_WORKERS", "3")
    assert ThreadPoolTaskRunner().max_workers == 3
    assert SequentialTaskRunner()._worker_count == 0
