"""Run context and runtime (issue 8, item 5), as a user sees them:
`ferroflow.context.get_run_context()`, `TaskRunContext.get()`, `FlowRunContext.get()`
with Prefect's fields (`task_run.id`, `name`, `run_count`, `tags`, `flow_run_id`; the
run's `parameters`; `flow_run.id`, `name`, `run_count`, `parameters`; the `task` and
`flow`), `ferroflow.runtime` as `prefect.runtime`, and `ferroflow.tags(...)` seen in
both. In a thread-pool flow, direct calls, maps, async tasks, and outside flows.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from ferroflow import flow, tags, task
from ferroflow.context import FlowRunContext, TaskRunContext, get_run_context
from ferroflow.exceptions import MissingContextError
from ferroflow.runtime import deployment, flow_run, task_run


def task_view() -> dict[str, Any]:
    """What a task run sees of itself through `TaskRunContext.get()`."""
    context = TaskRunContext.get()
    assert context is not None
    run = context.task_run
    return {
        "task": context.task,
        "id": run.id,
        "name": run.name,
        "run_count": run.run_count,
        "tags": run.tags,
        "parameters": context.parameters,
        "flow_run_id": run.flow_run_id,
    }


# -- TaskRunContext --------------------------------------------------------------------------


def test_a_submitted_run_sees_its_fields():
    @task(tags=["etl"])
    def load(table, limit=10):
        return task_view()

    @flow
    def f():
        future = load.submit("users")
        return future.result(), future.task_run_id, FlowRunContext.get().flow_run.id

    view, run_id, flow_run_id = f()
    assert view["task"] is load
    assert view["id"] == run_id and view["name"] == "load-0" and view["run_count"] == 1
    assert view["tags"] == ["etl"]
    assert view["parameters"] == {"table": "users", "limit": 10}  # defaults applied, as Prefect's
    assert view["flow_run_id"] == flow_run_id


def test_direct_calls_maps_and_async_runs_see_their_fields():
    @task
    def sync_view(x, scale=1):
        return task_view()

    @task
    async def async_view(x):
        await asyncio.sleep(0)
        return task_view()

    @flow
    def sync_flow():
        return sync_view(1), sync_view.map([2, 3], scale=5).result(), async_view.submit(4).result()

    @flow
    async def async_flow():
        return await async_view(5), await async_view.submit(6)

    direct, mapped, submitted_async = sync_flow()
    inline, submitted_in_async_flow = asyncio.run(async_flow())
    assert (direct["name"], direct["parameters"]) == ("sync_view-0", {"x": 1, "scale": 1})
    assert [(v["name"], v["parameters"]) for v in mapped] == [
        ("sync_view-1", {"x": 2, "scale": 5}),
        ("sync_view-2", {"x": 3, "scale": 5}),
    ]
    assert (submitted_async["name"], submitted_async["parameters"]) == ("async_view-0", {"x": 4})
    assert (inline["name"], inline["parameters"]) == ("async_view-0", {"x": 5})
    assert (submitted_in_async_flow["name"], submitted_in_async_flow["parameters"]) == ("async_view-1", {"x": 6})
    views = [direct, *mapped, submitted_async, inline, submitted_in_async_flow]
    assert all(v["run_count"] == 1 and v["flow_run_id"] is not None for v in views)


def test_parameters_hold_the_results_of_upstream_futures():
    @task
    def two():
        return 2

    @task
    def add(xs, y):
        return TaskRunContext.get().parameters

    @flow
    def f():
        a = two.submit()
        return add.submit([a, a], y=a).result()

    assert f() == {"xs": [2, 2], "y": 2}


def test_run_count_counts_the_attempts():
    counts: list[int] = []

    @task(retries=2)
    def flaky():
        counts.append(TaskRunContext.get().task_run.run_count)
        if len(counts) < 3:
            raise ValueError("again")
        return counts[-1]

    @task(retries=1)
    async def async_flaky():
        await asyncio.sleep(0)
        count = TaskRunContext.get().task_run.run_count
        if count == 1:
            raise ValueError("again")
        return count

    @flow
    def f():
        return flaky.submit().result(), async_flaky.submit().result()

    assert f() == (3, 2)
    assert counts == [1, 2, 3]


def test_tags_are_the_tasks_and_those_around_the_call():
    @task(tags={"db"})
    def view():
        return TaskRunContext.get().task_run.tags

    @task
    async def async_view():
        await asyncio.sleep(0)
        return TaskRunContext.get().task_run.tags

    @flow
    def f():
        plain = view()
        with tags("nightly", "prod"):
            direct = view()
            submitted = view.submit().result()
            coroutine = async_view.submit().result()
            with tags("inner"):
                nested = view.submit().result()
        return plain, direct, submitted, coroutine, nested

    plain, direct, submitted, coroutine, nested = f()
    assert plain == ["db"]
    assert direct == submitted == ["db", "nightly", "prod"]
    assert coroutine == ["nightly", "prod"]
    assert nested == ["db", "inner", "nightly", "prod"]


def test_the_tags_of_mapped_runs_are_those_around_the_map():
    @task
    def view(x):
        return TaskRunContext.get().task_run.tags

    @flow
    def f():
        with tags("batch"):
            futures = view.map(range(3))
        return futures.result()

    assert f() == [["batch"]] * 3


def test_a_task_sees_its_flow_run():
    @task
    def look():
        context = FlowRunContext.get()
        return context.flow, context.flow_run.id, context.flow_run.name, context.flow_run.run_count, context.parameters

    @flow(flow_run_name="nightly-{day}")
    def etl(day, region="eu"):
        own = FlowRunContext.get()
        return look.submit().result(), (own.flow, own.flow_run.id)

    (flow_, run_id, name, run_count, parameters), (own_flow, own_id) = etl("mon")
    assert flow_ is etl is own_flow and run_id == own_id
    assert (name, run_count, parameters) == ("nightly-mon", 1, {"day": "mon", "region": "eu"})


def test_a_retried_flow_counts_its_runs():
    counts: list[int] = []

    @flow(retries=1)
    def flaky():
        counts.append(get_run_context().flow_run.run_count)
        if len(counts) == 1:
            raise ValueError("again")

    flaky()
    assert counts == [1, 2]


def test_get_run_context_is_the_innermost_run():
    @task
    def inner():
        return type(get_run_context()).__name__

    @flow
    def f():
        return type(get_run_context()).__name__, inner()

    assert f() == ("FlowRunContext", "TaskRunContext")
    assert inner() == "TaskRunContext"  # a task called outside any flow has its own context
    with pytest.raises(MissingContextError, match="No run context available"):
        get_run_context()
    assert TaskRunContext.get() is None and FlowRunContext.get() is None


def test_a_task_outside_flows_has_no_flow_run():
    @task
    def view(x):
        context = TaskRunContext.get()
        return context.task_run.name, context.task_run.flow_run_id, context.flow_run, FlowRunContext.get()

    assert view(1) == ("view", None, None, None)
    assert view.submit(2).result() == ("view-0", None, None, None)


def test_a_run_carried_to_a_helper_thread_keeps_its_context():
    # A time limit runs a submitted task's function on a helper thread of its own: the
    # run's context goes with it.
    @task(timeout_seconds=30, retries=1, tags=["slow"])
    def limited(x, y=3):
        view = task_view()
        if view["run_count"] == 1:
            raise ValueError("again")
        return view

    @flow
    def f():
        return limited.submit(1).result()

    view = f()
    assert (view["name"], view["run_count"], view["tags"]) == ("limited-0", 2, ["slow"])
    assert view["parameters"] == {"x": 1, "y": 3}


# -- ferroflow.runtime ------------------------------------------------------------------------------


def test_runtime_in_a_task_and_in_its_flow():
    @task(tags=["t"])
    def inside(x, y=2):
        return {
            "task_run": (task_run.id, task_run.name, task_run.tags, task_run.parameters, task_run.run_count),
            "task_name": task_run.task_name,
            "flow_run": (flow_run.id, flow_run.name, flow_run.flow_name, flow_run.parameters, flow_run.run_count),
        }

    @flow(flow_run_name="run-{n}")
    def my_flow(n):
        future = inside.submit(n)
        return future.result(), str(future.task_run_id), (task_run.name, task_run.id, task_run.run_count)

    seen, run_id, in_flow = my_flow(7)
    assert seen["task_run"] == (run_id, "inside-0", ["t"], {"x": 7, "y": 2}, 1)
    assert seen["task_name"] == "inside"
    flow_run_id, name, flow_name, parameters, run_count = seen["flow_run"]
    assert isinstance(flow_run_id, str)
    assert (name, flow_name, parameters, run_count) == ("run-7", "my-flow", {"n": 7}, 1)
    assert in_flow == (None, None, 0)  # the flow's own code is in no task run


def test_runtime_outside_runs_gives_prefects_empty_values():
    assert (task_run.id, task_run.name, task_run.tags, task_run.parameters) == (None, None, [], {})
    assert (task_run.run_count, task_run.task_name) == (0, None)
    assert (flow_run.id, flow_run.name, flow_run.flow_name, flow_run.flow_version) == (None, None, None, None)
    assert (flow_run.parameters, flow_run.run_count, flow_run.tags) == ({}, 0, [])
    assert (deployment.id, deployment.name, deployment.version, deployment.parameters) == (None, None, None, {})
    before = time.time()
    assert flow_run.scheduled_start_time.timestamp() >= before - 1  # now, in UTC
    assert flow_run.scheduled_start_time.utcoffset().total_seconds() == 0


def test_runtime_in_async_runs_and_direct_calls():
    @task
    async def fetch(url):
        await asyncio.sleep(0)
        return task_run.name, task_run.parameters, flow_run.name

    @task
    def direct(x):
        return task_run.name, task_run.parameters

    @flow(flow_run_name="async-run")
    async def f():
        return await fetch("a"), await fetch.submit("b"), direct(1)

    assert asyncio.run(f()) == (
        ("fetch-0", {"url": "a"}, "async-run"),
        ("fetch-1", {"url": "b"}, "async-run"),
        ("direct-0", {"x": 1}),
    )


def test_a_task_run_name_callable_reads_the_runtime():
    # Prefect's documented way to name task runs from their parameters.
    def name_from_runtime():
        parameters = task_run.parameters
        return f"{flow_run.flow_name}-{task_run.task_name}-{parameters['name']}-{parameters['limit']}"

    @task(task_run_name=name_from_runtime)
    def fetch(name, limit=3):
        return TaskRunContext.get().task_run.name

    @task(task_run_name=name_from_runtime)
    async def afetch(name, limit=5):
        await asyncio.sleep(0)
        return TaskRunContext.get().task_run.name

    @flow
    def crawl():
        return fetch("alice"), fetch.submit("bob", limit=9).result(), afetch.submit("eve").result()

    assert crawl() == ("crawl-fetch-alice-3", "crawl-fetch-bob-9", "crawl-afetch-eve-5")


def test_the_flow_runs_tags_and_start_time():
    @flow
    def tagged():
        return flow_run.tags, flow_run.scheduled_start_time, deployment.flow_run_id == flow_run.id

    before = time.time()
    with tags("nightly"):
        run_tags, started, same_id = tagged()
    assert run_tags == ["nightly"] and same_id
    assert before - 1 <= started.timestamp() <= time.time()


def test_runtime_values_can_be_mocked_through_the_environment(monkeypatch):
    monkeypatch.setenv("PREFECT__RUNTIME__TASK_RUN__RUN_COUNT", "4")
    monkeypatch.setenv("FERROFLOW__RUNTIME__FLOW_RUN__NAME", "mocked")
    monkeypatch.setenv("PREFECT__RUNTIME__FLOW_RUN__NAME", "not this one")
    monkeypatch.setenv("PREFECT__RUNTIME__DEPLOYMENT__CUSTOM", "anything")
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "0c5b2e7e-0000-0000-0000-000000000000")
    assert task_run.run_count == 4  # cast to the type of the real value
    assert flow_run.name == "mocked"  # ferroflow's variable first
    assert deployment.custom == "anything"
    assert flow_run.id == "0c5b2e7e-0000-0000-0000-000000000000"

    @task
    def outside_flows():
        return flow_run.id

    assert outside_flows() is None  # a task run outside flows has no flow run, as in Prefect
    monkeypatch.setenv("PREFECT__RUNTIME__TASK_RUN__PARAMETERS", "{}")
    with pytest.raises(ValueError, match="cannot be mocked using an environment variable"):
        _ = task_run.parameters


def test_unknown_runtime_attributes_raise_attribute_error():
    with pytest.raises(AttributeError, match=r"ferroflow\.runtime\.task_run has no attribute 'nope'"):
        _ = task_run.nope
    assert "run_count" in dir(task_run) and "flow_name" in dir(flow_run)
    from ferroflow.runtime.task_run import name  # the import form reads the value now

    assert name is None


def test_tags_around_a_definition_stay_there_and_tags_around_a_call_reach_its_run():
    with tags("defined"):

        @task(tags=["own"])
        def tagged():
            return sorted(TaskRunContext.get().task_run.tags)

    assert tagged.tags == {"own"}
    assert tagged() == ["own"]
    with tags("called"):
        assert tagged() == ["called", "own"]
