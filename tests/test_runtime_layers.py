"""The package's layers (issue 7, item 27) and the runner seam they give.

- `ferroflow`'s runtime modules import only from below them: no circle, no function-local
  import of a ferroflow module that closes one.
- A task runner configures the engine and says where claimed runs execute (`_execute`):
  coroutine runs reach it through the same seam a process pool or Dask runner will use.
- Runs that cannot be handed over end Crashed with the error (item 3): nothing stays
  Running, also on Python 3.10 where `create_task(..., context=)` does not exist.
- A future's done-callback runs in the flow run of that future (item 11).
"""

from __future__ import annotations

import ast
import asyncio
import threading
from pathlib import Path

import pytest

from ferroflow import flow, task
from ferroflow.context import FlowRunContext, call_done_callback
from ferroflow.task_runners import ThreadPoolTaskRunner

PACKAGE = Path(__file__).resolve().parent.parent / "python" / "ferroflow"

#: Bottom up: a module may import only modules listed before it (or outside this list).
LAYERS = [
    "context",
    # the errors of time limits, and result storage: they know runs, not how they execute
    "task_engine",
    "flow_engine",
    "serializers",
    "_result_store",
    "filesystems",
    "_cache_settings",
    "results",
    "cache_policies",
    "logging",
    # what acts around a run: state hooks, the engine's callbacks, time limits, the cache
    "_state_hooks",
    "_runtime",
    "_timeouts",
    "_task_cache",
    "_cache_options",
    "_task_body",
    "_progress",
    "_prints",
    "_bridge",
    "_loop",
    # runs executing in other processes: a worker's side (shared by the process pool's
    # children and cluster workers), the cluster runners' parent side, the process pool
    "_worker_runs",
    "_process_worker",
    "_remote",
    "_process_pool",
    "_task_runners",
    # the runners' public names (the cluster runners' too, loaded when asked for)
    "task_runners",
    # Prefect 2's executors: names for task runners (the Dask one among them)
    "executors",
    "_async",
    "tasks",
    "_flow_parameters",
    "_flow_engine",
    "flows",
    "__init__",
]


def ferroflow_imports(module: str) -> set[str]:
    """Every ferroflow module `module` imports, anywhere in it (also inside functions and
    under TYPE_CHECKING)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "ferroflow":
                found.update(alias.name for alias in node.names)
            elif node.module.startswith("ferroflow."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ferroflow."):
                    found.add(alias.name.split(".")[1])
    return found


@pytest.mark.parametrize("module", LAYERS)
def test_a_runtime_module_imports_nothing_above_it(module):
    above = set(LAYERS[LAYERS.index(module) + 1 :])
    assert not (ferroflow_imports(module) & above), f"ferroflow.{module} imports from above it"


def test_contexts_know_no_engine_loop_runner_or_flow():
    assert ferroflow_imports("context") <= {"_core", "exceptions"}
    assert not hasattr(FlowRunContext, "run_loop")


# -- the runner seam ---------------------------------------------------------------------


class ElsewhereRunner(ThreadPoolTaskRunner):
    """Executes the claimed runs it is handed on a thread of its own, each in a fresh
    `asyncio.run`, and reports their ends through the run objects: what a runner that
    executes elsewhere does, with nothing of the engine faked."""

    def __init__(self, max_workers=None):
        super().__init__(max_workers)
        self.batches: list[int] = []

    def _execute(self, runs):
        self.batches.append(len(runs))

        def execute():
            for run in runs:
                try:
                    value = asyncio.run(run.start())
                except Exception as exc:
                    delay = run.fail(exc)
                    assert delay is None
                else:
                    run.complete(value)

        threading.Thread(target=execute).start()


@task
async def suspending_double(x):
    await asyncio.sleep(0.01)
    return 2 * x


@task
async def suspending_failure():
    await asyncio.sleep(0)
    raise ValueError("elsewhere")


def test_a_runner_that_executes_elsewhere_receives_claimed_runs_in_batches(call_with_deadline):
    runner = ElsewhereRunner()

    @flow(task_runner=runner)
    def f():
        # The flow's runner is a duplicate: the runs reach it, not the template.
        used = FlowRunContext.get().task_runner
        values = suspending_double.map(range(5)).result()
        failed = suspending_failure.submit(return_state=True)
        return used, values, failed

    used, values, failed = call_with_deadline(f, 20)
    assert values == [0, 2, 4, 6, 8]
    assert failed.is_failed() and "elsewhere" in failed.message
    assert sum(used.batches) == 6
    assert runner.batches == []


def test_a_runner_used_outside_a_flow_gets_its_own_claimed_runs(call_with_deadline):
    def main():
        with ElsewhereRunner() as runner:
            return runner.submit(suspending_double, {"x": 21}).result(), runner.batches

    value, batches = call_with_deadline(main, 20)
    assert value == 42 and batches == [1]


class BrokenHandOver(ThreadPoolTaskRunner):
    def _execute(self, runs):
        raise RuntimeError("cannot reach the cluster")


def test_runs_that_cannot_be_handed_over_end_crashed_with_the_error(call_with_deadline):
    @flow(task_runner=BrokenHandOver())
    def f():
        return [suspending_double.submit(1, return_state=True)]

    [state] = call_with_deadline(f, 20)
    assert state.is_crashed(), state
    assert "cannot reach the cluster" in state.message


def test_a_coroutine_run_starts_without_create_task_context_as_on_3_10(monkeypatch, call_with_deadline):
    # Python 3.10 has no `create_task(..., context=)`: the TypeError used to be swallowed
    # in a loop callback and the flow hung with its run Running.
    real = asyncio.BaseEventLoop.create_task

    def create_task_of_3_10(self, coro, *, name=None, **unsupported):
        if unsupported:
            coro.close()
            raise TypeError(f"create_task() got an unexpected keyword argument {next(iter(unsupported))!r}")
        return real(self, coro, name=name)

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_task", create_task_of_3_10)

    @flow
    def f():
        return suspending_double.submit(4).result()

    assert call_with_deadline(f, 20) == 8


def test_an_error_while_starting_runs_on_the_loop_ends_them_crashed(monkeypatch, call_with_deadline):
    def refuse(self, coro, **kwargs):
        coro.close()
        raise RuntimeError("the loop refused")

    monkeypatch.setattr(asyncio.BaseEventLoop, "create_task", refuse)

    @flow
    def f():
        return suspending_double.map(range(3), return_state=True)

    states = call_with_deadline(f, 20)
    assert [state.is_crashed() for state in states] == [True, True, True], states
    assert all("the loop refused" in state.message for state in states)


# -- done-callbacks ----------------------------------------------------------------------


def test_a_done_callback_runs_in_the_flow_run_of_its_future():
    seen = []

    @flow
    def f():
        context = FlowRunContext.get()
        call_done_callback(None, lambda future: seen.append(FlowRunContext.get()), "future")
        return context

    context = f()
    call_done_callback(context, lambda future: seen.append((FlowRunContext.get(), future)), "future")
    assert seen == [None, (context, "future")]
    assert FlowRunContext.get() is None
