"""@flow: decorator, naming, return values and states, retries, subflows, runners."""
from __future__ import annotations

import pytest

from ferroflow import Flow, flow, task
from ferroflow.futures import PrefectFuture
from ferroflow.states import Completed, State
from ferroflow.task_runners import SequentialTaskRunner, ThreadPoolTaskRunner


@task
def inc(x):
    return x + 1


@task
def fail(msg="boom"):
    raise ValueError(msg)


# decorator and attributes ----------------------------------------------------------------


def test_bare_flow_decorator():
    @flow
    def plain(x):
        return x * 2

    assert isinstance(plain, Flow)
    assert plain(21) == 42


def test_flow_decorator_with_options():
    @flow(name="custom", description="says what", version="7", retries=2, retry_delay_seconds=0)
    def configured():
        return "ok"

    assert isinstance(configured, Flow)
    assert configured.name == "custom"
    assert configured.description == "says what"
    assert configured.version == "7"
    assert configured.retries == 2
    assert configured() == "ok"


def test_flow_name_turns_underscores_into_dashes():
    @flow
    def my_flow():
        pass

    assert my_flow.name == "my-flow"


def test_flow_description_defaults_to_docstring():
    @flow
    def documented():
        """Does very little."""

    assert documented.description == "Does very little."


def test_flow_fn_is_the_original_function():
    def raw():
        return 1

    assert flow(raw).fn is raw


def test_flow_parameters_with_defaults():
    @flow
    def params(a, b=10, *, c=100):
        return a + b + c

    assert params(1) == 111
    assert params(1, 2) == 103
    assert params(1, c=0) == 11


def test_flow_with_options():
    @flow(name="orig", retries=1)
    def original():
        return "same fn"

    renamed = original.with_options(name="renamed", task_runner=SequentialTaskRunner())
    assert isinstance(renamed, Flow) and renamed is not original
    assert renamed.name == "renamed"
    assert renamed.retries == 1
    assert isinstance(renamed.task_runner, SequentialTaskRunner)
    assert renamed() == "same fn"
    assert original.name == "orig"


# task runners ----------------------------------------------------------------------------


def test_default_task_runner_is_a_thread_pool():
    @flow
    def f():
        pass

    assert isinstance(f.task_runner, ThreadPoolTaskRunner)


def test_task_runner_given_as_a_class():
    @flow(task_runner=SequentialTaskRunner)
    def f():
        return inc.submit(1).result()

    assert isinstance(f.task_runner, SequentialTaskRunner)
    assert f() == 2


def test_task_runner_given_as_an_instance():
    runner = ThreadPoolTaskRunner(max_workers=2)

    @flow(task_runner=runner)
    def f():
        return inc.map([1, 2, 3]).result()

    assert isinstance(f.task_runner, ThreadPoolTaskRunner)
    assert f() == [2, 3, 4]
    # A configured runner is a template: running the flow twice works.
    assert f() == [2, 3, 4]


# return values and states ------------------------------------------------------------------


def test_return_state_gives_the_flow_state():
    @flow
    def f():
        return 5

    state = f(return_state=True)
    assert isinstance(state, State)
    assert state.is_completed()
    assert state.result() == 5


def test_returned_future_becomes_a_state():
    @flow
    def f():
        return inc.submit(1)

    got = f()
    assert isinstance(got, State)
    assert not isinstance(got, PrefectFuture)
    assert got.is_completed()
    assert got.result() == 2


def test_returned_list_of_futures_becomes_a_list_of_states():
    @flow
    def f():
        return [inc.submit(1), inc.submit(2)]

    got = f()
    assert isinstance(got, list) and len(got) == 2
    assert all(isinstance(s, State) and s.is_completed() for s in got)
    assert [s.result() for s in got] == [2, 3]


def test_returned_futures_complete_the_flow_with_aggregate_message():
    @flow
    def f():
        return [inc.submit(1), inc.submit(2)]

    state = f(return_state=True)
    assert state.is_completed()
    assert state.message == "All states completed."


def test_unraised_task_failure_leaves_the_flow_completed():
    @flow
    def f():
        fail.submit()
        inc(1, return_state=True)
        return "fine"

    state = f(return_state=True)
    assert state.is_completed()
    assert state.result() == "fine"


def test_exception_in_flow_fails_it_and_reaches_the_caller():
    @flow
    def f():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        f()
    state = f(return_state=True)
    assert state.is_failed()
    assert state.message == "Flow run encountered an exception: KeyError: 'nope'"
    assert str(state) == "Failed(\"Flow run encountered an exception: KeyError: 'nope'\")"
    exc = state.result(raise_on_failure=False)
    assert type(exc) is KeyError


def test_flow_reraises_the_same_exception_type_and_message():
    @flow
    def f():
        raise ValueError("flow boom")

    with pytest.raises(ValueError, match=r"^flow boom$"):
        f()


def test_returning_a_manual_completed_state():
    @flow
    def f():
        return Completed(message="Skipped")

    state = f(return_state=True)
    assert state.is_completed()
    assert state.message == "Skipped"
    assert str(state) == "Completed('Skipped')"
    assert f() is None


# retries -----------------------------------------------------------------------------------


def test_flow_retries_rerun_the_function():
    calls = []

    @flow(retries=1)
    def flaky():
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("first attempt")
        return "second attempt"

    assert flaky() == "second attempt"
    assert len(calls) == 2


def test_flow_retries_exhausted_raise():
    calls = []

    @flow(retries=1)
    def always():
        calls.append(1)
        raise ValueError(f"attempt {len(calls)}")

    with pytest.raises(ValueError, match=r"^attempt 2$"):
        always()
    assert len(calls) == 2


# subflows ----------------------------------------------------------------------------------


def test_sync_subflow_in_sync_parent():
    @flow
    def child(x):
        return inc(x) * 10

    @flow
    def parent():
        return child(1) + child(2)

    assert parent() == 50


def test_subflow_with_its_own_thread_pool():
    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def child(xs):
        return inc.map(xs).result()

    @flow
    def parent():
        return [*child([1, 2, 3]), inc.submit(10).result()]

    assert parent() == [2, 3, 4, 11]


def test_subflow_exception_reaches_the_parent():
    @flow
    def child():
        raise ValueError("child boom")

    @flow
    def parent():
        try:
            child()
        except ValueError as exc:
            return f"caught {exc}"

    assert parent() == "caught child boom"


def test_subflow_return_state():
    @flow
    def child():
        return 3

    box = {}

    @flow
    def parent():
        box["state"] = child(return_state=True)

    parent()
    assert box["state"].is_completed()
    assert box["state"].result() == 3


def test_subflow_receives_future_values():
    @flow
    def child(x):
        return x * 100

    @flow
    def parent():
        return child(inc.submit(1))

    assert parent() == 200


# names -------------------------------------------------------------------------------------


def test_flow_run_name_template(capfd):
    @flow(flow_run_name="run-{x}")
    def named(x):
        return x

    assert named(3) == 3
    err = capfd.readouterr().err
    assert "| INFO    | Flow run 'run-3' - Beginning flow run 'run-3' for flow 'named'" in err


def test_flow_run_name_callable(capfd):
    @flow(flow_run_name=lambda: "called-name")
    def named():
        return 1

    assert named() == 1
    err = capfd.readouterr().err
    assert "Flow run 'called-name' - Beginning flow run 'called-name' for flow 'named'" in err
