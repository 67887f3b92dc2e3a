"""Flow state hooks (issue 8, item 3), as a user sees them: `on_completion`,
`on_failure`, `on_crashed`, `on_cancellation`, `on_running` given as lists or registered
with `@my_flow.on_completion`; called as `hook(flow, flow_run, state)` in Prefect's
order, with Prefect's log lines before the flow's `Finished in state` line; a hook that
raises is logged and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from ferroflow import flow, get_run_logger, task
from ferroflow.context import FlowRun, FlowRunContext
from ferroflow.states import Completed, Failed


@pytest.fixture
def flow_lines(ferroflow_records):
    """The flow-run log lines, as `LEVEL run-name | message`; call it to read them so far."""

    def lines(level: int = logging.INFO) -> list[str]:
        return [
            f"{record.levelname} {getattr(record, 'flow_run_name', '-')} | {record.getMessage()}"
            for record in ferroflow_records("ferroflow.flow_runs")
            if record.levelno >= level
        ]

    return lines


def messages(lines: list[str]) -> list[str]:
    return [line.split(" | ", 1)[1] for line in lines]


class Recorder:
    """Hooks that record how they were called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, object, object, object]] = []

    def hook(self, label: str):
        def hook(flow_, flow_run, state):
            self.calls.append((label, flow_, flow_run, state))

        hook.__name__ = label
        return hook

    @property
    def labels(self) -> list[str]:
        return [call[0] for call in self.calls]


# -- completion, in order, before the last line ----------------------------------------


def test_completion_hooks_get_the_flow_its_run_and_the_state_in_order(flow_lines):
    seen = Recorder()

    @flow(flow_run_name="nightly", on_completion=[seen.hook("first"), seen.hook("second")])
    def etl(x):
        return x + 1

    assert etl(1) == 2
    assert seen.labels == ["first", "second"]
    _, flow_, flow_run, state = seen.calls[0]
    assert flow_ is etl
    assert isinstance(flow_run, FlowRun) and flow_run.name == "nightly" and flow_run.parameters == {"x": 1}
    assert state.is_completed() and state.name == "Completed" and state.result() == 2
    assert messages(flow_lines()) == [
        "Beginning flow run 'nightly' for flow 'etl'",
        "Running hook 'first' in response to entering state 'Completed'",
        "Hook 'first' finished running successfully",
        "Running hook 'second' in response to entering state 'Completed'",
        "Hook 'second' finished running successfully",
        "Finished in state Completed()",
    ]


def test_decorator_forms_append_the_hook_and_return_it():
    seen = Recorder()

    @flow
    def job():
        return "done"

    hook = seen.hook("registered")
    assert job.on_completion(hook) is hook
    assert job.on_failure(seen.hook("f")) is not None
    assert job.on_crashed(seen.hook("c")) is not None
    assert job.on_cancellation(seen.hook("x")) is not None
    assert job.on_running(seen.hook("r")) is not None

    @job.on_completion
    def also(flow_, flow_run, state):
        seen.calls.append(("also", flow_, flow_run, state))

    assert job.on_completion_hooks == [hook, also]
    assert [h.__name__ for h in job.on_failure_hooks] == ["f"]
    assert [h.__name__ for h in job.on_crashed_hooks] == ["c"]
    assert [h.__name__ for h in job.on_cancellation_hooks] == ["x"]
    assert job() == "done"
    assert seen.labels == ["r", "registered", "also"]


def test_running_hooks_fire_when_the_run_starts_before_the_function():
    order: list[str] = []

    @flow(on_running=[lambda f, r, s: order.append(f"hook {s.name} {r.run_count}")])
    def job():
        order.append("function")

    job()
    assert order == ["hook Running 1", "function"]


def test_hooks_run_in_the_flow_run_context_and_may_log_and_print(flow_lines):
    seen: list[object] = []

    def report(flow_, flow_run, state):
        context = FlowRunContext.get()
        seen.append(context.flow_run is flow_run)
        get_run_logger().info("hook says hello")
        print("printed by the hook")

    @flow(on_completion=[report], log_prints=True)
    def job():
        return 1

    job()
    assert seen == [True]
    lines = messages(flow_lines())
    assert lines.index("hook says hello") < lines.index("Finished in state Completed()")
    assert "printed by the hook" in lines


def test_a_hook_may_start_task_runs_and_the_flow_waits_for_them():
    done: list[int] = []

    @task
    def notify(x):
        done.append(x)

    @flow(on_completion=[lambda f, r, s: notify.submit(s.result())])
    def job():
        return 7

    assert job() == 7
    assert done == [7]


# -- failure, retries ---------------------------------------------------------------------


def test_failure_hooks_run_once_after_the_retries_and_running_hooks_on_each_attempt(flow_lines):
    seen = Recorder()
    running: list[int] = []

    @flow(
        retries=2,
        on_failure=[seen.hook("alert")],
        on_completion=[seen.hook("never")],
        on_running=[lambda f, r, s: running.append(r.run_count)],
    )
    def flaky():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        flaky()
    assert running == [1, 2, 3]
    assert seen.labels == ["alert"]
    state = seen.calls[0][3]
    assert state.is_failed() and state.message == "Flow run encountered an exception: ValueError: boom"
    lines = messages(flow_lines())
    assert lines[-3:] == [
        "Running hook 'alert' in response to entering state 'Failed'",
        "Hook 'alert' finished running successfully",
        "Finished in state Failed('Flow run encountered an exception: ValueError: boom')",
    ]
    assert lines.count("Running hook '<lambda>' in response to entering state 'Running'") == 3


def test_a_flow_that_completes_on_a_retry_runs_completion_hooks_only():
    seen = Recorder()
    attempts: list[int] = []

    @flow(retries=1, on_failure=[seen.hook("failure")], on_completion=[seen.hook("completion")])
    def second_time_lucky():
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first")
        return "ok"

    assert second_time_lucky() == "ok"
    assert seen.labels == ["completion"]


def test_a_returned_failed_state_runs_failure_hooks():
    seen = Recorder()

    @flow(on_failure=[seen.hook("failure")], on_completion=[seen.hook("completion")])
    def job():
        return Failed(message="nothing to do")

    state = job(return_state=True)
    assert state.is_failed()
    assert seen.labels == ["failure"]
    assert seen.calls[0][3].message == "nothing to do"


def test_a_returned_completed_state_with_another_name_runs_completion_hooks(flow_lines):
    seen = Recorder()

    @flow(on_completion=[seen.hook("completion")])
    def job():
        return Completed(name="Skipped")

    job()
    assert seen.labels == ["completion"]
    assert "Running hook 'completion' in response to entering state 'Skipped'" in messages(flow_lines())


# -- a hook that raises -------------------------------------------------------------------


def test_a_hook_that_raises_is_logged_with_its_traceback_and_changes_nothing(flow_lines, caplog):
    seen = Recorder()

    def broken(flow_, flow_run, state):
        raise RuntimeError("hook bug")

    @flow(on_completion=[broken, seen.hook("after")])
    def job():
        return 5

    assert job() == 5
    state = job(return_state=True)
    assert state.is_completed() and state.result() == 5
    assert seen.labels == ["after", "after"]
    errors = [r for r in caplog.records if r.getMessage() == "An error was encountered while running hook 'broken'"]
    assert len(errors) == 2 and errors[0].levelname == "ERROR"
    assert errors[0].exc_info is not None and "hook bug" in str(errors[0].exc_info[1])
    lines = messages(flow_lines())
    assert "Hook 'broken' finished running successfully" not in lines
    assert lines.index("An error was encountered while running hook 'broken'") < lines.index(
        "Finished in state Completed()"
    )


def test_a_failure_hook_that_raises_leaves_the_flow_s_own_exception():
    def broken(flow_, flow_run, state):
        raise KeyError("in the hook")

    @flow(on_failure=[broken])
    def job():
        raise ValueError("the flow's")

    with pytest.raises(ValueError, match="the flow's"):
        job()


# -- crashes and cancellation -------------------------------------------------------------


class Aborted(BaseException):
    """Something outside user code stopping the run (as a signal would)."""


def test_a_base_exception_crashes_the_run_and_runs_crashed_hooks(flow_lines):
    seen = Recorder()

    @flow(on_crashed=[seen.hook("crashed")], on_failure=[seen.hook("failure")], on_cancellation=[seen.hook("cancel")])
    def job():
        raise Aborted("stop")

    with pytest.raises(Aborted):
        job()
    assert seen.labels == ["crashed"]
    state = seen.calls[0][3]
    assert state.is_crashed()
    assert messages(flow_lines())[-4:] == [
        "Crash detected! Execution was interrupted by an unexpected exception: Aborted: stop",
        "Running hook 'crashed' in response to entering state 'Crashed'",
        "Hook 'crashed' finished running successfully",
        "Finished in state Crashed('Execution was interrupted by an unexpected exception: Aborted: stop')",
    ]


def test_ctrl_c_crashes_the_run_it_is_not_a_cancellation():
    # As in Prefect run in-process: an interrupt is a crash; a flow run is Cancelled only
    # when Prefect's runner cancels it, which has no in-process equivalent.
    seen = Recorder()

    @flow(on_crashed=[seen.hook("crashed")], on_cancellation=[seen.hook("cancel")])
    def job():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        job()
    assert seen.labels == ["crashed"]
    assert seen.calls[0][3].message == "Execution was aborted by an interrupt signal."


def test_an_async_flow_cancelled_by_its_caller_crashes_and_runs_crashed_hooks():
    seen = Recorder()
    started = threading.Event()

    @flow(on_crashed=[seen.hook("crashed")])
    async def waits_forever():
        started.set()
        await asyncio.sleep(60)

    async def main():
        run = asyncio.ensure_future(waits_forever())
        while not started.is_set():
            await asyncio.sleep(0.01)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run

    asyncio.run(main())
    assert seen.labels == ["crashed"]
    assert seen.calls[0][3].message == "Execution was cancelled by the runtime environment."


# -- async hooks and async flows -----------------------------------------------------------


def test_an_async_hook_of_a_sync_flow_runs_to_completion():
    seen: list[str] = []

    async def notify(flow_, flow_run, state):
        await asyncio.sleep(0.01)
        seen.append(state.name)

    @flow(on_completion=[notify], on_running=[notify])
    def job():
        return 1

    job()
    assert seen == ["Running", "Completed"]


def test_an_async_hook_of_a_sync_flow_called_inside_a_running_loop_runs_to_completion():
    seen: list[str] = []

    async def notify(flow_, flow_run, state):
        await asyncio.sleep(0.01)
        seen.append(state.name)

    @flow(on_completion=[notify])
    def job():
        return 1

    async def main():
        return job()  # blocks the loop, as a sync call does

    assert asyncio.run(main()) == 1
    assert seen == ["Completed"]


def test_async_hooks_of_an_async_flow_are_awaited_on_the_flow_s_loop(flow_lines):
    loops: list[object] = []

    async def on_done(flow_, flow_run, state):
        await asyncio.sleep(0)
        loops.append(asyncio.get_running_loop())

    def sync_hook(flow_, flow_run, state):
        loops.append(asyncio.get_running_loop())

    @flow(on_completion=[on_done, sync_hook], on_running=[on_done])
    async def job():
        loops.append(asyncio.get_running_loop())
        return "async"

    async def main():
        value = await job()
        return value, asyncio.get_running_loop()

    value, loop = asyncio.run(main())
    assert value == "async"
    assert loops == [loop, loop, loop, loop]
    assert messages(flow_lines())[-1] == "Finished in state Completed()"


def test_async_flow_failure_hooks_and_a_raising_async_hook():
    seen = Recorder()

    async def broken(flow_, flow_run, state):
        raise RuntimeError("async hook bug")

    @flow(on_failure=[broken, seen.hook("after")])
    async def job():
        raise ValueError("async flow failed")

    with pytest.raises(ValueError, match="async flow failed"):
        asyncio.run(job())
    assert seen.labels == ["after"]


def test_several_async_subflows_gathered_each_run_their_own_hooks():
    finished: list[str] = []

    async def record(flow_, flow_run, state):
        await asyncio.sleep(0.01)
        finished.append(flow_run.parameters["name"])

    @flow(on_completion=[record])
    async def child(name):
        await asyncio.sleep(0.01)
        return name

    @flow
    async def parent():
        return await asyncio.gather(child("a"), child("b"), child("c"))

    assert asyncio.run(parent()) == ["a", "b", "c"]
    assert sorted(finished) == ["a", "b", "c"]


# -- subflows -------------------------------------------------------------------------------


def test_subflows_fire_their_own_hooks_with_their_own_run(flow_lines):
    seen = Recorder()

    @flow(flow_run_name="inner-run", on_completion=[seen.hook("child_done")], on_running=[seen.hook("child_run")])
    def child(x):
        return x * 2

    @flow(flow_run_name="outer-run", on_completion=[seen.hook("parent_done")])
    def parent():
        return child(3)

    assert parent() == 6
    assert seen.labels == ["child_run", "child_done", "parent_done"]
    assert seen.calls[1][1] is child and seen.calls[1][2].name == "inner-run"
    assert seen.calls[2][1] is parent and seen.calls[2][2].name == "outer-run"
    lines = flow_lines()
    assert "INFO inner-run | Running hook 'child_done' in response to entering state 'Completed'" in lines
    assert "INFO outer-run | Running hook 'parent_done' in response to entering state 'Completed'" in lines


def test_a_failing_subflow_fires_its_failure_hooks_and_the_parent_its_own():
    seen = Recorder()

    @flow(on_failure=[seen.hook("child_failed")])
    def child():
        raise ValueError("child")

    @flow(on_failure=[seen.hook("parent_failed")])
    def parent():
        return child()

    with pytest.raises(ValueError, match="child"):
        parent()
    assert seen.labels == ["child_failed", "parent_failed"]


# -- with_options and checks ----------------------------------------------------------------


def test_with_options_carries_the_hooks_by_prefect_s_rules():
    seen = Recorder()
    first, second = seen.hook("first"), seen.hook("second")

    @flow(on_completion=[first], on_failure=[first], on_running=[first], on_crashed=[first], on_cancellation=[first])
    def job():
        return 1

    copy = job.with_options(name="copy")
    for option in ("on_completion", "on_failure", "on_running", "on_crashed", "on_cancellation"):
        assert getattr(copy, f"{option}_hooks") == [first]
    assert job.with_options(on_completion=[]).on_completion_hooks == [first]  # empty keeps, as Prefect
    replaced = job.with_options(on_completion=[second])
    assert replaced.on_completion_hooks == [second] and replaced.on_failure_hooks == [first]
    replaced()
    assert seen.labels == ["first", "second"]  # on_running, then the new completion hook
    replaced.on_completion(first)
    assert job.on_completion_hooks == [first]  # a copy's list is its own


@pytest.mark.parametrize(
    ("hooks", "words"),
    [
        (3, "Flow 'job': Expected iterable for 'on_failure'; got int instead"),
        (["not callable"], "Flow 'job': Expected callables in 'on_failure'; got str instead"),
        ("name", "Flow 'job': Expected callables in 'on_failure'; got str instead"),
    ],
)
def test_hooks_that_are_not_a_list_of_callables_are_refused_naming_the_flow(hooks, words):
    def job():
        pass

    with pytest.raises(TypeError) as raised:
        flow(on_failure=hooks)(job)
    assert str(raised.value).startswith(words)
    assert "@flow(on_failure=[hook1, hook2])" in str(raised.value)


def test_hook_names_in_log_lines_for_partials_and_callable_objects(flow_lines):
    import functools

    class Notifier:
        def __call__(self, flow_, flow_run, state):
            pass

    def notify(channel, flow_, flow_run, state):
        pass

    @flow(on_completion=[functools.partial(notify, "#ops"), Notifier()])
    def job():
        return 1

    job()
    lines = messages(flow_lines())
    assert "Hook 'notify' finished running successfully" in lines
    assert "Hook 'Notifier' finished running successfully" in lines
