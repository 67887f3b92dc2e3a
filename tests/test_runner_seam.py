"""The seam for runners that execute every run elsewhere (`_executes_elsewhere`): the
engine hands them all submitted and mapped runs, sync ones too, in batches, and keeps
scheduling (dependencies, NotReady, retries, hooks, log lines) itself. A tiny runner
that executes the runs on a thread of its own stands for a process pool here."""

import queue
import threading

import pytest

from ferroflow import flow, task
from ferroflow.context import FlowRunContext
from ferroflow.futures import wait
from ferroflow.task_runners import ThreadPoolTaskRunner


class OwnThreadRunner(ThreadPoolTaskRunner):
    """Executes every claimed run on one thread of its own, as a process pool's reader
    would report them: `prepare()` gives the call, then `complete`/`fail`; a retry
    delay is waited out by a timer, never by the executing thread."""

    _executes_elsewhere = True

    def __init__(self, max_workers=1):
        super().__init__(max_workers)
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def _start(self, context):
        self._inbox = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name="own-runner", daemon=True)
        self._thread.start()
        return super()._start(context)

    def _stop(self):
        try:
            super()._stop()
        finally:
            self._inbox.put(None)
            self._thread.join()

    def _execute(self, runs):
        self.batches.append(len(runs))
        for run in runs:
            self._inbox.put(run)

    def _serve(self):
        while (run := self._inbox.get()) is not None:
            try:
                function, args, kwargs = run.prepare()
                self.threads.add(threading.current_thread().name)
                value = function(*args, **(kwargs or {}))
            except Exception as exc:
                delay = run.fail(exc)
            else:
                delay = run.complete(value)
            if delay is not None:
                timer = threading.Timer(delay, self._retry, (run,))
                timer.daemon = True
                timer.start()

    def _retry(self, run):
        run.retrying()
        self._inbox.put(run)


@task
def double(x):
    return 2 * x


@task
def boom():
    raise ValueError("boom here")


def runner_of_flow():
    return FlowRunContext.get().task_runner


def test_every_submitted_and_mapped_run_reaches_the_runner_in_batches(call_with_deadline):
    @flow(task_runner=OwnThreadRunner())
    def f():
        values = double.map(range(2000)).result()
        one = double.submit(21).result()
        return runner_of_flow(), values, one

    runner, values, one = call_with_deadline(f, 30)
    assert values == [2 * x for x in range(2000)] and one == 42
    assert sum(runner.batches) == 2001
    assert len(runner.batches) < 200, "a map's runs travel in batches, not one call per run"
    assert runner.threads == {"own-runner"}


def test_a_direct_call_runs_in_its_caller_not_in_the_runner(call_with_deadline):
    @task
    def where():
        return threading.current_thread().name

    @flow(task_runner=OwnThreadRunner())
    def f():
        return threading.current_thread().name, where(), where.submit().result(), runner_of_flow()

    flow_thread, direct, submitted, runner = call_with_deadline(f, 30)
    assert direct == flow_thread
    assert submitted == "own-runner"
    assert sum(runner.batches) == 1


def test_dependencies_not_ready_failures_and_wait_for_stay_the_engines(call_with_deadline):
    @flow(task_runner=OwnThreadRunner())
    def f():
        failed = boom.submit()
        downstream = double.submit(failed)
        after = double.submit(1, wait_for=[failed])
        chained = double.submit(double.submit(double.submit(1)))
        wait([failed, downstream, after, chained])
        return failed.state, downstream.state, after.state, chained.result(), runner_of_flow()

    failed, downstream, after, chained, runner = call_with_deadline(f, 30)
    assert failed.is_failed() and "boom here" in failed.message
    assert downstream.name == "NotReady" and after.name == "NotReady"
    assert chained == 8
    assert sum(runner.batches) == 4, "runs that are NotReady never reach the runner"


def test_retries_with_delays_and_hooks_run_in_the_parent(call_with_deadline, caplog):
    attempts = []
    hooked = []

    @task(retries=2, retry_delay_seconds=0.2, on_completion=[lambda t, r, s: hooked.append(s.name)])
    def flaky():
        attempts.append(threading.current_thread().name)
        if len(attempts) < 3:
            raise RuntimeError("not yet")
        return "done"

    @flow(task_runner=OwnThreadRunner())
    def f():
        return flaky.submit().result()

    assert call_with_deadline(f, 30) == "done"
    assert attempts == ["own-runner"] * 3
    assert hooked == ["Completed"]
    messages = [record.getMessage() for record in caplog.records]
    assert sum("Retry 1/2 will start 0.2 second(s) from now" in m for m in messages) == 1, messages
    assert any("Finished in state Completed()" in m for m in messages)


@pytest.mark.parametrize("runner", [ThreadPoolTaskRunner(), ThreadPoolTaskRunner(max_workers=1)])
def test_runners_that_do_not_execute_elsewhere_never_hand_over_sync_runs(runner, call_with_deadline):
    handed = []

    class Watching(type(runner)):
        def _execute(self, runs):
            handed.extend(runs)
            super()._execute(runs)

    @flow(task_runner=Watching(runner._max_workers))
    def f():
        return double.map(range(100)).result()

    assert call_with_deadline(f, 30) == [2 * x for x in range(100)]
    assert handed == []
