"""ProcessPoolTaskRunner as a user sees it: Prefect 3's configuration, runs executing in
warm worker processes while the engine keeps scheduling in the parent, the behaviour of
futures, waits, maps and states as on the thread pool (the scenarios run on both),
failure containment (dying workers, unpicklable things), and a clean exit."""

from __future__ import annotations

import copy
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time

import psutil
import pytest

from cluster_tasks import async_double, boom, nap
from ferroflow import allow_failure, flow, task, unmapped
from ferroflow.context import FlowRunContext
from ferroflow.exceptions import MissingResult
from ferroflow.futures import as_completed, wait
from ferroflow.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner

# -- tasks (module level: they cross to the workers cloudpickled) ---------------------------


@task
def double(x):
    return 2 * x


@task
def add(x, y):
    return x + y


@task
def where(x=None):
    return os.getpid()


@task
def die(how):
    if how == "exit":
        os._exit(7)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "segfault":
        import ctypes

        ctypes.string_at(0)
    return how


RUNNERS = {
    "threads": lambda: ThreadPoolTaskRunner(max_workers=4),
    "processes": lambda: ProcessPoolTaskRunner(max_workers=2),
}


@pytest.fixture(params=sorted(RUNNERS))
def runner(request):
    return RUNNERS[request.param]()


def run(flow_fn, call_with_deadline, seconds=60):
    return call_with_deadline(flow_fn, seconds)


# -- configuration ---------------------------------------------------------------------


def test_defaults_as_prefect(monkeypatch):
    for variable in ("FERROFLOW_PROCESS_POOL_MAX_WORKERS", "PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("FERROFLOW_PROCESS_POOL_START_METHOD", raising=False)
    runner = ProcessPoolTaskRunner()
    cpus = os.process_cpu_count() if hasattr(os, "process_cpu_count") else len(os.sched_getaffinity(0))
    assert runner.max_workers == cpus
    assert runner.start_method == "spawn"
    assert runner.initializer is None and runner.initargs == ()
    assert repr(runner) == "ProcessPoolTaskRunner(max_workers=None)"


@pytest.mark.parametrize(
    "variable", ["FERROFLOW_PROCESS_POOL_MAX_WORKERS", "PREFECT_TASKS_RUNNER_PROCESS_POOL_MAX_WORKERS"]
)
def test_the_worker_count_setting(monkeypatch, variable):
    monkeypatch.setenv(variable, "3")
    assert ProcessPoolTaskRunner().max_workers == 3
    assert ProcessPoolTaskRunner(max_workers=5).max_workers == 5
    monkeypatch.setenv(variable, "none")
    with pytest.raises(ValueError, match=f"{variable}='none'.*process pool's max_workers"):
        ProcessPoolTaskRunner().max_workers  # noqa: B018


def test_invalid_configuration_is_refused_with_the_option_named():
    with pytest.raises(ValueError, match="ProcessPoolTaskRunner: max_workers must be at least 1"):
        ProcessPoolTaskRunner(max_workers=0)
    with pytest.raises(TypeError, match="ProcessPoolTaskRunner: max_workers must be an int"):
        ProcessPoolTaskRunner(max_workers=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ProcessPoolTaskRunner: start_method must be one of"):
        ProcessPoolTaskRunner(start_method="teleport")
    with pytest.raises(TypeError, match="initializer must be callable"):
        ProcessPoolTaskRunner(initializer=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="subprocess_message_processor_factories"):
        ProcessPoolTaskRunner(subprocess_message_processor_factories=[object])


def test_the_start_method_is_selectable(monkeypatch):
    assert ProcessPoolTaskRunner(start_method="forkserver").start_method == "forkserver"
    monkeypatch.setenv("FERROFLOW_PROCESS_POOL_START_METHOD", "fork")
    assert ProcessPoolTaskRunner().start_method == "fork"


def test_duplicate_equality_and_pickling_as_the_thread_pool(call_with_deadline):
    runner = ProcessPoolTaskRunner(max_workers=2, initializer=print, initargs=("hi",))
    assert runner.duplicate() == runner and runner.duplicate() is not runner
    assert runner != ProcessPoolTaskRunner(max_workers=3, initializer=print, initargs=("hi",))
    assert runner != ThreadPoolTaskRunner(max_workers=2)
    assert hash(runner) == hash(runner.duplicate())
    plain = ProcessPoolTaskRunner(max_workers=2)

    def main():
        with plain.duplicate() as started:
            for again in (pickle.loads(pickle.dumps(started)), copy.copy(started), copy.deepcopy(plain)):
                assert again == plain and type(again) is ProcessPoolTaskRunner
                assert not again._started
                with again:
                    assert again.submit(double, {"x": 4}).result() == 8
        return True

    assert call_with_deadline(main, 60)


def test_used_directly_as_a_context_manager(call_with_deadline):
    def main():
        with ProcessPoolTaskRunner(max_workers=2) as runner:
            futures = runner.map(double, {"x": range(10)})
            one = runner.submit(where, {})
            return futures.result(), one.result()

    values, pid = call_with_deadline(main, 60)
    assert values == [2 * x for x in range(10)]
    assert pid != os.getpid()


def test_a_flows_runs_execute_in_worker_processes_and_direct_calls_in_the_flows(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return where(), set(where.map(range(20)).result()), FlowRunContext.get().task_runner

    direct, workers, runner = call_with_deadline(f, 60)
    assert direct == os.getpid()
    assert os.getpid() not in workers and 1 <= len(workers) <= 2
    assert isinstance(runner, ProcessPoolTaskRunner)


def test_subflows_with_their_own_process_pool_and_on_a_parents(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def child(n):
        return double.map(range(n)).result()

    @flow
    def child_on_threads(n):
        return double.map(range(n)).result()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def parent():
        return child(3), child_on_threads(2), double.submit(5).result()

    assert call_with_deadline(parent, 60) == ([0, 2, 4], [0, 2], 10)


def test_warm_workers_serve_the_next_flow_run_of_an_equal_runner(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return set(where.map(range(40)).result())

    call_with_deadline(f, 60)
    # Its workers (both started for the map, whether or not each got a run before it ended).
    warm = {child.pid for child in psutil.Process().children()}
    started = time.perf_counter()
    second = call_with_deadline(f, 60)
    assert second <= warm, "the second flow run uses the first one's workers"
    assert time.perf_counter() - started < 5


def test_initializer_runs_in_each_worker(call_with_deadline, tmp_path):
    @task
    def read_marker(x):
        return os.environ.get("FERROFLOW_TEST_MARKER")

    def mark(value):
        os.environ["FERROFLOW_TEST_MARKER"] = value

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2, initializer=mark, initargs=("set",)))
    def f():
        return set(read_marker.map(range(6)).result())

    assert call_with_deadline(f, 60) == {"set"}


def test_a_failing_initializer_crashes_the_runs_with_its_error(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1, initializer=int, initargs=("x",)))
    def f():
        return [double.submit(1, return_state=True)]

    [state] = call_with_deadline(f, 60)
    assert state.is_crashed(), state
    assert "initializer failed" in state.message and "invalid literal for int()" in state.message


# -- behaviour as on the thread pool ---------------------------------------------------------


def test_futures_results_and_states(runner, call_with_deadline):
    @flow(task_runner=runner)
    def f():
        a = double.submit(1)
        b = add.submit(a, double.submit(2))
        mapped = add.map(range(5), unmapped(10))
        return a.result(), b.result(), mapped.result(), b.state.name, mapped[2].state.is_completed()

    assert run(f, call_with_deadline) == (2, 6, [10, 11, 12, 13, 14], "Completed", True)


def test_wait_and_as_completed(runner, call_with_deadline):
    @flow(task_runner=runner)
    def f():
        slow = nap.submit(2.0, "slow")  # long enough for a second worker to start meanwhile
        fast = nap.submit(0.0, "fast")
        done_first = [future.result() for future in as_completed([slow, fast])]
        partial = wait([nap.submit(1, "late")], timeout=0.1)
        return done_first, len(partial.done), len(partial.not_done)

    done_first, done, not_done = run(f, call_with_deadline)
    assert done_first == ["fast", "slow"]
    assert (done, not_done) == (0, 1)


def test_failures_not_ready_allow_failure_and_wait_for(runner, call_with_deadline):
    @flow(task_runner=runner)
    def f():
        failed = boom.submit("kaput")
        downstream = double.submit(failed)
        waited = double.submit(1, wait_for=[failed])
        allowed = add.submit(1, 2, wait_for=[allow_failure(failed)])
        wait([downstream, waited, allowed])
        return failed.state, downstream.state, waited.state, allowed.result()

    failed, downstream, waited, allowed = run(f, call_with_deadline)
    assert failed.is_failed() and "kaput" in failed.message
    assert downstream.name == waited.name == "NotReady"
    assert allowed == 3


def test_return_state_and_the_flows_final_state(runner, call_with_deadline):
    @flow(task_runner=runner)
    def f():
        state = boom.submit("final", return_state=True)
        double.submit(1).wait()
        return [state]

    @flow(task_runner=runner)
    def failing():
        return boom.submit("in flow")

    [state] = run(f, call_with_deadline)
    assert state.is_failed() and "final" in state.message
    flow_state = run(lambda: failing(return_state=True), call_with_deadline)
    assert flow_state.is_failed()
    with pytest.raises(ValueError, match="in flow"):
        flow_state.result()


def test_a_tasks_exception_reaches_result_with_type_message_and_traceback(runner, call_with_deadline):
    @flow(task_runner=runner)
    def f():
        return boom.submit("precise").result()

    with pytest.raises(ValueError, match="precise") as raised:
        run(f, call_with_deadline)
    if isinstance(runner, ProcessPoolTaskRunner):
        notes = "\n".join(getattr(raised.value, "__notes__", []))
        assert "Raised in a worker process" in notes and "in boom" in notes and "ValueError: precise" in notes


def test_retries_with_delays(runner, call_with_deadline, tmp_path):
    counter = tmp_path / "attempts"

    @task(retries=2, retry_delay_seconds=0.3)
    def flaky(path):
        with open(path, "a") as file:
            file.write("x")
        with open(path) as file:
            if len(file.read()) < 3:
                raise RuntimeError("not yet")
        return "done"

    @flow(task_runner=runner)
    def f():
        return flaky.submit(str(counter)).result()

    started = time.perf_counter()
    assert run(f, call_with_deadline) == "done"
    assert counter.read_text() == "xxx"
    assert time.perf_counter() - started >= 0.6


def test_hooks_and_log_lines_run_in_the_parent(runner, call_with_deadline, caplog):
    seen = []

    @task(on_completion=[lambda t, r, s: seen.append((os.getpid(), s.name))], task_run_name="hooked-{x}")
    def hooked(x):
        return x

    @flow(task_runner=runner)
    def f():
        return hooked.submit(3).result()

    assert run(f, call_with_deadline) == 3
    assert seen == [(os.getpid(), "Completed")]
    finished = [r for r in caplog.records if r.getMessage() == "Finished in state Completed()"]
    assert any(getattr(r, "task_run_name", None) == "hooked-3" for r in finished) or finished


def test_async_tasks_run_on_an_event_loop_in_the_worker(runner, call_with_deadline):
    @flow(task_runner=runner)
    def f():
        return async_double.map(range(4)).result()

    assert run(f, call_with_deadline) == [0, 2, 4, 6]


# -- failure containment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "reason"), [("exit", "exit code 7"), ("kill", "killed by SIGKILL"), ("segfault", "killed by SIGSEGV")]
)
def test_a_dying_worker_crashes_its_run_only_and_is_replaced(how, reason, call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        dead = die.submit(how, return_state=True)
        others = double.map(range(50))
        return dead, others.result(), die.submit("alive").result()

    dead, others, after = call_with_deadline(f, 60)
    assert dead.is_crashed(), dead
    assert reason in dead.message and "its worker process died" in dead.message
    assert others == [2 * x for x in range(50)]
    assert after == "alive"


def test_unpicklable_argument_fails_that_run_naming_it(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        bad = double.submit(threading.Lock(), return_state=True)
        return bad, double.submit(2).result()

    bad, good = call_with_deadline(f, 60)
    assert bad.is_failed(), bad
    assert "double-" in bad.message and "argument at position 0" in bad.message and "pickle" in bad.message
    assert good == 4


@task
def returns_a_lock():
    return threading.Lock()


def test_unpicklable_result_fails_that_run_naming_the_return_value(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return returns_a_lock.submit(return_state=True), double.submit(3).result()

    bad, good = call_with_deadline(f, 60)
    assert bad.is_failed(), bad
    assert "returns_a_lock" in bad.message and "return value could not be pickled" in bad.message
    assert good == 6


def test_unpicklable_function_fails_its_runs_naming_the_task(call_with_deadline):
    lock = threading.Lock()

    @task
    def holds_a_lock():
        return lock.locked()

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return holds_a_lock.submit(return_state=True), double.submit(5).result()

    bad, good = call_with_deadline(f, 60)
    assert bad.is_failed(), bad
    assert "Task 'holds_a_lock'" in bad.message and "function could not be pickled" in bad.message
    assert good == 10
    with pytest.raises(pickle.PicklingError):
        bad.result()


def test_a_runs_unpicklable_exception_still_reaches_result_as_text(call_with_deadline):
    @task
    def raises_unpicklable():
        class Local(Exception):
            pass

        raise Local("local trouble")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def f():
        return [raises_unpicklable.submit(return_state=True)]

    [state] = call_with_deadline(f, 60)
    assert state.is_failed() and "local trouble" in state.message
    assert not isinstance(state.result(raise_on_failure=False), MissingResult)


# -- exit and Ctrl-C ---------------------------------------------------------------------------


def run_file(tmp_path, code, *, timeout=60, interrupt_when=None):
    """Runs `code` as a script; with `interrupt_when` (a path), presses Ctrl-C once that
    file exists, and returns the monotonic time of the press too."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    env = {**os.environ, "FERROFLOW_LOGGING_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    pressed = None
    if interrupt_when is not None:
        deadline = time.monotonic() + timeout
        while not interrupt_when.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.02)
        pressed = time.monotonic()
        process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=timeout)
    return process.returncode, stdout, stderr, pressed


def test_no_worker_outlives_the_parent(tmp_path):
    code, stdout, stderr, _ = run_file(
        tmp_path,
        """
        import os
        from ferroflow import flow, task
        from ferroflow.task_runners import ProcessPoolTaskRunner

        @task
        def pid(x):
            return os.getpid()

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def f():
            return sorted(set(pid.map(range(20)).result()))

        if __name__ == "__main__":
            print(*f())
        """,
    )
    assert code == 0, stderr
    workers = [int(pid) for pid in stdout.split()]
    assert workers
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in workers if os.path.exists(f"/proc/{pid}")]


def test_a_script_without_the_main_guard_is_told_to_add_it(tmp_path):
    code, _, stderr, _ = run_file(
        tmp_path,
        """
        from ferroflow import flow, task
        from ferroflow.task_runners import ProcessPoolTaskRunner

        @task
        def double(x):
            return 2 * x

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
        def f():
            return double.submit(1).result()

        print(f())
        """,
        timeout=60,
    )
    assert code != 0
    assert 'if __name__ == "__main__":' in stderr


def test_ctrl_c_ends_the_flow_within_a_second_cancels_unstarted_runs_and_terminates_workers(tmp_path):
    started = tmp_path / "started"
    code, stdout, stderr, pressed = run_file(
        tmp_path,
        f"""
        import os, time
        from ferroflow import flow, task
        from ferroflow.task_runners import ProcessPoolTaskRunner

        @task
        def slow(x):
            open({str(started)!r}, "a").close()
            time.sleep(30)
            return x

        @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
        def f():
            return slow.map(range(10)).result()

        if __name__ == "__main__":
            import multiprocessing
            try:
                f()
            finally:
                print("ended", time.monotonic(), "children", len(multiprocessing.active_children()), flush=True)
        """,
        interrupt_when=started,
        timeout=30,
    )
    assert code != 0
    _, ended, _, children = stdout.split()
    assert children == "0", (stdout, stderr)
    assert float(ended) - pressed < 1.0, "the flow ends within 1 s of Ctrl-C"
    # Two workers: the run that started, and maybe one more, end Crashed; the rest never started.
    assert stderr.count("Finished in state Cancelled") in (8, 9), stderr
    assert "Finished in state Crashed('Execution was aborted by an interrupt signal.')" in stderr, stderr


# -- run context and logs in the workers ---------------------------------------------------


@task(task_run_name="speaker-{word}")
def speaker(word):
    from ferroflow import get_run_logger

    get_run_logger().warning("said %s", word)
    return os.getpid()


def test_run_logs_from_workers_reach_the_parents_handlers_with_run_names(call_with_deadline, caplog):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return speaker.map(["one", "two", "three"]).result()

    pids = call_with_deadline(f, 60)
    assert os.getpid() not in pids
    said = [r for r in caplog.records if r.getMessage().startswith("said ")]
    assert sorted((r.task_run_name, r.getMessage()) for r in said) == [
        ("speaker-one", "said one"),
        ("speaker-three", "said three"),
        ("speaker-two", "said two"),
    ]
    assert all(r.flow_name == "f" and r.levelname == "WARNING" for r in said)


@task(log_prints=True)
def printer(x):
    print("printed", x)
    return x


def test_log_prints_in_a_worker(call_with_deadline, caplog):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return printer.submit(7).result()

    assert call_with_deadline(f, 60) == 7
    [record] = [r for r in caplog.records if r.getMessage() == "printed 7"]
    assert record.task_run_name == "printer-0"


@task(retries=1)
def context_report(x):
    from ferroflow.context import FlowRunContext, TaskRunContext

    context = TaskRunContext.get()
    if context.task_run.run_count == 1:
        raise RuntimeError("first attempt fails")
    return (
        context.task_run.name,
        context.task_run.run_count,
        context.task_run.id,
        context.parameters,
        context.task.name,
        FlowRunContext.get().flow_run.name,
    )


def test_the_run_context_inside_a_worker(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        future = context_report.submit(5)
        return future.result(), future.task_run_id, FlowRunContext.get().flow_run.name

    (name, run_count, run_id, parameters, task_name, flow_run_name), expected_id, expected_flow = call_with_deadline(
        f, 60
    )
    assert (name, run_count, parameters, task_name) == ("context_report-0", 2, {"x": 5}, "context_report")
    assert run_id == expected_id and flow_run_name == expected_flow


def test_caching_tasks_on_the_process_pool(call_with_deadline, tmp_path, monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path))
    key = f"process-pool-{time.time_ns()}"

    @task(cache_key_fn=lambda context, parameters: f"{key}-{parameters['x']}")
    def cached(x):
        return os.getpid(), time.time_ns()

    # Workers of their own (a configuration no other test uses): they start with the setting.
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=3))
    def f():
        first = cached.submit(1)
        first.wait()
        return first.result(), cached.submit(1, return_state=True)

    first, again = call_with_deadline(f, 60)
    assert again.name == "Cached" and again.result() == first


@task(timeout_seconds=0.5)
def sleeps_too_long():
    time.sleep(30)


def test_a_time_limit_stops_the_run_in_its_worker(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def f():
        return [sleeps_too_long.submit(return_state=True), double.submit(4).result()]

    started = time.perf_counter()
    state, after = call_with_deadline(f, 60)
    assert state.name == "TimedOut" and after == 8
    assert time.perf_counter() - started < 10


@task
def plus_one(x):
    return x + 1, os.getpid()


@task
def calls_tasks(x):
    direct = plus_one(x)
    submitted = plus_one.submit(x).result()
    mapped = plus_one.map([x, x + 1]).result()
    return direct, submitted, mapped, os.getpid()


def test_a_task_in_a_worker_calls_submits_and_maps_tasks_there(call_with_deadline, caplog):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return calls_tasks.submit(1).result()

    direct, submitted, mapped, worker = call_with_deadline(f, 60)
    assert worker != os.getpid()
    assert direct == submitted == (2, worker)
    assert mapped == [(2, worker), (3, worker)]
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("Finished in state Completed()") == 4, messages  # direct, submitted, outer, flow
    assert any(m.startswith("Mapped task 'plus_one': 2 runs finished") for m in messages), messages


class OnlyInTheParent:
    """Pickles in the parent, cannot be unpickled in a worker."""

    def __reduce__(self):
        return (_refuse_in_workers, ())


def _refuse_in_workers():
    import multiprocessing

    if multiprocessing.parent_process() is not None:
        raise RuntimeError("not here")
    return OnlyInTheParent()


def test_arguments_a_worker_cannot_unpickle_fail_their_run_not_the_worker(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return [double.submit(OnlyInTheParent(), return_state=True), where.submit().result()]

    state, pid = call_with_deadline(f, 60)
    assert state.is_failed(), state
    assert "could not be unpickled in the worker process" in state.message and "not here" in state.message
    assert pid != os.getpid()


class OnlyInWorkers:
    """Pickles in a worker, cannot be unpickled in the parent."""

    def __reduce__(self):
        return (_refuse_in_the_parent, ())


def _refuse_in_the_parent():
    import multiprocessing

    if multiprocessing.parent_process() is None:
        raise RuntimeError("not in the parent")
    return OnlyInWorkers()


@task
def returns_only_in_workers():
    return OnlyInWorkers()


def test_a_result_the_parent_cannot_unpickle_fails_its_run_and_the_pool_goes_on(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return [returns_only_in_workers.submit(return_state=True), double.submit(6).result()]

    state, after = call_with_deadline(f, 60)
    assert state.is_failed(), state
    assert "could not be unpickled in the parent process" in state.message and "not in the parent" in state.message
    assert after == 12


@task(timeout_seconds=0.5)
def blocks_its_alarm():
    # The limit's alarm cannot reach it: only killing the worker stops it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(60)


def test_a_run_past_its_time_limit_is_stopped_by_killing_its_worker(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def f():
        started = time.perf_counter()
        state = blocks_its_alarm.submit(return_state=True)  # (waits for the run's end)
        took = time.perf_counter() - started
        return [state, took, where.submit().result(), where.submit().result()]

    state, took, pid, again = call_with_deadline(f, 60)
    assert state.name == "TimedOut", state
    assert state.message == "Task run exceeded timeout of 0.5 second(s)"
    assert took < 10
    assert pid == again != os.getpid(), "a fresh worker took the killed one's place"


def test_the_thread_pools_pickling_scenario_passes_on_the_process_pool(call_with_deadline):
    from test_runners import test_runners_pickle_and_copy_as_their_configuration as scenario

    call_with_deadline(lambda: scenario(ProcessPoolTaskRunner(max_workers=2)), 60)


def test_a_run_under_a_time_limit_queued_among_fast_runs_is_still_stopped(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=1))
    def f():
        double.map(range(200)).wait()  # measured fast from now on: they travel in big chunks
        busy = nap.submit(1.0, "busy")  # while it runs, the rest waits in the parent, together
        before = [double.submit(x) for x in range(50)]
        stubborn = blocks_its_alarm.submit()
        after = [double.submit(x) for x in range(200)]
        stubborn.wait()
        return busy.result(), [f.result() for f in before + after], stubborn.state

    started = time.perf_counter()
    busy, values, state = call_with_deadline(f, 60)
    assert busy == "busy" and values == [2 * x for x in range(50)] + [2 * x for x in range(200)]
    assert state.name == "TimedOut", state
    assert time.perf_counter() - started < 15


# -- runs shipped in segments (many runs of one task per message) --------------------------


def _identify(x, y=0):
    from ferroflow.context import TaskRunContext

    context = TaskRunContext.get()
    return context.task_run.name, context.task_run.id, context.parameters, context.task.name


identify = task(_identify, name="identify")
#: Another task of the same function: its runs must not be taken for `identify`'s.
identify_again = task(_identify, name="identify_again")


def test_each_mapped_run_in_a_worker_knows_its_own_name_id_parameters_and_task(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        first = identify.map(range(300))
        second = identify_again.map(range(300), y=unmapped(5))
        ids = [future.task_run_id for future in first], [future.task_run_id for future in second]
        return first.result(), second.result(), ids

    first, second, (first_ids, second_ids) = call_with_deadline(f, 60)
    assert [name for name, _, _, _ in first] == [f"identify-{x}" for x in range(300)]
    assert [run_id for _, run_id, _, _ in first] == first_ids
    assert [parameters for _, _, parameters, _ in first] == [{"x": x, "y": 0} for x in range(300)]
    assert {task_name for *_, task_name in first} == {"identify"}
    assert [name for name, _, _, _ in second] == [f"identify_again-{x}" for x in range(300)]
    assert [run_id for _, run_id, _, _ in second] == second_ids
    assert [parameters for _, _, parameters, _ in second] == [{"x": x, "y": 5} for x in range(300)]
    assert {task_name for *_, task_name in second} == {"identify_again"}


def test_mapped_keyword_arguments_and_custom_run_names_travel(call_with_deadline):
    named = identify.with_options(task_run_name="point-{x}-{y}")

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        return named.map(x=range(200), y=range(200, 400)).result()

    got = call_with_deadline(f, 60)
    assert [name for name, *_ in got] == [f"point-{x}-{x + 200}" for x in range(200)]
    assert [parameters for _, _, parameters, _ in got] == [{"x": x, "y": x + 200} for x in range(200)]


@task
def double_or_lock(x):
    return threading.Lock() if x == 150 else 2 * x


def test_in_a_map_only_the_run_whose_argument_or_result_does_not_pickle_fails(call_with_deadline):
    arguments = [*range(100), threading.Lock(), *range(101, 200)]

    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        by_argument = double.map(arguments, return_state=True)
        by_result = double_or_lock.map(range(200), return_state=True)
        return [s.is_failed() for s in by_argument], [s.message for s in by_argument if s.is_failed()], [
            s.result(raise_on_failure=False) if not s.is_failed() else "failed" for s in by_result
        ]

    argument_failed, messages, results = call_with_deadline(f, 60)
    assert argument_failed == [x == 100 for x in range(200)]
    assert "double-100" in messages[0] and "argument at position 0" in messages[0]
    assert results == [("failed" if x == 150 else 2 * x) for x in range(200)]


@task
def exit_at(x, fatal):
    if x == fatal:
        os._exit(3)
    return x + 1


def test_a_worker_dying_amid_a_chunk_crashes_only_the_run_it_held(call_with_deadline):
    @flow(task_runner=ProcessPoolTaskRunner(max_workers=2))
    def f():
        exit_at.map(range(2000), fatal=-1).result()  # measured fast: the next map ships in big chunks
        return exit_at.map(range(3000), fatal=2500, return_state=True)

    states = call_with_deadline(f, 60)
    crashed = [index for index, state in enumerate(states) if state.is_crashed()]
    assert crashed == [2500]
    assert "exit code 3" in states[2500].message and "exit_at-" in states[2500].message
    assert [state.result() for index, state in enumerate(states) if index != 2500] == [
        x + 1 for x in range(3000) if x != 2500
    ]


def test_a_run_carried_off_a_segment_stays_the_run_it_was():
    """A worker moves its current run along a segment; what code inside a run carries to
    another thread (`carry_run`: a time limit's helper, a hook's loop) stays that run."""
    from ferroflow._worker_runs import SegmentRun
    from ferroflow.context import TaskRunContext, carry_run, current_async_run

    segment = SegmentRun((_identify, identify), None, [1, 2], None, True, (7, 40, 1), None, "identify", bytes(12))
    with segment.entered():
        carried = carry_run()
        segment.position = 1
        now = TaskRunContext.get()
    token = current_async_run.set(carried)
    try:
        then = TaskRunContext.get()
    finally:
        current_async_run.reset(token)
    assert (then.task_run.name, then.parameters) == ("identify-7", {"x": 1, "y": 0})
    assert (now.task_run.name, now.parameters) == ("identify-8", {"x": 2, "y": 0})
    assert now.task_run.id.bytes[12:] == (41).to_bytes(4, "big")
