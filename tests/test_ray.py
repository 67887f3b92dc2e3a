"""RayTaskRunner as a user sees it: prefect-ray's configuration, runs executing on real
Ray workers (a head node started with `ray start --head`, and a local instance the
runner starts) while the engine keeps the flow's truth in this process, values that
stay in the cluster, per-task Ray options, failures (task errors, retries, time limits,
dying workers, unreachable clusters), worker logs in the flow's console, and no Ray
process left afterwards."""

from __future__ import annotations

import contextlib
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

# First: it sets the environment Ray reads when it is imported.
import ray_cluster
from ray_cluster import assert_nothing_left, free_port, local_init_kwargs, short_temp_dir

ray = pytest.importorskip("ray", reason="ray is in the test extra; no wheel for this platform")

from cluster_behaviour import (  # noqa: E402, F401  (collected here, on this cluster)
    test_a_run_whose_worker_dies_is_retried_when_its_task_has_retries,
    test_caching_works_across_flow_runs_on_the_cluster,
    test_the_value_comes_when_asked_for,
)
from cluster_tasks import (  # noqa: E402
    async_double,
    boom,
    dies,
    killing_when_written,
    nap,
    poison,
    poison_value,
    poison_values,
)
from ferroflow import allow_failure, flow, get_run_logger, task  # noqa: E402
from ferroflow.futures import as_completed, wait  # noqa: E402
from ferroflow.ray import RayTaskRunner as TopLevelRayTaskRunner  # noqa: E402
from ferroflow.ray.context import RemoteOptionsContext, remote_options  # noqa: E402
from ferroflow.ray.task_runners import RayTaskRunner  # noqa: E402
from ferroflow.task_runners import ThreadPoolTaskRunner  # noqa: E402

# The test functions' time only: a module's setup may wait for other test sessions' Ray
# tests (`ray_alone`) and starts a head node (with a limit of its own).
pytestmark = pytest.mark.timeout(120, func_only=True)

#: The module's Ray head node, and the lock that keeps other test sessions' Ray tests
#: off the machine meanwhile (fixtures).
ray_alone = ray_cluster.ray_alone
ray_head = ray_cluster.ray_head


@pytest.fixture(scope="module", autouse=True)
def no_ray_process_left(ray_head):
    """After the module's tests (and this process's last Ray connection), no process they
    started is running but the head's (which `ray_head` stops, and checks, next)."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    yield
    ray.shutdown()
    head = psutil.Process(ray_head.process.pid)
    assert_nothing_left(before | {head.pid} | {child.pid for child in head.children(recursive=True)})


@pytest.fixture
def connected(ray_head):
    """This process connected to the head (once, kept between tests: each connection is a
    new Ray job with fresh workers). A runner without `address` uses it and leaves it."""
    if not ray.is_initialized():
        ray.init(address=ray_head.address)
    return RayTaskRunner()


@pytest.fixture
def cluster_runner(connected):
    """The runner of the tests shared with test_dask (`cluster_behaviour`)."""
    return connected


@pytest.fixture
def disconnected():
    """This process not connected to Ray (for the tests of the runner's own connection)."""
    ray.shutdown()
    yield
    assert not ray.is_initialized(), "the runner left its Ray connection open"


# -- tasks (module level: Ray workers import this module by name) --------------------------------


@task
def double(x):
    return 2 * x


@task
def where(x=None):
    return os.getpid()


@task
def ray_task_name(x=None):
    """The name of the Ray task this run executes as."""
    return ray.get_runtime_context().get_task_name()


@task
def assigned_cpus(x=None):
    return ray.get_runtime_context().get_assigned_resources().get("CPU")


@task
def total(values, extra=None):
    return sum(values) + sum((extra or {}).values())


class Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("not this one")


@task
def raises_unpicklable():
    raise Unpicklable("stuck in the worker")


# -- the names users have, configuration -------------------------------------------------------------


def test_the_names_users_have_and_ferroflow_imports_no_ray():
    import ferroflow.task_runners

    assert TopLevelRayTaskRunner is RayTaskRunner is ferroflow.task_runners.RayTaskRunner
    script = (
        "import sys, ferroflow, ferroflow.task_runners, ferroflow.ray, ferroflow.ray.task_runners, "
        "ferroflow.ray.context; assert 'ray' not in sys.modules, sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_duplicate_equality_and_pickling():
    settings = {"num_cpus": 1}
    runner = RayTaskRunner(address="ray://127.0.0.1:10001", init_kwargs=settings)
    assert runner.init_kwargs == {"num_cpus": 1, "namespace": "prefect"}  # prefect-ray's namespace
    assert settings == {"num_cpus": 1}  # copied, not changed
    assert runner.duplicate() == runner and runner.duplicate() is not runner
    assert pickle.loads(pickle.dumps(runner)) == runner
    assert runner != RayTaskRunner() and runner != ThreadPoolTaskRunner()
    assert RayTaskRunner(init_kwargs={"namespace": "mine"}).init_kwargs == {"namespace": "mine"}
    assert hash(runner) == hash(runner.duplicate())


def test_remote_options_nest_and_merge():
    assert RemoteOptionsContext.get().current_remote_options == {}
    with remote_options(num_cpus=2, memory=100) as outer:
        assert outer == {"num_cpus": 2, "memory": 100}
        with remote_options(num_cpus=1) as inner:
            assert inner == RemoteOptionsContext.get().current_remote_options == {"num_cpus": 1, "memory": 100}
        assert RemoteOptionsContext.get().current_remote_options == outer
    assert RemoteOptionsContext.get().current_remote_options == {}
    with pytest.raises(ValueError, match="num_returns"), remote_options(num_returns=1):
        pass


# -- runs on the cluster --------------------------------------------------------------------------------


def test_submit_and_map_run_on_ray_workers_named_after_their_runs(connected):
    @flow(task_runner=connected)
    def spread():
        single = double.submit(21)
        mapped = double.map(range(4))
        pids = where.map(range(4))
        names = ray_task_name.submit(), ray_task_name.map([None, None])
        return (
            single.result(),
            mapped.result(),
            {future.result() for future in pids},
            [names[0].result(), *names[1].result()],
        )

    one, many, pids, names = spread()
    assert one == 42
    assert many == [0, 2, 4, 6]
    assert os.getpid() not in pids
    assert names == ["ray_task_name-0", "ray_task_name-1", "ray_task_name-2"]
    assert ray.is_initialized()  # a connection made outside the runner stays


def test_a_value_passes_between_runs_without_coming_to_the_flow_process(connected):
    """The issue's proof: the value cannot be unpickled here, and the flow still returns
    plain values computed from it (if it came here, unpickling it would raise)."""
    parent = os.getpid()

    @flow(task_runner=connected)
    def stays():
        made = poison.submit(parent, 20)
        nested = poison_values.submit([made, made])  # a future inside a list: nested
        mapped = poison.map([parent] * 3, [1, 2, 3])
        summed = poison_values.submit(mapped)
        keyword = poison_value.submit(poisoned=made, extra=2)
        return poison_value.submit(made, 1).result(), nested.result(), summed.result(), keyword.result()

    assert stays() == (21, 40, 6, 22)


def test_values_in_containers_and_keywords_reach_the_run(connected):
    @flow(task_runner=connected)
    def gathers():
        a, b, c = double.submit(1), double.submit(2), double.submit(3)
        return total.submit([a, b], extra={"c": c, "plain": 10}).result(), total.submit((a, 5)).result()

    assert gathers() == (2 + 4 + 6 + 10, 7)


def test_a_subflow_on_threads_and_direct_calls_get_the_value(connected):
    @flow(task_runner=ThreadPoolTaskRunner())
    def on_threads(value):
        return double.submit(value).result()

    @flow(task_runner=connected)
    def parent():
        upstream = double.submit(5)
        return on_threads(upstream.result()), double(upstream)

    assert parent() == (20, 20)


@task
def doubles_inside(x):
    """Submits a run from inside a run: it executes in the same Ray worker."""
    return double.submit(x).result(), where.submit().result() == os.getpid()


def test_a_run_submits_runs_of_its_own_in_its_worker(connected):
    @flow(task_runner=connected)
    def nested():
        return doubles_inside.submit(4).result()

    assert nested() == (8, True)


def test_async_tasks_run_on_ray(connected):
    @flow(task_runner=connected)
    def asynchronous():
        return async_double.map([1, 2, 3]).result()

    assert asynchronous() == [2, 4, 6]


def test_remote_options_give_the_runs_their_resources(connected):
    @flow(task_runner=connected)
    def sized():
        with remote_options(num_cpus=2):
            big = assigned_cpus.submit()
            bigs = assigned_cpus.map([None, None])
        small = assigned_cpus.submit()
        return big.result(), bigs.result(), small.result()

    assert sized() == (2.0, [2.0, 2.0], 1.0)


def test_wait_as_completed_and_wait_for(connected):
    @flow(task_runner=connected)
    def coordinated():
        slow, fast = nap.submit(0.5, "slow"), nap.submit(0.0, "fast")
        order = [future.result() for future in as_completed([slow, fast])]
        after = double.submit(1, wait_for=[slow])
        done, not_done = wait([after])
        return order, after.result(), len(done), len(not_done)

    order, after, done, not_done = coordinated()
    assert sorted(order) == ["fast", "slow"] and order[0] == "fast"
    assert (after, done, not_done) == (2, 1, 0)


def test_the_flow_waits_for_unwaited_runs_before_letting_go_of_ray(connected, tmp_path):
    marker = tmp_path / "done"

    @task
    def writes_late(path):
        time.sleep(1)
        Path(path).write_text("written")

    @flow(task_runner=connected)
    def leaves_it():
        writes_late.submit(str(marker))  # never waited for here

    leaves_it()
    assert marker.read_text() == "written"


@task
def describes(value):
    return f"{type(value).__name__}: {value}"


def test_not_ready_downstream_of_a_failure_and_allow_failure(connected):
    @flow(task_runner=connected)
    def shapes():
        failed = boom.submit("upstream broke")
        skipped = double.submit(failed)
        tolerant = describes.submit(allow_failure(failed))
        wait([skipped, tolerant])
        return failed.state.is_failed(), skipped.state.name, tolerant.result()

    assert shapes() == (True, "NotReady", "ValueError: upstream broke")


# -- failures ------------------------------------------------------------------------------------------


def test_a_task_exception_reaches_result_with_its_type(connected):
    @flow(task_runner=connected)
    def failing():
        future = boom.submit("kaput")
        future.wait()
        return future

    future = failing(return_state=True)
    with pytest.raises(ValueError, match="kaput"):
        future.result()


def test_an_exception_that_does_not_pickle_still_fails_the_run(connected):
    @flow(task_runner=connected)
    def failing():
        return raises_unpicklable.submit().result()

    with pytest.raises(RuntimeError, match="Unpicklable: stuck in the worker"):
        failing()


@task
def returns_a_lock():
    return threading.Lock()


def test_a_value_that_cannot_be_kept_in_the_cluster_fails_the_run(connected):
    @flow(task_runner=connected)
    def keeps():
        state = returns_a_lock.submit(return_state=True)
        return state.is_failed(), state.message

    failed, message = keeps()
    assert failed and "cannot pickle '_thread.lock' object" in message, message


def test_retries_and_their_delays(connected, tmp_path, ferroflow_records):
    attempts = tmp_path / "attempts"

    @task(retries=2, retry_delay_seconds=0.5)
    def flaky(path):
        with open(path, "a") as log:
            log.write("x")
        if len(Path(path).read_text()) < 3:
            raise ValueError("not yet")
        return "finally"

    @flow(task_runner=connected)
    def persistent():
        return flaky.submit(str(attempts)).result()

    started = time.monotonic()
    assert persistent() == "finally"
    assert attempts.read_text() == "xxx"
    assert time.monotonic() - started >= 1.0  # two delays of 0.5 s
    retrying = [record for record in ferroflow_records() if "Retry" in record.getMessage()]
    assert len(retrying) >= 2


@task(timeout_seconds=3)  # (long enough for a fresh Ray worker to start on a loaded machine)
def ignores_its_alarm(pid_file):
    # The limit's alarm in the worker cannot reach it: only the flow's process ends the
    # run, and `ray.cancel(force=True)` kills the worker.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(60)


def test_a_run_past_its_time_limit_ends_timed_out_and_its_ray_task_is_cancelled(connected, tmp_path):
    pid_file = tmp_path / "pid"

    @flow(task_runner=connected)
    def limited():
        started = time.monotonic()
        state = ignores_its_alarm.submit(str(pid_file), return_state=True)
        return state, time.monotonic() - started

    state, took = limited()
    assert state.name == "TimedOut", state
    assert 3.0 <= took < 15  # the 3 s limit and its 1 s grace, far from the 60 s sleep
    with contextlib.suppress(psutil.NoSuchProcess):  # (gone already)
        psutil.Process(int(pid_file.read_text())).wait(timeout=20)  # killed by the cancellation


@task(timeout_seconds=3)
def naps_within_its_limit(i):
    time.sleep(1.5)
    return i


def test_a_limit_counts_from_the_start_not_from_the_wait_in_ray_s_queue(connected):
    # Eight runs of 1.5 s under a 3 s limit on a head of 2 CPUs: the last ones wait about
    # 4.5 s in Ray's queue, longer than their limit, and none of them times out.
    @flow(task_runner=connected)
    def queued():
        return [state.name for state in naps_within_its_limit.map(range(8), return_state=True)]

    assert queued() == ["Completed"] * 8


@task(timeout_seconds=1)
def sleeps_past_its_limit():
    time.sleep(30)


def test_a_time_limit_acts_in_the_worker_too(connected):
    @flow(task_runner=connected)
    def limited():
        return sleeps_past_its_limit.submit(return_state=True).name

    started = time.monotonic()
    assert limited() == "TimedOut"
    assert time.monotonic() - started < 10


def test_a_ray_worker_that_dies_ends_its_run_crashed(connected, tmp_path):
    pid_file = tmp_path / "pid"

    @flow(task_runner=connected)
    def doomed():
        doomed_run = dies.submit(str(pid_file), return_state=True)
        return doomed_run, double.submit(4).result()

    with killing_when_written(pid_file):
        state, after = doomed()
    assert state.is_crashed(), state
    assert "Ray task ended without returning" in str(state.message), state.message
    assert after == 8  # the cluster goes on


def test_ctrl_c_cancels_the_runs_on_ray_and_propagates(ray_head):
    script = textwrap.dedent(
        f"""
        import sys, time
        from ferroflow import flow, task
        from ferroflow.ray import RayTaskRunner

        @task
        def nap(i):
            time.sleep(30)
            return i

        @flow(task_runner=RayTaskRunner(address={ray_head.address!r}))
        def sleepy():
            futures = nap.map(range(6))
            print("started", flush=True)
            return futures.result()

        try:
            sleepy()
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
        """
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(3)  # (two of the runs are running on the head's two CPUs)
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        took = time.monotonic() - started
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "interrupted" in out
    assert took < 20, took  # not the 30 s the runs sleep
    summary = [line for line in err.splitlines() if "Mapped task 'nap': 6 runs finished" in line]
    assert len(summary) == 1 and "6 Crashed" in summary[0], err


# -- logs from workers ------------------------------------------------------------------------------


@task
def talks(x):
    get_run_logger().info(f"talking about {x}")
    print(f"printed {x}")
    return x


def test_worker_logs_reach_the_flow_console_with_run_names(connected, ferroflow_records):
    @flow(task_runner=connected, log_prints=True)
    def chatty():
        return talks.submit(7).result(), talks.map([8]).result()

    assert chatty() == (7, [8])
    lines = [
        (record.getMessage(), getattr(record, "task_run_name", None)) for record in ferroflow_records()
    ]
    assert ("talking about 7", "talks-0") in lines and ("printed 7", "talks-0") in lines
    assert ("talking about 8", "talks-1") in lines and ("printed 8", "talks-1") in lines
    finished = lines.index(("Finished in state Completed()", "talks-0"))
    assert lines.index(("talking about 7", "talks-0")) < finished


def test_each_worker_line_shows_once_in_the_console(ray_head, tmp_path):
    """Ray echoes its workers' output to the driver: a run's lines must still show once."""
    script = tmp_path / "chatty.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from ferroflow import flow, get_run_logger, task
            from ferroflow.ray import RayTaskRunner

            @task
            def talks():
                get_run_logger().info("logged in the worker")
                print("printed in the worker")

            @flow(task_runner=RayTaskRunner(address={ray_head.address!r}), log_prints=True)
            def chatty():
                talks.submit().wait()

            if __name__ == "__main__":
                chatty()
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90, check=True)
    console = done.stdout + done.stderr
    assert console.count("logged in the worker") == 1, console
    assert console.count("printed in the worker") == 1, console
    assert re.search(r"Task run 'talks-0' - logged in the worker", console), console


# -- where Ray comes from -----------------------------------------------------------------------------


def test_address_connects_at_flow_start_and_disconnects_at_its_end(ray_head, disconnected, ferroflow_records):
    @flow(task_runner=RayTaskRunner(address=ray_head.address))
    def remote():
        connected_before_a_run = ray.is_initialized()
        return connected_before_a_run, double.submit(3).result(), ray.get_runtime_context().gcs_address

    assert remote() == (True, 6, ray_head.address)
    messages = [record.getMessage() for record in ferroflow_records()]
    assert f"Connecting to an existing Ray instance at {ray_head.address}" in messages


def test_an_unreachable_address_fails_the_flow_at_start_naming_it(disconnected):
    address = f"127.0.0.1:{free_port()}"
    ran = []

    @flow(task_runner=RayTaskRunner(address=address))
    def nowhere():
        ran.append(True)

    started = time.monotonic()
    with pytest.raises(ConnectionError, match=re.escape(address)):
        nowhere()
    assert time.monotonic() - started < 20
    assert ran == []


def test_a_local_instance_starts_with_the_first_run_and_stops_with_the_flow(disconnected, ferroflow_records):
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    temp_dir = short_temp_dir()
    runner = RayTaskRunner(init_kwargs=local_init_kwargs(temp_dir))

    @flow(task_runner=runner)
    def local():
        started_before_a_run = ray.is_initialized()
        return started_before_a_run, double.submit(5).result(), where.submit().result()

    try:
        started_before_a_run, value, pid = local()
    finally:
        ray.shutdown()  # (if the test failed with Ray still up)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert (started_before_a_run, value) == (False, 10)
    assert pid != os.getpid()
    assert "Creating a local Ray instance" in [record.getMessage() for record in ferroflow_records()]
    assert_nothing_left(before)


def test_a_local_instance_that_cannot_start_crashes_the_runs_with_ray_s_error(disconnected):
    @flow(task_runner=RayTaskRunner(init_kwargs={"num_cpus": -1}))
    def unstartable():
        state = double.submit(1, return_state=True)
        return state.name, state.message

    name, message = unstartable()
    assert name == "Crashed" and "ValueError: Resource quantities must be nonnegative" in message, message


def test_the_local_instance_starts_without_ray_s_warning_about_its_thread(disconnected, capfd):
    temp_dir = short_temp_dir()

    @flow(task_runner=RayTaskRunner(init_kwargs=local_init_kwargs(temp_dir)))
    def local():
        return double.submit(1).result()

    try:
        assert local() == 2
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert "SIGTERM handler is not set" not in capfd.readouterr().err
