"""Caching and results (issue 8, item 1), as a user sees them: Prefect's cache policies
and options on `@task`, hits as `Cached` states whose function is not called, records
that outlive the process, expiry, refresh, result storage and serializers, and the
errors and log lines of what cannot be cached.

Every test stores its records under its own `tmp_path` (the storage settings point
there), never in the user's ~/.ferroflow.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import pathlib
import threading
import time

import pytest

from ferroflow import flow, task
from ferroflow.cache_policies import (
    DEFAULT,
    FLOW_PARAMETERS,
    INPUTS,
    NO_CACHE,
    NONE,
    RUN_ID,
    TASK_SOURCE,
    CacheKeyFnPolicy,
    CachePolicy,
    CompoundCachePolicy,
    Inputs,
)
from ferroflow.context import TaskRunContext
from ferroflow.filesystems import LocalFileSystem
from ferroflow.serializers import JSONSerializer
from ferroflow.states import Completed, State
from ferroflow.tasks import task_input_hash
from ferroflow.utilities.annotations import NotSet

SETTINGS = (
    "FERROFLOW_RESULTS_LOCAL_STORAGE_PATH",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
    "PREFECT_LOCAL_STORAGE_PATH",
    "FERROFLOW_RESULTS_PERSIST_BY_DEFAULT",
    "PREFECT_RESULTS_PERSIST_BY_DEFAULT",
    "FERROFLOW_RESULTS_DEFAULT_SERIALIZER",
    "PREFECT_RESULTS_DEFAULT_SERIALIZER",
    "FERROFLOW_TASKS_REFRESH_CACHE",
    "PREFECT_TASKS_REFRESH_CACHE",
    "FERROFLOW_TASKS_DEFAULT_NO_CACHE",
    "PREFECT_TASKS_DEFAULT_NO_CACHE",
    "FERROFLOW_TASKS_DISABLE_CACHING",
    "PREFECT_TASKS_DISABLE_CACHING",
)


@pytest.fixture(autouse=True)
def storage(tmp_path, monkeypatch) -> pathlib.Path:
    """The default storage folder of this test (the settings name it); no other caching
    setting is set."""
    for name in SETTINGS:
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "storage"
    monkeypatch.setenv("FERROFLOW_RESULTS_LOCAL_STORAGE_PATH", str(folder))
    return folder


@pytest.fixture
def task_lines(ferroflow_records):
    """The task-run log records, as `LEVEL | message`; call it to read them so far."""

    def lines(level: int = logging.INFO) -> list[str]:
        return [
            f"{record.levelname} | {record.getMessage()}"
            for record in ferroflow_records("ferroflow.task_runs")
            if record.levelno >= level
        ]

    return lines


def records(folder: pathlib.Path) -> list[str]:
    """The record files in `folder` (not temporary files)."""
    if not folder.exists():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))


class Calls:
    """Counts calls of a task's function, by argument."""

    def __init__(self) -> None:
        self.args: list[object] = []
        self.lock = threading.Lock()

    def __call__(self, value: object) -> None:
        with self.lock:
            self.args.append(value)


# a bare task ---------------------------------------------------------------------------


def test_a_bare_task_never_caches_nor_persists(storage):
    calls = Calls()

    @task
    def double(x):
        calls(x)
        return x * 2

    @flow
    def twice():
        return double(3), double.submit(3).result(), double(3, return_state=True).name

    assert twice() == (6, 6, "Completed")
    assert twice() == (6, 6, "Completed")
    assert calls.args == [3] * 6
    assert records(storage) == []
    assert double.cache_policy is NotSet and double.persist_result is None


# hits ----------------------------------------------------------------------------------


def test_a_hit_is_a_cached_completed_state_and_the_function_is_not_called(storage, task_lines):
    calls = Calls()

    @task(cache_policy=INPUTS)
    def double(x):
        calls(x)
        return x * 2

    @flow
    def twice():
        first = double.submit(21)
        first.wait()
        second = double.submit(21)
        value = second.result()
        return first.state, second.state, value

    first, second, value = twice()
    assert (first.name, first.type.value) == ("Completed", "COMPLETED")
    assert (second.name, second.type.value) == ("Cached", "COMPLETED")
    assert second.is_completed() and second.result() == 42 and value == 42
    assert str(second) == "Cached(type=COMPLETED)"
    assert calls.args == [21]
    assert "INFO | Finished in state Cached(type=COMPLETED)" in task_lines()
    assert len(records(storage)) == 1


def test_a_direct_call_with_return_state_gives_the_cached_state():
    calls = Calls()

    @task(cache_policy=INPUTS)
    def double(x):
        calls(x)
        return x * 2

    @flow
    def twice():
        return double(5, return_state=True), double(5, return_state=True)

    first, second = twice()
    assert (first.name, second.name) == ("Completed", "Cached")
    assert second.result() == 10
    assert calls.args == [5]


def test_a_direct_call_of_a_hit_returns_the_value(task_lines):
    calls = Calls()

    @task(cache_policy=INPUTS)
    def double(x):
        calls(x)
        return x * 2

    @flow
    def twice():
        return double(5), double(5)

    assert twice() == (10, 10)
    assert calls.args == [5]
    assert task_lines()[-1] == "INFO | Finished in state Cached(type=COMPLETED)"


def test_a_map_of_hits_gives_the_values_and_cached_states(storage):
    calls = Calls()

    @task(cache_policy=INPUTS)
    def square(x):
        calls(x)
        return x * x

    @flow
    def squares():
        futures = square.map(range(50))
        return futures.result(), [future.state.name for future in futures]

    assert squares() == ([x * x for x in range(50)], ["Completed"] * 50)
    assert squares() == ([x * x for x in range(50)], ["Cached"] * 50)
    assert sorted(calls.args) == list(range(50))
    assert len(records(storage)) == 50


def test_a_map_summary_counts_hits_as_cached(task_lines, caplog):
    @task(cache_policy=INPUTS)
    def square(x):
        return x * x

    @flow
    def squares():
        return square.map(range(10)).result()

    squares()
    squares()
    summaries = [r.getMessage() for r in caplog.records if "Mapped task 'square'" in r.getMessage()]
    assert summaries[-1].endswith("10 Cached")


def test_records_outlive_the_process(run_script, tmp_path):
    script = """
        import os, sys
        from ferroflow import flow, task
        from ferroflow.cache_policies import INPUTS

        @task(cache_policy=INPUTS)
        def slow_square(x):
            print("called", x, flush=True)
            return x * x

        @flow
        def squares():
            futures = slow_square.map([1, 2, 3])
            return futures.result(), [f.state.name for f in futures]

        print(squares())
    """
    env = {"FERROFLOW_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "shared")}
    first = run_script(script, env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("called") == 3
    assert "([1, 4, 9], ['Completed', 'Completed', 'Completed'])" in first.stdout
    second = run_script(script, env=env)
    assert second.returncode == 0, second.stderr
    assert "called" not in second.stdout
    assert "([1, 4, 9], ['Cached', 'Cached', 'Cached'])" in second.stdout


def test_an_async_task_caches_too():
    calls = Calls()

    @task(cache_policy=INPUTS)
    async def fetch(x):
        calls(x)
        await asyncio.sleep(0)
        return f"page {x}"

    @flow
    async def crawl():
        first = await fetch(1, return_state=True)
        second = await fetch(1, return_state=True)
        submitted = fetch.submit(1)
        return first, second, await submitted, submitted.state.name

    first, second, value, name = asyncio.run(crawl())
    assert (first.name, second.name, name) == ("Completed", "Cached", "Cached")
    assert second.result() == value == "page 1"
    assert calls.args == [1]


def test_a_trivial_async_task_without_options_keeps_its_fast_body():
    @task
    async def plain(x):
        return x

    @task(cache_policy=INPUTS)
    async def cached(x):
        return x

    assert repr_body(plain) == "eager-coroutine"
    assert repr_body(cached) == "coroutine"


def repr_body(t) -> str:
    from ferroflow._task_body import engine_function

    return engine_function(t)[1]


# what is and is not recorded -------------------------------------------------------------


def test_a_failed_run_records_nothing_and_its_retry_records_the_value(storage):
    attempts = Calls()

    @task(cache_policy=INPUTS, retries=1)
    def flaky(x):
        attempts(x)
        if len(attempts.args) == 1:
            raise ValueError("first attempt fails")
        return x + 1

    @task(cache_policy=INPUTS)
    def always_fails(y):  # INPUTS hashes names and values only: another name, another key
        raise ValueError("never")

    @flow
    def run():
        return flaky(1, return_state=True), always_fails(1, return_state=True)

    ok, failed = run()
    assert ok.result() == 2 and failed.is_failed()
    assert len(records(storage)) == 1  # the retried success only
    ok, failed = run()
    assert ok.name == "Cached" and failed.is_failed()
    assert attempts.args == [1, 1]


def test_a_returned_state_is_never_recorded(storage):
    @task(cache_policy=INPUTS)
    def skip(x):
        return Completed(message="skipped", data=x)

    @flow
    def run():
        return skip(1, return_state=True), skip(1, return_state=True)

    first, second = run()
    assert first.message == second.message == "skipped"
    assert records(storage) == []


# policies ------------------------------------------------------------------------------


def test_policies_compose_as_prefects():
    assert isinstance(INPUTS + TASK_SOURCE, CompoundCachePolicy)
    assert DEFAULT == INPUTS + TASK_SOURCE + RUN_ID
    assert NO_CACHE == NONE
    assert INPUTS + NO_CACHE is INPUTS and NO_CACHE + INPUTS is INPUTS
    assert INPUTS - "client" == Inputs(exclude=["client"])
    assert (INPUTS - "a" - "b").exclude == ["a", "b"]
    compound = (TASK_SOURCE + INPUTS) - "client"
    assert isinstance(compound, CompoundCachePolicy)
    assert [type(p).__name__ for p in compound.policies] == ["TaskSource", "Inputs"]
    assert compound.policies[-1] == Inputs(exclude=["client"])
    assert (TASK_SOURCE + RUN_ID) - "x" == TASK_SOURCE + RUN_ID  # no inputs to leave out
    nested = (INPUTS - "a") + (TASK_SOURCE + (INPUTS - "b"))
    assert nested.policies[-1] == Inputs(exclude=["a", "b"])
    with pytest.raises(TypeError, match="Can only subtract strings"):
        INPUTS - 1  # type: ignore[operator]
    with pytest.raises(ValueError, match="different storage locations"):
        INPUTS.configure(key_storage="/a") + TASK_SOURCE.configure(key_storage="/b")
    configured = INPUTS.configure(key_storage="/somewhere", isolation_level="READ_COMMITTED")
    assert (configured.key_storage, configured.isolation_level) == ("/somewhere", "READ_COMMITTED")
    assert INPUTS.key_storage is None  # configure copies


def test_inputs_minus_a_parameter_ignores_it():
    calls = Calls()

    @task(cache_policy=INPUTS - "client")
    def fetch(url, client):
        calls(url)
        return url.upper()

    @flow
    def run():
        return [fetch(u, object(), return_state=True).name for u in ("a", "a", "b")]

    assert run() == ["Completed", "Cached", "Completed"]
    assert calls.args == ["a", "b"]


def one_call_flow(t):
    """A flow that calls task `t` once with 1 and returns the run's state."""

    @flow
    def run():
        return t(1, return_state=True)

    return run


def test_task_source_keys_change_with_the_source():
    for body in ("return x + 1", "return x + 2"):
        namespace: dict[str, object] = {}
        exec(f"def step(x):\n    {body}\n", namespace)  # no source file: its bytecode is hashed
        run = one_call_flow(task(cache_policy=TASK_SOURCE, name="step")(namespace["step"]))
        assert run().name == "Completed"  # a new source is a new key
        assert run().name == "Cached"


def test_flow_parameters_key_by_the_flow_runs_parameters():
    calls = Calls()

    @task(cache_policy=FLOW_PARAMETERS)
    def report():
        calls(1)
        return "report"

    @flow
    def monthly(month: str):
        return report(return_state=True).name

    assert monthly("jan") == "Completed"
    assert monthly("jan") == "Cached"
    assert monthly("feb") == "Completed"
    assert len(calls.args) == 2


def test_run_id_shares_records_within_one_flow_run_only():
    @task(cache_policy=RUN_ID)
    def token():
        return "token"

    @flow
    def run():
        return token(return_state=True).name, token(return_state=True).name

    assert run() == ("Completed", "Cached")
    assert run() == ("Completed", "Cached")


def test_persisting_without_a_policy_uses_default_within_a_flow_run(storage):
    @task(persist_result=True)
    def add(x, y):
        return x + y

    assert add.cache_policy == DEFAULT and add.persist_result is True

    @flow
    def run():
        return add(1, 2, return_state=True).name, add(1, 2, return_state=True).name, add(1, 3, return_state=True).name

    assert run() == ("Completed", "Cached", "Completed")
    assert run() == ("Completed", "Cached", "Completed")  # DEFAULT hashes the flow run's id
    assert len(records(storage)) == 4


def test_no_cache_never_caches_nor_persists(storage):
    calls = Calls()

    @task(cache_policy=NO_CACHE)
    def step(x):
        calls(x)
        return x

    @flow
    def run():
        return step(1, return_state=True).name, step(1, return_state=True).name

    assert run() == ("Completed", "Completed")
    assert calls.args == [1, 1]
    assert records(storage) == [] and step.persist_result is None


def test_a_custom_policy_subclass_computes_keys():
    class ByFirstLetter(CachePolicy):
        def compute_key(self, task_ctx, inputs, flow_parameters, **kwargs):
            return inputs["word"][0]

    @task(cache_policy=ByFirstLetter())
    def shout(word):
        return word.upper()

    @flow
    def run():
        return [shout(word, return_state=True).result() for word in ("apple", "avocado", "banana")]

    assert run() == ["APPLE", "APPLE", "BANANA"]


def test_key_storage_puts_the_records_in_its_folder(tmp_path, storage):
    keys = tmp_path / "keys"

    @task(cache_policy=INPUTS.configure(key_storage=str(keys)))
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True).name, step(1, return_state=True).name

    assert run() == ("Completed", "Cached")
    assert len(records(keys)) == 1 and records(storage) == []


def test_serializable_isolation_is_refused_with_the_reason():
    with pytest.raises(NotImplementedError, match=r"Task 'step': cache_policy with isolation_level='SERIALIZABLE'"):

        @task(cache_policy=INPUTS.configure(isolation_level="SERIALIZABLE"))
        def step(x):
            return x


# cache_key_fn and task_input_hash --------------------------------------------------------


def test_cache_key_fn_gets_the_run_context_and_the_parameters():
    seen: list[tuple[object, dict]] = []

    def by_city(context, parameters):
        seen.append((context, parameters))
        return parameters["city"].lower()

    @task(cache_key_fn=by_city)
    def weather(city, unit="C"):
        return f"sunny in {city}"

    @flow
    def run():
        return [weather(city, return_state=True).name for city in ("Paris", "PARIS", "Oslo")]

    assert run() == ["Completed", "Cached", "Completed"]
    context, parameters = seen[0]
    assert isinstance(context, TaskRunContext)
    assert context.task is weather and context.task_run.name.startswith("weather")
    assert parameters == {"city": "Paris", "unit": "C"}
    assert isinstance(weather.cache_policy, CacheKeyFnPolicy) and weather.persist_result is True


def test_a_key_function_returning_none_does_not_cache():
    calls = Calls()

    @task(cache_key_fn=lambda context, parameters: None)
    def step(x):
        calls(x)
        return x

    @flow
    def run():
        return step(1, return_state=True).name, step(1, return_state=True).name

    assert run() == ("Completed", "Completed")
    assert calls.args == [1, 1]


def test_cache_key_fn_wins_over_cache_policy_with_a_warning(caplog, ferroflow_records):
    @task(cache_policy=INPUTS, cache_key_fn=lambda context, parameters: "one key")
    def step(x):
        return x

    assert "Both `cache_policy` and `cache_key_fn` are set on Task 'step'. `cache_key_fn` will be used." in caplog.text

    @flow
    def run():
        return step(1, return_state=True).result(), step(2, return_state=True).result()

    assert run() == (1, 1)  # one key for every input
    assert isinstance(step.with_options(name="again").cache_policy, CacheKeyFnPolicy)


def test_task_input_hash_caches_by_inputs():
    calls = Calls()

    @task(cache_key_fn=task_input_hash, cache_expiration=datetime.timedelta(days=1))
    def add(x, y):
        calls((x, y))
        return x + y

    @flow
    def run():
        return [add(x, y, return_state=True).name for x, y in ((1, 2), (1, 2), (2, 1))]

    assert run() == ["Completed", "Cached", "Completed"]
    assert calls.args == [(1, 2), (2, 1)]


def test_a_key_function_that_raises_is_logged_and_the_run_goes_on(task_lines):
    def broken(context, parameters):
        raise RuntimeError("no key today")

    @task(cache_key_fn=broken)
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True)

    assert run().result() == 1
    assert "ERROR | Error encountered when computing cache key - result will not be persisted." in task_lines()


def test_a_key_leading_outside_the_storage_folder_is_refused(storage, tmp_path, task_lines):
    @task(cache_key_fn=lambda context, parameters: "../escaped")
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True).name, step(1, return_state=True).name

    assert run() == ("Completed", "Completed")
    assert not (tmp_path / "escaped").exists()
    errors = [line for line in task_lines(logging.ERROR) if "cache key" in line]
    assert errors and "Task 'step': the key its cache_key_fn gave is unusable" in errors[0]


# unhashable inputs -----------------------------------------------------------------------


def test_an_unhashable_input_is_logged_with_prefects_advice_and_no_cache_is_the_way_out(caplog, task_lines):
    calls = Calls()

    @task(cache_policy=INPUTS)
    def guarded(lock, x):
        calls(x)
        return x

    @flow
    def run():
        lock = threading.Lock()
        return guarded(lock, 1, return_state=True).name, guarded(lock, 1, return_state=True).name

    assert run() == ("Completed", "Completed")  # the function runs, uncached
    assert calls.args == [1, 1]
    errors = [r for r in caplog.records if r.getMessage().startswith("Error encountered when computing cache key")]
    assert len(errors) == 2
    assert errors[0].exc_info is not None
    advice = str(errors[0].exc_info[1])
    assert isinstance(errors[0].exc_info[1], ValueError)
    assert "Unable to create hash - objects could not be serialized." in advice
    assert "cache_policy=NO_CACHE" in advice and "cache_key_fn" in advice

    caplog.clear()
    quiet = guarded.with_options(cache_policy=NO_CACHE)

    @flow
    def run_quietly():
        return quiet(threading.Lock(), 2)

    assert run_quietly() == 2
    assert not [r for r in caplog.records if "cache key" in r.getMessage()]


def test_sets_hash_alike_in_every_process(run_script, tmp_path):
    script = """
        from ferroflow import flow, task
        from ferroflow.cache_policies import INPUTS

        @task(cache_policy=INPUTS)
        def count(words):
            print("called", flush=True)
            return len(words)

        @flow
        def run():
            return count({"alpha", "beta", "gamma", "delta", (1, frozenset({"x", "y"}))}, return_state=True).name

        print(run())
    """
    env = {"FERROFLOW_RESULTS_LOCAL_STORAGE_PATH": str(tmp_path / "shared")}
    first = run_script(script, env={**env, "PYTHONHASHSEED": "1"})
    second = run_script(script, env={**env, "PYTHONHASHSEED": "2"})
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert "Completed" in first.stdout and "Cached" in second.stdout
    assert "called" not in second.stdout


# expiry and refresh ----------------------------------------------------------------------


def test_an_expired_record_is_a_miss():
    calls = Calls()

    @task(cache_policy=INPUTS, cache_expiration=datetime.timedelta(seconds=0.3))
    def step(x):
        calls(x)
        return len(calls.args)

    @flow
    def run():
        return step(1, return_state=True)

    assert run().name == "Completed"
    assert run().name == "Cached"
    time.sleep(0.6)
    late = run()
    assert late.name == "Completed" and late.result() == 2
    assert run().name == "Cached"


def test_refresh_cache_runs_and_overwrites_the_record():
    values = iter(range(100))

    @task(cache_policy=INPUTS)
    def step(x):
        return next(values)

    run, run_refreshing = one_call_flow(step), one_call_flow(step.with_options(refresh_cache=True))

    assert run().result() == 0
    assert run_refreshing().result() == 1
    assert run_refreshing().name == "Completed"
    hit = run()
    assert hit.name == "Cached" and hit.result() == 2  # the last refresh's value


@pytest.mark.parametrize("variable", ["FERROFLOW_TASKS_REFRESH_CACHE", "PREFECT_TASKS_REFRESH_CACHE"])
def test_the_refresh_setting_refreshes_every_cached_task(monkeypatch, variable):
    @task(cache_policy=INPUTS)
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True).name

    assert run() == "Completed"
    monkeypatch.setenv(variable, "true")
    assert run() == "Completed"
    monkeypatch.setenv(variable, "false")
    assert run() == "Cached"


def test_a_record_deleted_on_disk_is_a_miss_even_when_remembered(storage):
    @task(cache_policy=INPUTS)
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True).name

    assert run() == "Completed"
    assert run() == "Cached"
    for name in records(storage):
        (storage / name).unlink()
    assert run() == "Completed"


@pytest.mark.parametrize("in_memory", [True, False])
def test_what_a_run_does_with_its_value_does_not_reach_later_hits(in_memory):
    @task(cache_policy=INPUTS, cache_result_in_memory=in_memory)
    def step(x):
        return [x]

    @flow
    def run():
        first = step(1, return_state=True)
        first.result().append("changed by the flow")
        return step(1, return_state=True), step(1, return_state=True)

    second, third = run()
    assert second.name == third.name == "Cached"
    assert second.result() == third.result() == [1]
    # Hits of one process share the decoded value only when it is kept in memory.
    assert (second.result() is third.result()) is in_memory


# persistence options -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"cache_policy": INPUTS},
        {"cache_key_fn": task_input_hash},
        {"result_storage": "results"},
        {"result_serializer": "json"},
        {"result_storage_key": "out-{parameters[x]}"},
    ],
    ids=lambda options: next(iter(options)),
)
def test_an_explicit_cache_or_result_option_turns_persistence_on(options):
    @task(**options)
    def step(x):
        return x

    assert step.persist_result is True


def test_persist_result_false_turns_caching_off_with_a_warning(caplog, ferroflow_records, storage):
    @task(cache_policy=INPUTS, persist_result=False)
    def step(x):
        return x

    assert "Task 'step': ignoring `cache_policy` because `persist_result` is False" in caplog.text
    assert step.cache_policy == NO_CACHE

    @flow
    def run():
        return step(1, return_state=True).name, step(1, return_state=True).name

    assert run() == ("Completed", "Completed")
    assert records(storage) == []


@pytest.mark.parametrize("variable", ["FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "PREFECT_RESULTS_PERSIST_BY_DEFAULT"])
def test_persist_by_default_makes_bare_tasks_persist_with_default(monkeypatch, storage, variable):
    monkeypatch.setenv(variable, "true")

    @task
    def add(x, y):
        return x + y

    assert add.cache_policy == DEFAULT and add.persist_result is None

    @flow
    def run():
        return add(1, 2, return_state=True).name, add(1, 2, return_state=True).name

    assert run() == ("Completed", "Cached")
    assert records(storage)  # the task's record (and the flow's result: flows persist too)


@pytest.mark.parametrize("variable", ["FERROFLOW_TASKS_DISABLE_CACHING", "PREFECT_TASKS_DISABLE_CACHING"])
def test_disable_caching_overrides_every_policy(monkeypatch, variable):
    monkeypatch.setenv(variable, "1")

    @task(cache_policy=INPUTS)
    def step(x):
        return x

    assert step.cache_policy == NO_CACHE


def test_default_no_cache_applies_to_tasks_without_a_policy(monkeypatch):
    monkeypatch.setenv("FERROFLOW_TASKS_DEFAULT_NO_CACHE", "true")

    @task(persist_result=True)
    def unpolicied(x):
        return x

    @task(persist_result=True, cache_policy=INPUTS)
    def policied(x):
        return x

    assert unpolicied.cache_policy == NO_CACHE and policied.cache_policy == INPUTS


def test_a_setting_that_is_not_a_boolean_names_itself(monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "maybe")
    with pytest.raises(ValueError, match="FERROFLOW_RESULTS_PERSIST_BY_DEFAULT='maybe': expected true or false"):

        @task
        def step(x):
            return x


def test_with_options_inherits_and_overrides_caching():
    @task(cache_policy=INPUTS, cache_expiration=datetime.timedelta(hours=1))
    def step(x):
        return x

    copy = step.with_options(name="copy")
    assert copy.cache_policy == INPUTS and copy.cache_expiration == datetime.timedelta(hours=1)
    assert step.with_options(cache_policy=NO_CACHE).cache_policy == NO_CACHE
    bare = task(lambda x: x, name="bare")
    assert bare.with_options(name="still-bare").persist_result is None  # not Prefect's quirk


# storage and serializers ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["str", "path", "LocalFileSystem"])
def test_result_storage_names_the_folder(tmp_path, storage, kind):
    folder = tmp_path / "my-results"
    given = {"str": str(folder), "path": folder, "LocalFileSystem": LocalFileSystem(basepath=str(folder))}[kind]

    @task(cache_policy=INPUTS, result_storage=given)
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True).name

    assert run() == "Completed" and run() == "Cached"
    assert len(records(folder)) == 1 and records(storage) == []


@pytest.mark.parametrize("storage_option", ["s3-bucket/my-results", "local-file-system/results", "s3://bucket/key"])
def test_remote_storage_and_block_names_are_refused_with_the_reason(storage_option):
    with pytest.raises(NotImplementedError, match=r"Task 'step': result_storage=.*ferroflow stores results in local"):

        @task(result_storage=storage_option)
        def step(x):
            return x


@pytest.mark.parametrize(
    ("option", "value", "error", "message"),
    [
        ("cache_policy", "INPUTS", TypeError, "Task 'step': cache_policy must be a CachePolicy"),
        ("cache_key_fn", "key", TypeError, "Task 'step': cache_key_fn must be callable"),
        ("cache_expiration", 60, TypeError, "Task 'step': cache_expiration must be a datetime.timedelta"),
        ("refresh_cache", "yes", TypeError, "Task 'step': refresh_cache must be True, False or None"),
        ("persist_result", 1, TypeError, "Task 'step': persist_result must be True, False or None"),
        ("cache_result_in_memory", None, TypeError, "Task 'step': cache_result_in_memory must be True or False"),
        ("result_storage_key", 5, TypeError, "Task 'step': result_storage_key must be a string template"),
        ("result_storage", 5, TypeError, "Task 'step': result_storage: Result storage must be a path"),
        ("result_serializer", "yaml", ValueError, "Task 'step': result_serializer: Unknown serializer 'yaml'"),
        ("result_serializer", 5, TypeError, "Task 'step': result_serializer: Result serializer must be one of"),
    ],
)
def test_bad_options_are_refused_naming_the_task_and_the_option(option, value, error, message):
    with pytest.raises(error) as raised:

        @task(**{option: value})
        def step(x):
            return x

    assert str(raised.value).startswith(message)


@pytest.mark.parametrize("serializer", ["pickle", "cloudpickle", "json", "compressed/pickle", "compressed/json"])
def test_every_serializer_name_round_trips_a_record(serializer):
    value = {"when": datetime.date(2024, 1, 2), "tags": ["a", "b"], "n": 3}

    @task(cache_policy=INPUTS, result_serializer=serializer)
    def step(x):
        return value

    @flow
    def run():
        return step(1, return_state=True)

    assert run().name == "Completed"
    hit = run()
    assert hit.name == "Cached" and hit.result() == value


def test_json_records_are_json(storage):
    @task(cache_policy=INPUTS, result_serializer=JSONSerializer())
    def step(x):
        return {"x": x}

    @flow
    def run():
        return step(1)

    run()
    (name,) = records(storage)
    assert b'{"x": 1}' in (storage / name).read_bytes()


def test_a_value_the_serializer_cannot_write_is_logged_and_the_run_completes(storage, task_lines):
    @task(cache_policy=INPUTS, result_serializer="json")
    def step(x):
        return object()

    @flow
    def run():
        return step(1, return_state=True)

    assert run().is_completed()
    warnings = [line for line in task_lines(logging.WARNING) if "serializing" in line]
    assert warnings
    assert warnings[0].startswith("WARNING | Encountered an error while serializing result for transaction")
    assert "Failed to serialize object of type 'object' with serializer 'json'" in warnings[0]
    assert "Code execution will continue, but the transaction will not be committed." in warnings[0]
    assert records(storage) == []


@pytest.mark.parametrize("variable", ["FERROFLOW_RESULTS_DEFAULT_SERIALIZER", "PREFECT_RESULTS_DEFAULT_SERIALIZER"])
def test_the_default_serializer_setting(monkeypatch, storage, variable):
    monkeypatch.setenv(variable, "json")

    @task(cache_policy=INPUTS)
    def step(x):
        return [x]

    @flow
    def run():
        return step(7)

    run()
    (name,) = records(storage)
    assert b"[7]" in (storage / name).read_bytes()


# result_storage_key ----------------------------------------------------------------------


def test_result_storage_key_is_the_record_name_and_the_cache_key(storage):
    calls = Calls()

    @task(result_storage_key="reports/{parameters[region]}.pickle")
    def report(region):
        calls(region)
        return f"report for {region}"

    assert report.cache_policy is None and report.persist_result is True

    @flow
    def run():
        return [report(region, return_state=True).name for region in ("eu", "eu", "us")]

    assert run() == ["Completed", "Cached", "Completed"]
    assert calls.args == ["eu", "us"]
    assert records(storage / "reports") == ["eu.pickle", "us.pickle"]


def test_a_storage_key_that_cannot_be_formatted_fails_the_run():
    @task(result_storage_key="{parameters[missing]}")
    def step(x):
        return x

    @flow
    def run():
        state = step(1, return_state=True)
        return state.is_failed(), str(state.result(raise_on_failure=False))

    failed, error = run()
    assert failed
    assert error.startswith("Task 'step': result_storage_key '{parameters[missing]}' could not be formatted: KeyError")


def test_a_storage_key_template_can_use_the_runtime(storage):
    pytest.importorskip("ferroflow.runtime")

    @task(result_storage_key="{flow_run.flow_name}/{task_run.task_name}-{parameters[x]}")
    def step(x):
        return x

    @flow(name="nightly")
    def run():
        return step(3)

    assert run() == 3
    assert records(storage / "nightly") == ["step-3"]


# the default folder --------------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="POSIX modes")
def test_the_default_folder_is_made_owner_only_in_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("FERROFLOW_RESULTS_LOCAL_STORAGE_PATH")
    monkeypatch.setenv("HOME", str(tmp_path))

    @task(cache_policy=INPUTS)
    def step(x):
        return x

    @flow
    def run():
        return step(1, return_state=True).name

    assert run() == "Completed" and run() == "Cached"
    storage = tmp_path / ".ferroflow" / "storage"
    assert (storage.parent.stat().st_mode & 0o777, storage.stat().st_mode & 0o777) == (0o700, 0o700)
    (name,) = records(storage)
    assert (storage / name).stat().st_mode & 0o777 == 0o600


def test_prefects_storage_setting_is_honoured(monkeypatch, tmp_path):
    monkeypatch.delenv("FERROFLOW_RESULTS_LOCAL_STORAGE_PATH")
    monkeypatch.setenv("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path / "prefect-results"))

    @task(cache_policy=INPUTS)
    def step(x):
        return x

    @flow
    def run():
        return step(1)

    run()
    assert len(records(tmp_path / "prefect-results")) == 1


def test_results_module_reads_and_writes_records(tmp_path):
    from ferroflow.results import ResultStore, get_default_persist_setting, get_default_result_storage

    store = ResultStore(result_storage=tmp_path / "store", serializer="json")
    record = store.write({"a": 1}, key="answer")
    assert record.metadata.storage_key == "answer"
    assert store.exists("answer") and store.read("answer").result == {"a": 1}
    assert not store.exists("question")
    with pytest.raises(ValueError, match="No usable result record for key 'question'"):
        store.read("question")
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=1)
    store.write("old", key="expired", expiration=past)
    assert not store.exists("expired")
    assert json.loads((tmp_path / "store" / "answer").read_bytes().split(b"json", 1)[1]) == {"a": 1}
    assert get_default_persist_setting() is False
    assert get_default_result_storage().basepath == os.environ["FERROFLOW_RESULTS_LOCAL_STORAGE_PATH"]


def test_prefect_imports_port_unchanged():
    import ferroflow.cache_policies as cache_policies
    import ferroflow.filesystems as filesystems
    import ferroflow.results as results
    import ferroflow.serializers as serializers

    for module, names in (
        (cache_policies, ["INPUTS", "TASK_SOURCE", "FLOW_PARAMETERS", "RUN_ID", "NO_CACHE", "NONE", "DEFAULT"]),
        (results, ["ResultStore", "ResultRecord", "ResultRecordMetadata", "ResultStorage", "ResultSerializer"]),
        (serializers, ["Serializer", "PickleSerializer", "JSONSerializer", "CompressedSerializer"]),
        (filesystems, ["LocalFileSystem", "WritableFileSystem"]),
    ):
        for name in names:
            assert hasattr(module, name), f"{module.__name__}.{name}"
    assert callable(task_input_hash)
    assert isinstance(Completed(), State)


def test_import_ferroflow_loads_no_caching_module(run_script):
    result = run_script(
        """
        import sys
        import ferroflow
        from ferroflow import task

        @task
        def bare(x):
            return x

        loaded = [m for m in ("ferroflow.cache_policies", "ferroflow.results", "ferroflow._task_cache",
                              "ferroflow.serializers", "ferroflow.utilities.hashing", "hashlib", "json")
                  if m in sys.modules]
        print(loaded)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_tasks_in_one_module_share_records_by_key_not_by_task(storage):
    @task(cache_key_fn=lambda context, parameters: "shared")
    def first(x):
        return "first"

    @task(cache_key_fn=lambda context, parameters: "shared")
    def second(x):
        return "second"

    @flow
    def run():
        return first(1), second(1, return_state=True)

    value, state = run()
    assert value == "first" and state.name == "Cached" and state.result() == "first"



def test_a_run_that_times_out_records_nothing_and_a_later_success_does(storage):
    slow = threading.Event()
    slow.set()

    @task(cache_policy=INPUTS, timeout_seconds=0.3)
    def step(x):
        if slow.is_set():
            time.sleep(5)
        return x

    @flow
    def run():
        future = step.submit(1)
        future.wait()
        return future.state.name

    assert run() == "TimedOut"
    time.sleep(0.1)
    assert records(storage) == []
    slow.clear()
    assert run() == "Completed"
    assert run() == "Cached"


class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    @task(cache_policy=INPUTS)
    def greet(self, name):
        return f"{self.greeting}, {name}"


def test_a_method_task_keys_by_its_instance_too():
    @flow
    def run():
        hello, bonjour = Greeter("hello"), Greeter("bonjour")
        states = [hello.greet("ann", return_state=True), bonjour.greet("ann", return_state=True)]
        states.append(Greeter("hello").greet("ann", return_state=True))
        return [(state.name, state.result()) for state in states]

    assert run() == [("Completed", "hello, ann"), ("Completed", "bonjour, ann"), ("Cached", "hello, ann")]


def test_completion_hooks_run_for_hits_with_the_cached_state():
    seen: list[str] = []

    @task(cache_policy=INPUTS, on_completion=[lambda task, task_run, state: seen.append(state.name)])
    def step(x):
        return x

    @flow
    def run():
        return step(1), step(1)

    assert run() == (1, 1)
    assert seen == ["Completed", "Cached"]
