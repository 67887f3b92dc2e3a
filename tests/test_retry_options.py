"""Retry options (issue 8, item 4), as a user sees them: `retry_condition_fn(task,
task_run, state) -> bool`, asked on a failed attempt while retries remain, and
`retry_jitter_factor`, Prefect's clamped Poisson interval around each retry delay, drawn
with Python's `random` (so `random.seed` repeats it). The retry lines stay Prefect's.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import re

import pytest

from ferroflow import flow, task
from ferroflow.context import TaskRun
from ferroflow.states import Failed


@pytest.fixture
def task_lines(ferroflow_records):
    """The task-run log lines so far, as (level, message)."""
    return lambda: [(r.levelname, r.getMessage()) for r in ferroflow_records("ferroflow.task_runs")]


class Failing:
    """A task body that fails its first `failures` calls with `error`, then returns 'ok'."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


def run_in_flow(t, seed: int | None = None):
    """The final state's name and the value (or the exception) of one submitted run;
    `random` is seeded with `seed` just before (the flow run's name draws from it too)."""

    @flow
    def f():
        if seed is not None:
            random.seed(seed)
        future = t.submit()
        future.wait()
        return future.state.name, future.result(raise_on_failure=False)

    return f()


# -- retry_condition_fn ----------------------------------------------------------------------


def test_a_declined_retry_ends_the_run_failed_at_once(task_lines, caplog):
    body = Failing(5, ValueError("not worth retrying"))
    flaky = task(body, name="flaky", retries=3, retry_condition_fn=lambda t, r, s: False)

    name, error = run_in_flow(flaky)
    assert name == "Failed" and isinstance(error, ValueError) and body.calls == 1
    assert task_lines() == [
        ("ERROR", "Task run failed with exception: ValueError('not worth retrying')"),
        ("ERROR", "Finished in state Failed('Task run encountered an exception ValueError: not worth retrying')"),
    ]
    failure = next(r for r in caplog.records if r.getMessage().startswith("Task run failed"))
    assert failure.exc_info is not None  # with its traceback, as a failure without retries


def test_an_allowed_retry_goes_on_and_the_condition_is_not_asked_on_the_last_attempt(task_lines):
    asked: list[int] = []

    def condition(task_, task_run, state):
        asked.append(task_run.run_count)
        return True

    body = Failing(5, ConnectionError("down"))
    flaky = task(body, name="flaky", retries=2, retry_condition_fn=condition)

    assert run_in_flow(flaky)[0] == "Failed"
    assert body.calls == 3 and asked == [1, 2]
    assert [m for _, m in task_lines()][-2:] == [
        "Task run failed with exception: ConnectionError('down') - Retries are exhausted",
        "Finished in state Failed('Task run encountered an exception ConnectionError: down')",
    ]


def test_the_condition_gets_the_task_its_run_and_a_failed_state_holding_the_error():
    calls: list[tuple[object, TaskRun, object]] = []
    error = KeyError("missing")

    def condition(task_, task_run, state):
        calls.append((task_, task_run, state))
        return isinstance(state.result(raise_on_failure=False), ConnectionError)

    flaky = task(Failing(1, error), name="flaky", retries=3, retry_condition_fn=condition)
    assert run_in_flow(flaky) == ("Failed", error)
    ((task_, task_run, state),) = calls
    assert task_ is flaky and task_run.name == "flaky-0" and task_run.run_count == 1
    assert state.is_failed() and state.data is error
    assert state.message == "Task run encountered unexpected exception: KeyError('missing')"


def test_the_condition_decides_per_error():
    def only_connection_errors(task_, task_run, state):
        return isinstance(state.data, ConnectionError)

    transient = Failing(2, ConnectionError("blip"))
    permanent = Failing(2, PermissionError("denied"))
    a = task(transient, name="a", retries=3, retry_condition_fn=only_connection_errors)
    b = task(permanent, name="b", retries=3, retry_condition_fn=only_connection_errors)

    assert run_in_flow(a) == ("Completed", "ok") and transient.calls == 3
    assert run_in_flow(b)[0] == "Failed" and permanent.calls == 1


def test_a_condition_that_raises_declines_and_is_logged(task_lines, caplog):
    def condition(task_, task_run, state):
        raise RuntimeError("condition broke")

    body = Failing(5, ValueError("boom"))
    flaky = task(body, name="flaky", retries=2, retry_condition_fn=condition)

    assert run_in_flow(flaky)[0] == "Failed" and body.calls == 1
    assert task_lines()[0] == (
        "ERROR",
        f"An error was encountered while running `retry_condition_fn` check '{condition!r}' for task 'flaky'",
    )
    record = next(r for r in caplog.records if r.getMessage().startswith("An error was encountered"))
    assert record.exc_info is not None and str(record.exc_info[1]) == "condition broke"


def test_an_async_condition_is_run_to_its_end():
    async def condition(task_, task_run, state):
        await asyncio.sleep(0.01)
        return task_run.run_count < 2

    body = Failing(5, ValueError("boom"))
    flaky = task(body, name="flaky", retries=5, retry_condition_fn=condition)
    assert run_in_flow(flaky)[0] == "Failed" and body.calls == 2


def test_the_condition_of_an_async_task_in_an_async_flow():
    asked: list[int] = []

    async def condition(task_, task_run, state):
        asked.append(task_run.run_count)
        return True

    attempts: list[int] = []

    @task(retries=2, retry_condition_fn=condition)
    async def fetch():
        await asyncio.sleep(0)
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("again")
        return "fetched"

    @flow
    async def f():
        return await fetch(), await fetch.submit()

    assert asyncio.run(f()) == ("fetched", "fetched")
    assert asked == [1, 2]


def test_a_returned_failed_state_is_what_the_condition_sees():
    seen: list[object] = []
    returned = Failed(message="told so")

    def condition(task_, task_run, state):
        seen.append(state)
        return False

    @task(retries=2, retry_condition_fn=condition)
    def refuses():
        return returned

    assert run_in_flow(refuses)[0] == "Failed"
    (state,) = seen
    assert state.data is returned and state.message.startswith("Task run encountered unexpected state: ")


def test_any_callable_is_a_condition():
    # Prefect calls only plain and async functions (a partial or a callable object counts
    # as declining there); ferroflow calls any callable.
    class Budget:
        def __init__(self, retries: int) -> None:
            self.left = retries

        def __call__(self, task_, task_run, state):
            self.left -= 1
            return self.left >= 0

    def allow_until(task_, task_run, state, last):
        return task_run.run_count < last

    object_body, partial_body = Failing(9, ValueError("x")), Failing(9, ValueError("x"))
    by_object = task(object_body, name="by_object", retries=5, retry_condition_fn=Budget(2))
    until_fourth = functools.partial(allow_until, last=4)
    by_partial = task(partial_body, name="by_partial", retries=5, retry_condition_fn=until_fourth)
    run_in_flow(by_object)
    run_in_flow(by_partial)
    assert object_body.calls == 3 and partial_body.calls == 4


def test_the_condition_applies_to_direct_calls_and_maps():
    def never(task_, task_run, state):
        return False

    calls: list[int] = []

    @task(retries=3, retry_condition_fn=never)
    def fails(x):
        calls.append(x)
        raise ValueError(x)

    @flow
    def f():
        with pytest.raises(ValueError):
            fails(0)
        fails.map([1, 2, 3]).wait()

    f()
    assert sorted(calls) == [0, 1, 2, 3]


def test_retry_condition_fn_must_be_callable():
    expected = r"^Task 'inc': Expected `retry_condition_fn` to be callable, got str instead\.$"
    with pytest.raises(TypeError, match=expected):
        task(name="inc", retry_condition_fn="yes")(lambda x: x)


# -- retry_jitter_factor ----------------------------------------------------------------------


def prefect_jitter(delay: float, factor: float, rng: random.Random) -> float:
    """Prefect's `clamped_poisson_interval(delay, clamping_factor=factor)`, written out
    here to check ferroflow against: an exponential variate of mean `delay`, drawn by
    the inverse CDF between the CDF at a lower bound and at `delay * (1 + factor)`."""
    upper = 1 + factor
    lower = 0.0 if upper >= 50 else math.log(max(2**upper / (2**upper - 1), 1e-10), 2)

    def cdf(x: float) -> float:
        return 1 - math.exp(-x / delay)

    u = rng.uniform(cdf(max(0.0, delay * lower)), cdf(delay * upper))
    return -math.log(max(1 - u, 1e-10)) * delay


DELAY_LINE = re.compile(r"Retry (\d+)/\d+ will start ([0-9.e-]+) second\(s\) from now$")


def logged_delays(lines) -> list[float]:
    return [float(match.group(2)) for _, m in lines if (match := DELAY_LINE.search(m))]


def test_jittered_delays_are_prefects_clamped_poisson_intervals_from_random(task_lines):
    body = Failing(3, ValueError("x"))
    flaky = task(body, name="flaky", retries=3, retry_delay_seconds=0.02, retry_jitter_factor=1.5)
    assert run_in_flow(flaky, seed=2024) == ("Completed", "ok")

    expected = random.Random(2024)
    assert logged_delays(task_lines()) == [float(f"{prefect_jitter(0.02, 1.5, expected):g}") for _ in range(3)]


def test_jittered_delays_stay_within_the_clamp_and_keep_about_the_mean(task_lines):
    delay, factor = 0.01, 1.0
    def fails(x: int) -> None:
        raise ValueError(x)

    flaky = task(fails, name="flaky", retries=1, retry_delay_seconds=delay, retry_jitter_factor=factor)

    @flow
    def f():
        flaky.map(range(300)).wait()

    f()
    delays = logged_delays(task_lines())
    assert len(delays) == 300
    lower = delay * math.log(2**2 / (2**2 - 1), 2)  # Prefect's lower clamp for factor 1
    assert all(lower * 0.999 <= d <= delay * (1 + factor) * 1.001 for d in delays)
    assert len(set(delays)) > 100  # jittered, not one delay
    assert 0.7 * delay < sum(delays) / len(delays) < 1.3 * delay


def test_no_random_draw_without_jitter_or_without_a_delay(monkeypatch):
    def no_draws(*args, **kwargs):
        raise AssertionError("random was drawn")

    monkeypatch.setattr(random, "uniform", no_draws)
    plain = task(Failing(1, ValueError("x")), name="plain", retries=1, retry_delay_seconds=0.01)
    no_delay = task(Failing(1, ValueError("x")), name="no_delay", retries=1, retry_jitter_factor=2.0)
    zero_factor = task(
        Failing(1, ValueError("x")), name="zero", retries=1, retry_delay_seconds=0.01, retry_jitter_factor=0
    )
    assert run_in_flow(plain) == run_in_flow(no_delay) == run_in_flow(zero_factor) == ("Completed", "ok")


def test_jitter_applies_to_async_tasks(task_lines):
    attempts: list[int] = []

    @task(retries=2, retry_delay_seconds=[0.01, 0.03], retry_jitter_factor=0.5)
    async def flaky():
        await asyncio.sleep(0)
        attempts.append(1)
        if len(attempts) < 3:
            raise OSError("again")
        return "ok"

    @flow
    async def f():
        random.seed(99)
        return await flaky.submit()

    assert asyncio.run(f()) == "ok"
    expected = random.Random(99)
    assert logged_delays(task_lines()) == [
        float(f"{prefect_jitter(0.01, 0.5, expected):g}"),
        float(f"{prefect_jitter(0.03, 0.5, expected):g}"),
    ]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (-0.1, ValueError, r"^Task 'inc': `retry_jitter_factor` must be a finite number >= 0, got -0\.1$"),
        (float("nan"), ValueError, r"^Task 'inc': `retry_jitter_factor` must be a finite number >= 0, got nan$"),
        ("0.5", TypeError, r"^Task 'inc': retry_jitter_factor must be a number, got str: '0\.5'$"),
        (True, TypeError, r"^Task 'inc': retry_jitter_factor must be a number, got bool: True$"),
    ],
)
def test_retry_jitter_factor_is_checked(value, error, message):
    with pytest.raises(error, match=message):
        task(name="inc", retry_jitter_factor=value)(lambda x: x)


def test_jitter_is_kept_as_given_and_carried_by_with_options():
    @task(retries=1, retry_jitter_factor=2)
    def inc(x):
        return x + 1

    assert inc.retry_jitter_factor == 2.0
    assert inc.with_options(name="other").retry_jitter_factor == 2.0
