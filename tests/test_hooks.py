"""Task state hooks (issue 8, item 3), as a user sees them: `on_completion`,
`on_failure` and `on_running`, given as lists or registered with `@my_task.on_failure`;
called as `hook(task, task_run, state)` with Prefect's log lines, in Prefect's order,
in the run's thread and before the run's future completes; a hook that raises is
logged and changes nothing. For runs in batches (submit, map), direct calls (inside and
outside flows), and coroutine runs.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
import time

import pytest

from ferroflow import flow, get_run_logger, task
from ferroflow.context import TaskRun, TaskRunContext
from ferroflow.states import Completed, Failed


@pytest.fixture
def task_lines(ferroflow_records):
    """The task-run log lines so far, as (level, run name, message)."""
    return lambda: [
        (record.levelname, getattr(record, "task_run_name", None), record.getMessage())
        for record in ferroflow_records("ferroflow.task_runs")
    ]


class Recorder:
    """Hooks that record how they were called: (label, task, task_run, state)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, TaskRun, object]] = []
        self.lock = threading.Lock()

    def hook(self, label: str):
        def hook(task_, task_run, state):
            with self.lock:
                self.calls.append((label, task_, task_run, state))

        hook.__name__ = label
        return hook

    @property
    def labels(self) -> list[str]:
        return [call[0] for call in self.calls]

    @property
    def states(self) -> list[tuple[str, str]]:
        return [(call[0], call[3].name) for call in self.calls]


def ran(label: str, state: str) -> list[tuple[str, str]]:
    """Prefect's two INFO lines of a hook that ran well, as (level, message)."""
    return [
        ("INFO", f"Running hook {label!r} in response to entering state {state!r}"),
        ("INFO", f"Hook {label!r} finished running successfully"),
    ]


def messages(lines, run=None):
    return [(level, message) for level, name, message in lines if run is None or name == run]


# -- what a hook gets, and when ------------------------------------------------------------


def test_completion_hooks_get_the_task_its_run_and_the_state_before_the_finished_line(task_lines):
    seen = Recorder()

    @task(on_completion=[seen.hook("first"), seen.hook("second")])
    def double(x):
        return 2 * x

    @flow
    def f():
        future = double.submit(21)
        return future.result(), future.task_run_id

    value, run_id = f()
    assert value == 42
    assert seen.labels == ["first", "second"]
    _, task_, task_run, state = seen.calls[0]
    assert task_ is double
    assert isinstance(task_run, TaskRun) and task_run.name == "double-0" and task_run.id == run_id
    assert task_run.run_count == 1
    assert state.is_completed() and state.name == "Completed" and state.result() == 42
    assert messages(task_lines(), "double-0") == [
        *ran("first", "Completed"),
        *ran("second", "Completed"),
        ("INFO", "Finished in state Completed()"),
    ]


def test_decorator_forms_register_the_hook_and_return_the_function():
    seen = Recorder()

    @task
    def inc(x):
        return x + 1

    done = seen.hook("done")
    assert inc.on_completion(done) is done
    assert inc.on_completion_hooks == [done]

    # Added after the task was made (and used), with the decorator form: the next runs see it.
    @inc.on_running
    def starting(task_, task_run, state):
        seen.calls.append(("starting", task_, task_run, state))

    @inc.on_failure
    def failed(task_, task_run, state):  # pragma: no cover - this run does not fail
        seen.calls.append(("failed", task_, task_run, state))

    assert callable(starting) and starting.__name__ == "starting"
    assert inc.on_running_hooks == [starting] and inc.on_failure_hooks == [failed]

    @flow
    def f():
        return inc(1)

    assert f() == 2
    assert seen.states == [("starting", "Running"), ("done", "Completed")]


def test_hooks_added_to_the_lists_later_are_seen():
    seen = Recorder()

    @task
    def inc(x):
        return x + 1

    @flow
    def f():
        return inc.submit(1).result()

    assert f() == 2 and seen.calls == []
    inc.on_completion_hooks.append(seen.hook("late"))
    assert f() == 2 and seen.labels == ["late"]


def test_on_running_fires_at_each_attempt_and_on_failure_once_the_retries_are_spent(task_lines):
    seen = Recorder()

    @task(retries=2, on_running=[seen.hook("go")], on_failure=[seen.hook("lost")], on_completion=[seen.hook("ok")])
    def always_fails():
        raise ValueError("boom")

    @flow
    def f():
        return always_fails.submit().wait()

    f()
    assert seen.states == [("go", "Running"), ("go", "Retrying"), ("go", "Retrying"), ("lost", "Failed")]
    assert [call[2].run_count for call in seen.calls] == [1, 2, 3, 3]
    failure = "Task run failed with exception: ValueError('boom')"
    assert messages(task_lines()) == [
        *ran("go", "Running"),
        ("INFO", f"{failure} - Retry 1/2 will start immediately"),
        *ran("go", "Retrying"),
        ("INFO", f"{failure} - Retry 2/2 will start immediately"),
        *ran("go", "Retrying"),
        ("ERROR", f"{failure} - Retries are exhausted"),
        *ran("lost", "Failed"),
        ("ERROR", "Finished in state Failed('Task run encountered an exception ValueError: boom')"),
    ]
    state = seen.calls[-1][3]
    assert state.is_failed() and isinstance(state.result(raise_on_failure=False), ValueError)


def test_a_retried_run_that_then_completes_gets_only_its_completion_hooks():
    seen = Recorder()
    attempts = []

    @task(retries=3, on_failure=[seen.hook("lost")], on_completion=[seen.hook("ok")])
    def flaky():
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("flaky")
        return "ok"

    @flow
    def f():
        return flaky()

    assert f() == "ok"
    assert seen.states == [("ok", "Completed")]
    assert seen.calls[0][2].run_count == 3


def test_a_hook_that_raises_is_logged_and_changes_nothing(task_lines, caplog):
    seen = Recorder()

    def broken(task_, task_run, state):
        raise RuntimeError("hook broke")

    @task(on_completion=[broken, seen.hook("after")])
    def inc(x):
        return x + 1

    @flow
    def f():
        future = inc.submit(1)
        return future.result(), future.state

    value, state = f()
    assert value == 2 and state.is_completed() and state.name == "Completed"
    assert seen.labels == ["after"]  # the next hook still runs
    assert messages(task_lines()) == [
        ("INFO", "Running hook 'broken' in response to entering state 'Completed'"),
        ("ERROR", "An error was encountered while running hook 'broken'"),
        *ran("after", "Completed"),
        ("INFO", "Finished in state Completed()"),
    ]
    (record,) = [r for r in caplog.records if r.getMessage().startswith("An error was encountered")]
    assert record.exc_info is not None and str(record.exc_info[1]) == "hook broke"  # with its traceback


def test_a_failure_hook_that_raises_leaves_the_run_failed_with_its_own_error():
    def broken(task_, task_run, state):
        raise KeyError("hook")

    @task(on_failure=[broken])
    def fails():
        raise ValueError("own error")

    @flow
    def f():
        future = fails.submit()
        future.wait()
        return future.state.name, future.result(raise_on_failure=False)

    name, error = f()
    assert name == "Failed" and isinstance(error, ValueError) and str(error) == "own error"


def test_hooks_are_named_as_prefect_names_them(task_lines):
    class Notify:
        def __call__(self, task_, task_run, state):
            pass

    def tell(task_, task_run, state, who):
        pass

    @task(on_completion=[Notify(), functools.partial(tell, who="ops")])
    def inc(x):
        return x + 1

    inc(1)
    assert [m for _, m in messages(task_lines()) if m.startswith("Running hook")] == [
        "Running hook 'Notify' in response to entering state 'Completed'",
        "Running hook 'tell' in response to entering state 'Completed'",
    ]


# -- before the future completes, in the run's thread and context ---------------------------


def test_hooks_have_run_when_the_result_is_read():
    appended: list[int] = []

    def record(task_, task_run, state):
        time.sleep(0.01)  # slower than reading the result: a race would show
        appended.append(state.result())

    @task(on_completion=[record])
    def ident(x):
        return x

    @flow
    def f():
        seen_after_submit = [ident.submit(i).result() for i in range(3)] == [0, 1, 2] and list(appended)
        futures = ident.map(range(100))
        results = futures.result()
        return seen_after_submit, results, sorted(appended[3:])

    seen_after_submit, results, mapped = f()
    assert seen_after_submit == [0, 1, 2]
    assert results == list(range(100)) and mapped == list(range(100))


def test_every_run_of_a_map_calls_its_hooks_before_the_summary_line(task_lines, caplog):
    seen = Recorder()

    @task(on_completion=[seen.hook("each")])
    def square(x):
        return x * x

    @flow
    def f():
        return square.map(range(50)).result()

    assert f() == [x * x for x in range(50)]
    assert sorted(call[3].result() for call in seen.calls) == [x * x for x in range(50)]
    assert sorted(call[2].name for call in seen.calls) == sorted(f"square-{i}" for i in range(50))
    records = [r.getMessage() for r in caplog.records if r.name.startswith("ferroflow")]
    summary = next(i for i, m in enumerate(records) if m.startswith("Mapped task 'square'"))
    assert all(not m.startswith("Hook 'each'") for m in records[summary:])


def test_hooks_run_in_the_runs_thread_and_contextvars_context():
    request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="none")
    threads: dict[str, int] = {}
    seen: list[str] = []

    def hook(task_, task_run, state):
        threads["hook"] = threading.get_ident()
        seen.append(request_id.get())

    @task(on_completion=[hook], on_running=[hook])
    def body():
        threads["body"] = threading.get_ident()

    @flow
    def f():
        request_id.set("r-1")
        body.submit().wait()

    f()
    assert threads["hook"] == threads["body"] != threading.get_ident()
    assert seen == ["r-1", "r-1"]


def test_a_hook_sees_its_run_as_the_current_one(task_lines):
    seen: list[tuple[str, int, dict]] = []

    def hook(task_, task_run, state):
        context = TaskRunContext.get()
        seen.append((context.task_run.name, context.task_run.run_count, context.parameters))
        get_run_logger().info("from the hook")

    @task(on_completion=[hook])
    def add(x, y=10):
        return x + y

    @flow
    def f():
        return add.submit(1).result()

    assert f() == 11
    assert seen == [("add-0", 1, {"x": 1, "y": 10})]
    assert ("INFO", "add-0", "from the hook") in task_lines()


# -- where runs execute ------------------------------------------------------------------------


def test_direct_calls_inside_and_outside_flows_call_hooks():
    seen = Recorder()

    @task(on_running=[seen.hook("go")], on_completion=[seen.hook("ok")])
    def inc(x):
        return x + 1

    @flow
    def f():
        return inc(1)

    assert f() == 2
    assert inc(5) == 6  # outside any flow: the run is named after the task
    assert seen.states == [("go", "Running"), ("ok", "Completed")] * 2
    assert [call[2].name for call in seen.calls] == ["inc-0", "inc-0", "inc", "inc"]
    assert seen.calls[0][2].flow_run_id is not None and seen.calls[-1][2].flow_run_id is None


def test_submit_outside_flows_calls_hooks_before_the_result():
    seen = Recorder()

    @task(on_completion=[seen.hook("ok")])
    def inc(x):
        return x + 1

    assert inc.submit(1).result() == 2 and seen.labels == ["ok"]


def test_async_tasks_call_hooks_on_their_loop(task_lines):
    seen = Recorder()

    @task(retries=1, on_running=[seen.hook("go")], on_completion=[seen.hook("ok")], on_failure=[seen.hook("lost")])
    async def fetch(x):
        await asyncio.sleep(0)
        if TaskRunContext.get().task_run.run_count == 1:
            raise OSError("first try")
        return x

    @task(on_failure=[seen.hook("lost")])
    async def broken():
        await asyncio.sleep(0)
        raise ValueError("never")

    @flow
    async def f():
        inline = await fetch(1)
        submitted = await fetch.submit(2)
        failing = broken.submit()
        with pytest.raises(ValueError, match="never"):
            await failing
        return inline, submitted, failing.state

    inline, submitted, state = asyncio.run(f())
    assert (inline, submitted) == (1, 2) and state.is_failed()
    assert seen.states == [
        ("go", "Running"),
        ("go", "Retrying"),
        ("ok", "Completed"),
        ("go", "Running"),
        ("go", "Retrying"),
        ("ok", "Completed"),
        ("lost", "Failed"),
    ]
    finished_lines = messages(task_lines(), "fetch-1")[-3:]
    assert finished_lines == [*ran("ok", "Completed"), ("INFO", "Finished in state Completed()")]


def test_async_hooks_run_to_completion_wherever_the_run_executes(task_lines):
    finished: list[tuple[str, str]] = []

    async def notify(task_, task_run, state):
        await asyncio.sleep(0.01)
        get_run_logger().info(f"notified for {TaskRunContext.get().task_run.name}")
        finished.append((task_run.name, state.name))

    @task(on_completion=[notify])
    def sync_task(x):
        return x

    @task(on_completion=[notify])
    async def async_task(x):
        await asyncio.sleep(0)
        return x

    @flow
    def sync_flow():
        sync_task(1)
        sync_task.submit(2).wait()
        async_task.submit(3).wait()

    @flow
    async def async_flow():
        sync_task(4)  # a sync task called on the flow's loop thread
        await async_task(5)

    sync_flow()
    asyncio.run(async_flow())
    in_sync_flow = [("sync_task-0", "Completed"), ("sync_task-1", "Completed"), ("async_task-0", "Completed")]
    in_async_flow = [("sync_task-0", "Completed"), ("async_task-0", "Completed")]
    assert sorted(finished) == sorted([*in_sync_flow, *in_async_flow])
    logged = [m for _, _, m in task_lines() if m.startswith("notified for")]
    assert sorted(logged) == sorted(f"notified for {name}" for name, _ in finished)


# -- which ends call which hooks -------------------------------------------------------------


def test_no_hooks_for_a_run_that_never_ran_or_crashed():
    seen = Recorder()
    every = {"on_running": [seen.hook("go")], "on_completion": [seen.hook("ok")], "on_failure": [seen.hook("lost")]}

    @task
    def upstream():
        raise ValueError("upstream broke")

    @task(**every)
    def downstream(x):  # pragma: no cover - never runs
        return x

    @task(**every)
    def exits():
        raise SystemExit(3)

    @flow
    def f():
        not_ready = downstream.submit(upstream.submit())
        crashed = exits.submit()
        not_ready.wait()
        crashed.wait()
        return not_ready.state.name, crashed.state.name

    assert f() == ("NotReady", "Crashed")
    assert seen.states == [("go", "Running")]  # the crashed run's attempt started; nothing after


def test_returned_states_decide_which_hooks_run():
    seen = Recorder()
    hooks = {"on_completion": [seen.hook("ok")], "on_failure": [seen.hook("lost")]}

    @task(**hooks)
    def skipped():
        return Completed(name="Skipped", message="nothing to do")

    @task(**hooks)
    def refused():
        return Failed(message="told so")

    @flow
    def f():
        return skipped.submit().wait(), refused.submit().wait()

    f()
    assert seen.states == [("ok", "Skipped"), ("lost", "Failed")]
    assert seen.calls[1][3].message == "told so"


def test_a_cache_hit_calls_completion_hooks_in_state_cached(tmp_path):
    from ferroflow.cache_policies import INPUTS

    seen = Recorder()

    @task(cache_policy=INPUTS, result_storage=str(tmp_path), on_completion=[seen.hook("ok")])
    def double(x):
        return 2 * x

    @flow
    def f():
        return double(4), double(4)

    assert f() == (8, 8)
    assert seen.states == [("ok", "Completed"), ("ok", "Cached")]
    assert seen.calls[1][3].result() == 8


def test_a_timed_out_run_calls_failure_hooks_in_state_timed_out():
    seen = Recorder()

    @task(timeout_seconds=0.2, on_failure=[seen.hook("lost")])
    def stuck():
        time.sleep(10)

    @flow
    def f():
        future = stuck.submit()
        future.wait()
        return future.state.name

    assert f() == "TimedOut"
    assert seen.states == [("lost", "TimedOut")]
    assert seen.calls[0][3].message == "Task run exceeded timeout of 0.2 second(s)"


def test_with_options_keeps_the_hooks():
    seen = Recorder()

    @task(on_completion=[seen.hook("ok")])
    def inc(x):
        return x + 1

    renamed = inc.with_options(name="increment")
    assert renamed(1) == 2
    assert seen.labels == ["ok"] and seen.calls[0][1] is renamed


# -- refused options -----------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["on_completion", "on_failure", "on_running"])
def test_hooks_must_be_an_iterable_of_callables(option):
    with pytest.raises(TypeError, match=rf"^Task 'inc': Expected iterable for '{option}'; got int instead\."):
        task(name="inc", **{option: 5})(lambda x: x)
    with pytest.raises(TypeError, match=rf"^Task 'inc': Expected callables in '{option}'; got str instead\."):
        task(name="inc", **{option: ["not a hook"]})(lambda x: x)


def test_a_registrar_refuses_what_is_not_callable():
    @task
    def inc(x):
        return x + 1

    with pytest.raises(TypeError, match=r"^Task 'inc': Expected callables in 'on_failure'; got int instead\."):
        inc.on_failure(42)
    assert inc.on_failure_hooks == []


def test_hooks_of_runs_a_runner_executes_elsewhere_see_their_run():
    # A runner that executes claimed runs itself (the runner seam: here, each in its own
    # `asyncio.run` on a thread of its own) need not say which run is current: the engine
    # does, for the hooks and the retry condition it calls.
    import ferroflow.task_runners as runners

    class Elsewhere(runners.ThreadPoolTaskRunner):
        def _execute(self, runs):
            def execute():
                for run in runs:
                    while True:
                        try:
                            value = asyncio.run(run.start())
                        except Exception as exc:
                            delay = run.fail(exc)
                        else:
                            delay = run.complete(value)
                        if delay is None:
                            break
                        run.retrying()

            threading.Thread(target=execute).start()

    seen: list[tuple[str, str, int]] = []

    def hook(task_, task_run, state):
        context = TaskRunContext.get()
        seen.append((state.name, context.task_run.name, context.task_run.run_count))

    def condition(task_, task_run, state):
        seen.append(("asked", TaskRunContext.get().task_run.name, task_run.run_count))
        return True

    attempts: list[int] = []

    @task(retries=1, on_running=[hook], on_completion=[hook], retry_condition_fn=condition)
    async def flaky():
        await asyncio.sleep(0)
        attempts.append(1)
        if len(attempts) == 1:
            raise OSError("first attempt")
        return "ok"

    @flow(task_runner=Elsewhere())
    def f():
        return flaky.submit().result()

    assert f() == "ok"
    assert seen == [
        ("Running", "flaky-0", 1),
        ("asked", "flaky-0", 1),
        ("Retrying", "flaky-0", 2),
        ("Completed", "flaky-0", 2),
    ]
