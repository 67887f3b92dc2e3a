"""DaskTaskRunner as a user sees it: prefect-dask's configuration, runs executing on a
real Dask cluster (a LocalCluster of worker processes, and `dask scheduler` / `dask
worker` processes started here) while the engine keeps the flow's truth in this
process, values that stay in the cluster, failures (task errors, retries, time limits,
dying workers, unreachable schedulers), worker logs in the flow's console, the seeds'
Dask examples, and nothing left running afterwards."""

from __future__ import annotations

import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed", reason="dask[distributed] is in the test extra; no wheel here")
psutil = pytest.importorskip("psutil")

import dask  # noqa: E402  (after the skip above)

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
from ferroflow.dask import DaskTaskRunner as TopLevelDaskTaskRunner  # noqa: E402
from ferroflow.dask import get_dask_client  # noqa: E402
from ferroflow.dask.task_runners import DaskTaskRunner  # noqa: E402
from ferroflow.futures import as_completed, wait  # noqa: E402
from ferroflow.task_runners import ThreadPoolTaskRunner  # noqa: E402

pytestmark = pytest.mark.timeout(120)

# -- the cluster: two worker processes, shared by the module's tests ---------------------------


@pytest.fixture(scope="module")
def cluster():
    """A LocalCluster of worker processes (`processes=True`, deliberately: a value made
    in a worker is never in this process unless fetched). The scheduler does not
    reschedule a task whose worker died (`allowed-failures` 0): its run ends Crashed."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        local = distributed.LocalCluster(
            n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0", host="127.0.0.1"
        )
    yield local
    local.close()
    _assert_nothing_left(before)


def _assert_nothing_left(before: set[int]) -> None:
    """No process started since `before` still runs (but multiprocessing's resource
    tracker, which this interpreter keeps until it exits)."""
    deadline = time.monotonic() + 15
    while True:
        left = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
        left = [child for child in left if _running(child) and "resource_tracker" not in " ".join(_cmdline(child))]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], f"processes left running: {[(child.pid, _cmdline(child)) for child in left]}"


def _running(process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _cmdline(process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@pytest.fixture
def runner(cluster):
    return DaskTaskRunner(address=cluster.scheduler_address)


@pytest.fixture
def cluster_runner(runner):
    """The runner of the tests shared with test_ray (`cluster_behaviour`)."""
    return runner


# -- tasks (module level: they cross to the workers cloudpickled) ------------------------------


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
def dask_key(x=None):
    """The Dask key of the task this run executes as."""
    return distributed.get_worker().get_current_task()


# -- configuration, as prefect-dask's -----------------------------------------------------------


def test_the_names_users_have():
    import ferroflow.dask
    import ferroflow.task_runners

    assert TopLevelDaskTaskRunner is DaskTaskRunner
    assert ferroflow.task_runners.DaskTaskRunner is DaskTaskRunner
    assert callable(ferroflow.dask.get_async_dask_client)


def test_a_star_import_of_task_runners_loads_no_cluster_engine(run_script):
    proc = run_script(
        """
        import sys
        from ferroflow.task_runners import *
        assert not {"dask", "distributed", "ray"} & set(sys.modules), "a cluster engine was imported"
        from ferroflow.task_runners import DaskTaskRunner
        assert DaskTaskRunner.__module__ == "ferroflow.dask.task_runners"
        """
    )
    assert proc.returncode == 0, proc.stderr


def test_cluster_class_as_a_dotted_name_or_a_class():
    assert DaskTaskRunner(cluster_class="distributed.LocalCluster").cluster_class is distributed.LocalCluster
    assert DaskTaskRunner(cluster_class=distributed.LocalCluster).cluster_class is distributed.LocalCluster


def test_conflicting_settings_are_refused():
    with pytest.raises(ValueError, match="address"):
        DaskTaskRunner(address="tcp://127.0.0.1:8786", cluster_kwargs={"n_workers": 1})
    with pytest.raises(ValueError, match="cluster"):
        DaskTaskRunner(cluster=object(), cluster_class="distributed.LocalCluster")
    with pytest.raises(ValueError, match="asynchronous"):
        DaskTaskRunner(client_kwargs={"asynchronous": True})
    with pytest.raises(ValueError, match="asynchronous"):
        DaskTaskRunner(cluster_kwargs={"asynchronous": True})


def test_duplicate_equality_and_pickling():
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1}, adapt_kwargs={"maximum": 2})
    twin = runner.duplicate()
    assert twin == runner and twin is not runner
    assert twin.client_kwargs == {"set_as_default": False}
    assert runner != DaskTaskRunner(cluster_kwargs={"n_workers": 2})
    assert runner != ThreadPoolTaskRunner()
    assert pickle.loads(pickle.dumps(runner)) == runner


# -- runs on the cluster ----------------------------------------------------------------------------


def test_submit_and_map_run_in_worker_processes(runner):
    @flow(task_runner=runner)
    def spread():
        one = double.submit(21)
        many = double.map(range(6))
        pids = where.map(range(8))
        return one.result(), many.result(), set(pids.result())

    one, many, pids = spread()
    assert one == 42
    assert many == [0, 2, 4, 6, 8, 10]
    assert os.getpid() not in pids


def test_the_runner_as_a_context_manager(runner):
    with runner.duplicate() as started:
        future = started.submit(double, {"x": 4})
        mapped = started.map(double, {"x": [1, 2]})
        assert future.result() == 8
        assert mapped.result() == [2, 4]


def test_a_map_goes_to_dask_in_one_client_map_call(runner, monkeypatch):
    calls = []
    original_map, original_submit = distributed.Client.map, distributed.Client.submit

    def spy_map(self, func, *iterables, **kwargs):
        calls.append(("map", func.__name__, len(kwargs["key"])))
        return original_map(self, func, *iterables, **kwargs)

    def spy_submit(self, func, *args, **kwargs):
        calls.append(("submit", func.__name__, 1))
        return original_submit(self, func, *args, **kwargs)

    monkeypatch.setattr(distributed.Client, "map", spy_map)
    monkeypatch.setattr(distributed.Client, "submit", spy_submit)

    @flow(task_runner=runner)
    def mapped():
        return double.map(range(50)).result()

    assert mapped() == [2 * x for x in range(50)]
    assert [call for call in calls if call[1] == "run_task"] == [("map", "run_task", 50)]


def test_dask_keys_carry_the_task_run_names(runner):
    @flow(task_runner=runner)
    def keyed():
        return dask_key.submit().result(), [future.result() for future in dask_key.map([None, None])]

    single, mapped = keyed()
    assert single.startswith("dask_key-0-")
    assert [key.rsplit("-", 1)[0] for key in mapped] == ["dask_key-1", "dask_key-2"]


def test_a_value_passes_between_runs_without_coming_to_the_flow_process(runner):
    """The issue's proof: the value cannot be unpickled here, and the flow still returns
    a plain value computed from it (if it came here, unpickling it would raise)."""
    parent = os.getpid()

    @flow(task_runner=runner)
    def stays():
        made = poison.submit(parent, 20)
        nested = poison_values.submit([made, made])  # a future inside a list: nested
        mapped = poison.map([parent] * 3, [1, 2, 3])
        summed = poison_values.submit(mapped)
        return poison_value.submit(made, 1).result(), nested.result(), summed.result()

    assert stays() == (21, 40, 6)


def test_a_subflow_on_threads_gets_the_value(runner):
    @flow(task_runner=ThreadPoolTaskRunner())
    def on_threads(value):
        return double.submit(value).result()

    @flow(task_runner=runner)
    def parent():
        return on_threads(double.submit(5))  # the future's value is fetched for the subflow

    assert parent() == 20


def test_async_tasks_run_on_the_cluster(runner):
    @flow(task_runner=runner)
    def asyncs():
        return async_double.map([1, 2, 3]).result()

    assert asyncs() == [2, 4, 6]


def test_wait_for_allow_failure_not_ready_and_as_completed(runner):
    @flow(task_runner=runner)
    def shapes():
        first = nap.submit(0.2, "first")
        after = double.submit(1, wait_for=[first])
        failed = boom.submit()
        skipped = double.submit(failed)
        done = [future.result() for future in as_completed([double.submit(i) for i in range(4)])]
        wait([after, failed, skipped])
        return after.result(), failed.state, skipped.state, sorted(done)

    after, failed, skipped, done = shapes()
    assert after == 2
    assert failed.is_failed()
    assert skipped.name == "NotReady"
    assert done == [0, 2, 4, 6]


def test_allow_failure_passes_the_exception(runner):
    @task
    def kind(value):
        return type(value).__name__

    @flow(task_runner=runner)
    def tolerant():
        return kind.submit(allow_failure(boom.submit())).result()

    assert tolerant() == "ValueError"


# -- failures -------------------------------------------------------------------------------------------


def test_a_task_exception_reaches_result_with_its_type(runner):
    @flow(task_runner=runner)
    def fails():
        return boom.submit("bad input").result()

    with pytest.raises(ValueError, match="bad input"):
        fails()


@task(retries=2, retry_delay_seconds=0.5)
def flaky(marker):
    """Fails on its first two attempts (counted in a file: attempts may run on any worker)."""
    path = Path(marker)
    attempts = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(attempts))
    if attempts < 3:
        raise RuntimeError(f"attempt {attempts}")
    return attempts


def test_retries_and_their_delays(runner, tmp_path, ferroflow_records):
    @flow(task_runner=runner)
    def retried():
        return flaky.submit(str(tmp_path / "attempts")).result()

    started = time.monotonic()
    assert retried() == 3
    assert time.monotonic() - started >= 1.0  # two delays of 0.5 s, waited in this process
    messages = [record.getMessage() for record in ferroflow_records()]
    assert sum("Retrying" in message or "retry" in message.lower() for message in messages) >= 2


@task(timeout_seconds=1)
def sleeps_past_its_limit():
    time.sleep(30)


def test_a_time_limit_ends_the_run_timed_out_at_the_deadline(runner):
    @flow(task_runner=runner)
    def limited():
        future = sleeps_past_its_limit.submit()
        future.wait()
        return future.state

    started = time.monotonic()
    state = limited(return_state=True).result(raise_on_failure=False)
    elapsed = time.monotonic() - started
    assert state.name == "TimedOut", state
    assert elapsed < 10  # 1 s limit (and 1 s grace), far from the 30 s sleep


@task(timeout_seconds=2)
def within_its_limit(x):
    time.sleep(1.2)
    return x


def test_a_time_limit_counts_from_the_runs_start_not_its_wait_in_the_queue(runner):
    """12 runs of 1.2 s on 4 worker threads: the last ones start 2.4 s after their launch
    and end well within their own 2 s limit."""

    @flow(task_runner=runner)
    def queued():
        futures = within_its_limit.map(range(12))
        futures.wait()
        return [future.state.name for future in futures]

    assert queued() == ["Completed"] * 12


def test_a_worker_that_dies_ends_its_run_crashed(runner, tmp_path):
    pid_file = tmp_path / "pid"

    @flow(task_runner=runner)
    def doomed():
        future = dies.submit(str(pid_file))
        future.wait()
        return future.state

    with killing_when_written(pid_file):
        state = doomed(return_state=True).result(raise_on_failure=False)
    assert state.is_crashed(), state
    assert "worker died" in str(state.message), state.message


def test_an_unreachable_scheduler_fails_the_flow_at_start_naming_it():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"

    @flow(task_runner=DaskTaskRunner(address=address, client_kwargs={"timeout": 2}))
    def nowhere():
        return double.submit(1).result()

    started = time.monotonic()
    with pytest.raises(ConnectionError, match=re.escape(address)):
        nowhere()
    assert time.monotonic() - started < 20


CTRL_C_SCRIPT = """
import time
from ferroflow import flow, task
from ferroflow.dask.task_runners import DaskTaskRunner

@task
def long(x):
    time.sleep(60)
    return x

@flow(task_runner=DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 2, "dashboard_address": ":0"}))
def interrupted():
    futures = long.map(range(4))
    print("submitted", flush=True)
    return futures.result()

if __name__ == "__main__":
    interrupted()
"""


def test_ctrl_c_cancels_the_cluster_runs_and_leaves_no_process(tmp_path):
    script = tmp_path / "interrupted.py"
    script.write_text(CTRL_C_SCRIPT)
    process = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "submitted"
    time.sleep(1)  # the runs are executing on the cluster
    family = psutil.Process(process.pid).children(recursive=True)
    assert family, "the cluster's worker processes"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "KeyboardInterrupt" in stderr or "Crashed" in stderr, stderr[-2000:]
    deadline = time.monotonic() + 15
    while any(_running(member) for member in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [member.pid for member in family if _running(member)]


# -- logs from workers ---------------------------------------------------------------------------------


@task
def talks(x):
    get_run_logger().info(f"talking about {x}")
    print(f"printed {x}")
    return x


def test_worker_logs_reach_the_flow_console_with_run_names(runner, ferroflow_records):
    @flow(task_runner=runner, log_prints=True)
    def chatty():
        return talks.submit(7).result()

    assert chatty() == 7
    lines = [
        (record.name, record.getMessage(), getattr(record, "task_run_name", None)) for record in ferroflow_records()
    ]
    talked = [line for line in lines if line[1] == "talking about 7"]
    printed = [line for line in lines if line[1] == "printed 7"]
    assert talked and talked[0][2] == "talks-0"
    assert printed and printed[0][2] == "talks-0"
    finished = [
        index
        for index, line in enumerate(lines)
        if line[1].startswith("Finished in state Completed") and line[2] == "talks-0"
    ]
    assert finished and lines.index(talked[0]) < finished[0]


# -- where the cluster comes from --------------------------------------------------------------------


def test_a_temporary_local_cluster_starts_and_closes_with_the_flow_run():
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    runner = DaskTaskRunner(cluster_kwargs={"n_workers": 1, "threads_per_worker": 1, "dashboard_address": ":0"})

    @flow(task_runner=runner)
    def temporary():
        from ferroflow.context import FlowRunContext

        client = FlowRunContext.get().task_runner.client
        return double.submit(4).result(), client.scheduler.address

    value, address = temporary()
    assert value == 8 and address.startswith("tcp://127.0.0.1")
    _assert_nothing_left(before)


def test_performance_report_path_writes_dasks_report(cluster, tmp_path):
    report = tmp_path / "report.html"

    @flow(task_runner=DaskTaskRunner(address=cluster.scheduler_address, performance_report_path=str(report)))
    def reported():
        return double.map(range(4)).result()

    assert reported() == [0, 2, 4, 6]
    assert report.exists() and "Dask Performance Report" in report.read_text()


def test_a_given_cluster_object_is_used_and_left_running(cluster):
    @flow(task_runner=DaskTaskRunner(cluster=cluster))
    def given():
        return double.submit(3).result()

    assert given() == 6
    assert cluster.status.name == "running"


@pytest.fixture(scope="module")
def scheduler_processes():
    """`dask scheduler` and a `dask worker` on 127.0.0.1, in a process group of their own
    (killed as a group at the end)."""
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    dask_cli = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    scheduler = subprocess.Popen(
        [*dask_cli, "--host", "127.0.0.1", "--port", "0", "--dashboard-address", ":0", "--no-show"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        text=True,
    )
    address = None
    deadline = time.monotonic() + 60
    assert scheduler.stdout is not None
    while address is None and time.monotonic() < deadline:
        line = scheduler.stdout.readline()
        match = re.search(r"Scheduler at:\s+(tcp://\S+)", line)
        if match:
            address = match.group(1)
    assert address, "the scheduler did not start"
    threading.Thread(target=scheduler.stdout.read, daemon=True).start()  # keep its pipe drained
    worker = subprocess.Popen(
        [
            *[sys.executable, "-m", "distributed.cli.dask_worker", address],
            *["--nworkers", "1", "--nthreads", "2", "--host", "127.0.0.1", "--no-dashboard"],
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    yield address
    for process in (worker, scheduler):  # each leads a process group of its own
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=30)
    _assert_nothing_left(before)


def test_address_connects_to_a_running_scheduler(scheduler_processes):
    @flow(task_runner=DaskTaskRunner(address=scheduler_processes))
    def remote():
        with_client = get_dask_client_address.submit().result()
        return double.map([1, 2, 3]).result(), with_client

    values, client_address = remote()
    assert values == [2, 4, 6]
    assert client_address == scheduler_processes


@task
def get_dask_client_address():
    """get_dask_client in a task run on a worker: a client of that worker's scheduler."""
    with get_dask_client() as client:
        return client.scheduler.address


def _flow_in_a_worker():
    @flow(task_runner=DaskTaskRunner())
    def inside():
        return double.submit(21).result()

    return inside()


def test_inside_a_dask_worker_the_runner_uses_its_client(cluster):
    with distributed.Client(cluster, set_as_default=False) as client:
        assert client.submit(_flow_in_a_worker, pure=False).result(timeout=60) == 42


# -- the seeds' Dask examples -----------------------------------------------------------------------


def _ok(proc):
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_seed_000_dask_runs_both_tasks_on_the_cluster(run_example):
    proc = _ok(run_example("seed_000_dask", time_scale=0.1, timeout=90))
    assert "AAAA" in proc.stdout and "BBBB" in proc.stdout
    assert re.search(r"Task run 'print_values-0' - Finished in state Completed\(\)", proc.stderr)
    assert re.search(r"Task run 'print_values-1' - Finished in state Completed\(\)", proc.stderr)


def test_seed_001_dask_executor_runs(run_example):
    proc = _ok(run_example("seed_001_dask_executor", time_scale=0.1, timeout=90))
    assert "AAAA" in proc.stdout and "BBBB" in proc.stdout
    assert "DeprecationWarning" not in proc.stdout  # (warnings go to stderr, where users see them)


def test_seed_002_dask_named_task_and_flow(run_example):
    proc = _ok(run_example("seed_002_dask", time_scale=0.1, timeout=90))
    assert re.search(r"Task run 'Dask Task-0' - Finished in state Completed\(\)", proc.stderr)
    assert re.search(r"Task run 'Dask Task-1' - Finished in state Completed\(\)", proc.stderr)
    assert "Dask Flow" in proc.stderr


def test_seed_003_dask_subflow_in_a_thread_pool_parent(run_example):
    proc = _ok(run_example("seed_003_dask_nested", time_scale=0.1, timeout=90))
    assert "Hello marvin!" in proc.stdout and "Hello ford!" in proc.stdout
    assert "Hello from Dask!" in proc.stdout
    assert re.search(r"Task run 'hello_dask-0' - Finished in state Completed\(\)", proc.stderr)
