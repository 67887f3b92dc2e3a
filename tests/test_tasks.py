"""@task: the decorator, Task attributes, direct calls, retries and options."""
from __future__ import annotations

import re
import time
import traceback

import pytest

from ferroflow import Task, flow, get_run_logger, task
from ferroflow.exceptions import MissingContextError, ReservedArgumentError
from ferroflow.tasks import exponential_backoff

# decorator and attributes ----------------------------------------------------------


def test_bare_decorator_returns_a_task_that_still_computes():
    @task
    def add(x, y):
        return x + y

    assert isinstance(add, Task)
    assert add(2, 3) == 5


def test_called_decorator_applies_its_options():
    @task(name="adder", retries=2, tags=["math"])
    def add(x, y):
        return x + y

    assert isinstance(add, Task)
    assert add.name == "adder"
    assert add.retries == 2
    assert add.tags == {"math"}
    assert add(2, 3) == 5


def test_task_class_wraps_a_function():
    def double(x):
        return 2 * x

    t = Task(double)
    assert t.name == "double"
    assert t.fn is double
    assert t(4) == 8


def test_name_defaults_to_function_name_keeping_underscores():
    @task
    def my_task_name():
        pass

    assert my_task_name.name == "my_task_name"


def test_description_defaults_to_docstring():
    @task
    def documented():
        """Adds nothing at all."""

    assert documented.description == "Adds nothing at all."


def test_explicit_description_wins_over_docstring():
    @task(description="explicit")
    def documented():
        """From the docstring."""

    assert documented.description == "explicit"


def test_tags_become_a_set():
    @task(tags=["a", "b", "a"])
    def tagged():
        pass

    @task
    def untagged():
        pass

    assert tagged.tags == {"a", "b"}
    assert isinstance(tagged.tags, set)
    assert untagged.tags == set()


def test_version_is_kept_and_defaults_to_none():
    @task(version="1.2.3")
    def versioned():
        pass

    @task
    def unversioned():
        pass

    assert versioned.version == "1.2.3"
    assert unversioned.version is None


def test_fn_is_the_original_function():
    def raw(x):
        return x + 1

    t = task(raw)
    assert t.fn is raw


def test_sync_task_is_not_async():
    @task
    def sync():
        pass

    assert sync.isasync is False


def test_retry_defaults_are_zero():
    @task
    def plain():
        pass

    assert plain.retries == 0
    assert plain.retry_delay_seconds == 0


def test_retry_delay_seconds_int_is_kept():
    @task(retries=2, retry_delay_seconds=3)
    def t():
        pass

    assert t.retry_delay_seconds == 3


def test_retry_delay_seconds_list_is_kept():
    @task(retries=3, retry_delay_seconds=[1, 2, 4])
    def t():
        pass

    assert t.retry_delay_seconds == [1, 2, 4]


def test_retry_delay_seconds_callable_is_expanded_with_retries():
    seen = []

    def delays(retries):
        seen.append(retries)
        return [10.0 * (i + 1) for i in range(retries)]

    @task(retries=3, retry_delay_seconds=delays)
    def t():
        pass

    assert t.retry_delay_seconds == [10.0, 20.0, 30.0]
    assert seen == [3]


def test_exponential_backoff_expands_to_doubling_delays():
    @task(retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=2))
    def t():
        pass

    assert t.retry_delay_seconds == [2, 4, 8]


def test_with_options_changes_name_and_inherits_the_rest():
    @task(name="orig", retries=2, retry_delay_seconds=5, tags=["x"], version="v1")
    def t(x):
        return x * 3

    t2 = t.with_options(name="renamed")
    assert isinstance(t2, Task)
    assert t2 is not t
    assert t2.name == "renamed"
    assert t2.retries == 2
    assert t2.retry_delay_seconds == 5
    assert t2.tags == {"x"}
    assert t2.fn is t.fn
    assert t2(2) == 6
    assert t.name == "orig"


def test_with_options_tags_replace_the_old_tags():
    @task(tags=["old", "older"])
    def t():
        pass

    assert t.with_options(tags=["new"]).tags == {"new"}
    assert t.tags == {"old", "older"}


def test_with_options_retries_override():
    @task(retries=1)
    def t():
        pass

    assert t.with_options(retries=4).retries == 4
    assert t.retries == 1


@pytest.mark.parametrize("reserved", ["return_state", "wait_for"])
def test_reserved_parameter_name_is_rejected(reserved):
    namespace: dict = {}
    exec(f"def fn(x, {reserved}=None):\n    return x\n", namespace)
    with pytest.raises(ReservedArgumentError) as info:
        task(namespace["fn"])
    assert isinstance(info.value, TypeError)
    assert reserved in str(info.value)


# direct calls ----------------------------------------------------------------------


@task
def inc(x):
    return x + 1


@task
def explode(x):
    raise ValueError(f"boom {x}")


def test_direct_call_in_flow_returns_the_value():
    @flow
    def f():
        return inc(41)

    assert f() == 42


def test_direct_call_in_flow_raises_the_tasks_own_exception():
    caught = []

    @flow
    def f():
        try:
            explode(7)
        except ValueError as exc:
            caught.append(exc)
        return "handled"

    assert f() == "handled"
    [exc] = caught
    assert type(exc) is ValueError
    assert str(exc) == "boom 7"
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert 'raise ValueError(f"boom {x}")' in text


def test_unhandled_task_exception_reaches_the_flow_caller():
    @flow
    def f():
        explode(3)

    with pytest.raises(ValueError, match=r"^boom 3$"):
        f()


def test_return_state_gives_completed_state():
    @flow
    def f():
        return inc(1, return_state=True)

    state = f()
    assert state.is_completed()
    assert state.name == "Completed"
    assert str(state) == "Completed()"
    assert state.result() == 2


def test_return_state_gives_failed_state_and_never_raises():
    box = {}

    @flow
    def f():
        # A Failed state returned from a flow would fail the flow: keep it aside.
        box["state"] = explode(5, return_state=True)
        return "not raised"

    assert f() == "not raised"
    state = box["state"]
    assert state.is_failed()
    assert state.name == "Failed"
    assert state.message == "Task run encountered an exception ValueError: boom 5"
    exc = state.result(raise_on_failure=False)
    assert type(exc) is ValueError and str(exc) == "boom 5"
    with pytest.raises(ValueError, match=r"^boom 5$"):
        state.result()


def test_fn_bypasses_the_engine():
    @task
    def needs_context():
        get_run_logger()
        return "ran in a run"

    assert needs_context() == "ran in a run"
    with pytest.raises(MissingContextError):
        needs_context.fn()


def test_direct_call_outside_a_flow_returns_the_value():
    assert inc(9) == 10


def test_direct_call_outside_a_flow_raises_the_exception():
    with pytest.raises(ValueError, match=r"^boom 1$"):
        explode(1)


def test_task_called_inside_a_task():
    @task
    def outer(x):
        return inc(x) * 10

    @flow
    def f():
        return outer(1)

    assert f() == 20
    assert outer(2) == 30


# retries ---------------------------------------------------------------------------


def test_retries_rerun_until_success():
    calls = []

    @task(retries=2)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("not yet")
        return "finally"

    @flow
    def f():
        return flaky()

    assert f() == "finally"
    assert len(calls) == 3


def test_retries_with_a_list_of_delays_wait_between_attempts():
    calls = []

    @task(retries=2, retry_delay_seconds=[0.05, 0.1])
    def flaky():
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise ValueError("not yet")
        return "ok"

    @flow
    def f():
        return flaky()

    assert f() == "ok"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.045
    assert calls[2] - calls[1] >= 0.095


def test_retries_exhausted_raise_the_original_exception():
    calls = []

    @task(retries=2)
    def always():
        calls.append(1)
        raise ValueError(f"attempt {len(calls)}")

    @flow
    def f():
        always()

    with pytest.raises(ValueError, match=r"^attempt 3$"):
        f()
    assert len(calls) == 3


def test_retries_exhausted_end_in_failed_state():
    calls = []

    @task(retries=1)
    def always():
        calls.append(1)
        raise ValueError("boom")

    box = {}

    @flow
    def f():
        box["state"] = always(return_state=True)

    f()
    state = box["state"]
    assert len(calls) == 2
    assert state.is_failed()
    assert str(state) == "Failed('Task run encountered an exception ValueError: boom')"


def test_retries_apply_to_submitted_runs():
    calls = []

    @task(retries=2)
    def flaky(x):
        calls.append(x)
        if len(calls) < 3:
            raise ValueError("not yet")
        return x * 2

    @flow
    def f():
        return flaky.submit(21).result()

    assert f() == 42
    assert calls == [21, 21, 21]


# options ---------------------------------------------------------------------------


# Options that need Prefect's server or its transactions: refused with the reason.
OUT_OF_SCOPE_OPTIONS = {
    "on_commit": [lambda txn: None],
    "on_rollback": [lambda txn: None],
    "asset_deps": ["s3://bucket/data"],
}


@pytest.mark.parametrize("option", sorted(OUT_OF_SCOPE_OPTIONS))
def test_out_of_scope_option_raises_at_decoration_with_the_reason(option):
    with pytest.raises(NotImplementedError, match=rf"{option}.*(transactions|server)"):

        @task(**{option: OUT_OF_SCOPE_OPTIONS[option]})
        def t():
            pass


@pytest.mark.parametrize(
    ("call", "feature"),
    [
        (lambda t: t.delay(1), ".delay()"),
        (lambda t: t.apply_async((1,)), ".apply_async()"),
        (lambda t: t.serve(), ".serve()"),
        (lambda t: t.map([1], deferred=True), "map(deferred=True)"),
    ],
)
def test_server_only_features_say_they_need_a_server(call, feature):
    @task
    def background(x):
        return x

    with pytest.raises(NotImplementedError, match=rf"Task 'background': {re.escape(feature)} needs a Prefect server"):
        call(background)


def test_unknown_decorator_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="colour"):

        @task(colour="red")
        def t():
            pass


def test_task_run_name_template_is_formatted_with_parameters(capfd):
    @task(task_run_name="sq-{x}")
    def square(x):
        return x * x

    @flow
    def f():
        return square(3) + square.submit(-1).result()

    assert f() == 10
    err = capfd.readouterr().err
    assert "| INFO    | Task run 'sq-3' - Finished in state Completed()" in err
    assert "| INFO    | Task run 'sq--1' - Finished in state Completed()" in err


def test_task_run_name_callable(capfd):
    @task(task_run_name=lambda: "custom-name")
    def named():
        return 1

    @flow
    def f():
        return named()

    assert f() == 1
    err = capfd.readouterr().err
    assert "| INFO    | Task run 'custom-name' - Finished in state Completed()" in err


def test_task_run_name_callable_with_parameters(capfd):
    @task(task_run_name=lambda parameters: f"p-{parameters['x']}-{parameters['y']}")
    def named(x, y=5):
        return x + y

    @flow
    def f():
        return named(1)

    assert f() == 6
    err = capfd.readouterr().err
    assert "| INFO    | Task run 'p-1-5' - Finished in state Completed()" in err


def test_log_prints_turns_prints_into_log_lines(capfd):
    @task(log_prints=True)
    def talk():
        print("hello from print")
        return 1

    @flow
    def f():
        return talk()

    assert f() == 1
    out, err = capfd.readouterr()
    assert "hello from print" not in out
    assert "| INFO    | Task run 'talk-0' - hello from print" in err


def test_without_log_prints_prints_go_to_stdout(capfd):
    @task
    def talk():
        print("plain print")

    @flow
    def f():
        talk()

    f()
    out, err = capfd.readouterr()
    assert out == "plain print\n"
    assert "plain print" not in err


@pytest.mark.parametrize(("given", "kept"), [(None, None), (0, None), (0.0, None), (1, 1.0), (2.5, 2.5)])
def test_timeout_seconds_is_kept_as_seconds_and_zero_means_no_limit(given, kept):
    assert task(timeout_seconds=given)(lambda: 1).timeout_seconds == kept


@pytest.mark.parametrize(
    ("given", "error", "message"),
    [(-1, ValueError, "finite number > 0"), (float("nan"), ValueError, "finite"), ("1", TypeError, "got str")],
)
def test_a_bad_timeout_names_the_task_and_the_option(given, error, message):
    def slow():
        pass

    with pytest.raises(error, match=rf"Task 'slow': timeout_seconds .*{message}"):
        task(timeout_seconds=given)(slow)
