"""Console log lines: Prefect's format, run names, failures, retries, prints, big maps."""
from __future__ import annotations

import re

import pytest

from ferroflow import flow, get_run_logger, task
from ferroflow.exceptions import MissingContextError

TS = r"\d\d:\d\d:\d\d\.\d{3}"


def line(level: str, rest: str) -> re.Pattern:
    """A whole console line: timestamp, padded level, then ``rest`` (a regex)."""
    return re.compile(rf"^{TS} \| {level:<7} \| {rest}$", re.M)


def task_line(level: str, run_name: str, message: str) -> re.Pattern:
    return line(level, rf"Task run {re.escape(repr(run_name))} - {re.escape(message)}")


@task
def inc(x):
    return x + 1


@task
def dec(x):
    return x - 1


# flow and task run lines -------------------------------------------------------------


def test_flow_run_begin_and_finish_lines(capfd):
    @flow
    def log_demo():
        return 1

    log_demo()
    err = capfd.readouterr().err
    begin = line("INFO", r"Flow run '([a-z]+-[a-z]+)' - Beginning flow run '\1' for flow 'log-demo'")
    match = begin.search(err)
    assert match, err
    slug = match.group(1)
    assert line("INFO", rf"Flow run '{slug}' - Finished in state Completed\(\)").search(err), err
    assert err.index("Beginning flow run") < err.index(f"Flow run '{slug}' - Finished")


def test_task_run_lines_are_numbered_per_task_name_in_submission_order(capfd):
    @flow
    def numbered():
        futs = [inc.submit(i) for i in range(3)]
        dec(1)
        return [fut.result() for fut in futs]

    assert numbered() == [1, 2, 3]
    err = capfd.readouterr().err
    for name in ("inc-0", "inc-1", "inc-2", "dec-0"):
        assert task_line("INFO", name, "Finished in state Completed()").search(err), err
    assert "'inc-3'" not in err and "'dec-1'" not in err


def test_submitted_run_names_follow_submission_order(capfd):
    @task
    def echo(x):
        get_run_logger().info(f"got {x}")

    @flow
    def ordered():
        for x in ("a", "b", "c"):
            echo.submit(x)

    ordered()
    err = capfd.readouterr().err
    for n, x in enumerate("abc"):
        assert task_line("INFO", f"echo-{n}", f"got {x}").search(err), err


def test_task_run_numbers_restart_in_each_flow_run(capfd):
    @flow
    def once():
        return inc(1)

    once()
    once()
    err = capfd.readouterr().err
    assert len(task_line("INFO", "inc-0", "Finished in state Completed()").findall(err)) == 2, err
    assert "'inc-1'" not in err


def test_mapped_run_names_follow_the_index(capfd):
    @task
    def tell(x):
        get_run_logger().info(f"item {x}")

    @flow
    def mapped():
        tell.map([10, 20, 30]).wait()

    mapped()
    err = capfd.readouterr().err
    for n, x in enumerate((10, 20, 30)):
        assert task_line("INFO", f"tell-{n}", f"item {x}").search(err), err


# failures and retries ------------------------------------------------------------------


def test_failure_is_logged_at_error_with_traceback(capfd):
    @task
    def explode():
        raise ValueError("boom")

    @flow
    def failing():
        try:
            explode()
        except ValueError:
            pass

    failing()
    err = capfd.readouterr().err
    failed = task_line("ERROR", "explode-0", "Task run failed with exception: ValueError('boom')")
    match = failed.search(err)
    assert match, err
    after = err[match.end():]
    assert "Traceback (most recent call last):" in after
    assert 'raise ValueError("boom")' in after
    finished = task_line(
        "ERROR", "explode-0", "Finished in state Failed('Task run encountered an exception ValueError: boom')"
    )
    assert finished.search(err), err


def test_retry_lines(capfd):
    calls = []

    @task(retries=2)
    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ValueError("boom")
        return "ok"

    @flow
    def retrying():
        return flaky()

    assert retrying() == "ok"
    err = capfd.readouterr().err
    for n in (1, 2):
        msg = f"Task run failed with exception: ValueError('boom') - Retry {n}/2 will start immediately"
        assert task_line("INFO", "flaky-0", msg).search(err), err
    assert task_line("INFO", "flaky-0", "Finished in state Completed()").search(err), err


def test_retry_with_delay_line(capfd):
    calls = []

    @task(retries=1, retry_delay_seconds=0.1)
    def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("x")

    @flow
    def retrying():
        flaky()

    retrying()
    err = capfd.readouterr().err
    msg = "Task run failed with exception: RuntimeError('x') - Retry 1/1 will start 0.1 second(s) from now"
    assert task_line("INFO", "flaky-0", msg).search(err), err


def test_retries_exhausted_line(capfd):
    @task(retries=1)
    def always():
        raise ValueError("boom")

    @flow
    def exhausting():
        always(return_state=True)

    exhausting()
    err = capfd.readouterr().err
    msg = "Task run failed with exception: ValueError('boom') - Retries are exhausted"
    assert task_line("ERROR", "always-0", msg).search(err), err


def test_failed_flow_finish_line_is_info(capfd):
    @flow
    def broken():
        raise KeyError("nope")

    with pytest.raises(KeyError):
        broken()
    err = capfd.readouterr().err
    pattern = line(
        "INFO",
        r"Flow run '[a-z]+-[a-z]+' - "
        + re.escape("Finished in state Failed(\"Flow run encountered an exception: KeyError: 'nope'\")"),
    )
    assert pattern.search(err), err


# get_run_logger -------------------------------------------------------------------------


def test_get_run_logger_in_task_and_flow(capfd):
    @task
    def talker():
        get_run_logger().info("from task")
        get_run_logger().warning("task warning")

    @flow
    def talking():
        get_run_logger().info("from flow")
        talker()

    talking()
    err = capfd.readouterr().err
    assert task_line("INFO", "talker-0", "from task").search(err), err
    assert task_line("WARNING", "talker-0", "task warning").search(err), err
    assert line("INFO", r"Flow run '[a-z]+-[a-z]+' - from flow").search(err), err


def test_get_run_logger_outside_a_run_raises():
    with pytest.raises(MissingContextError, match=r"^There is no active flow or task run context\.$"):
        get_run_logger()


def test_missing_context_error_is_a_runtime_error():
    with pytest.raises(RuntimeError):
        get_run_logger()


# log_prints -------------------------------------------------------------------------------


def test_log_prints_on_flow_logs_flow_and_task_prints(capfd):
    @task
    def chatty():
        print("from task")

    @flow(log_prints=True)
    def printing():
        print("print from flow", 2, 3, [2, 3, 4])
        chatty()

    printing()
    out, err = capfd.readouterr()
    assert "print from flow" not in out and "from task" not in out
    assert line("INFO", r"Flow run '[a-z]+-[a-z]+' - print from flow 2 3 \[2, 3, 4\]").search(err), err
    assert task_line("INFO", "chatty-0", "from task").search(err), err


def test_log_prints_on_task_only(capfd):
    @task(log_prints=True)
    def chatty():
        print("logged print")

    @flow
    def quiet():
        print("flow print")
        chatty()

    quiet()
    out, err = capfd.readouterr()
    assert out == "flow print\n"
    assert task_line("INFO", "chatty-0", "logged print").search(err), err


def test_task_log_prints_false_overrides_flow(capfd):
    @task(log_prints=False)
    def plain():
        print("stays on stdout")

    @flow(log_prints=True)
    def printing():
        plain()

    printing()
    out, err = capfd.readouterr()
    assert out == "stays on stdout\n"
    assert "stays on stdout" not in err


# big maps ----------------------------------------------------------------------------------


def test_big_map_logs_a_summary_not_one_line_per_run(capfd, log_lines):
    @task
    def trivial(x):
        return x

    @flow
    def big():
        return len(trivial.map(range(10_000)).result())

    assert big() == 10_000
    err = capfd.readouterr().err
    lines = log_lines(err)
    assert len(lines) < 20, lines[:40]
    summary = [ln for ln in lines if "trivial" in ln and "10000" in ln and "Completed" in ln]
    assert summary, lines


def test_big_map_logs_each_run_that_did_not_complete(capfd, log_lines):
    @task
    def fragile(x):
        if x in (3, 7):
            raise ValueError(f"bad {x}")
        return x

    @flow
    def mostly_fine():
        fragile.map(range(1000)).wait()

    mostly_fine()
    err = capfd.readouterr().err
    lines = log_lines(err)
    assert len(lines) < 20, lines[:40]
    assert any("'fragile-3'" in ln and "| ERROR   |" in ln for ln in lines), lines
    assert any("'fragile-7'" in ln and "| ERROR   |" in ln for ln in lines), lines
    assert not any("'fragile-4'" in ln for ln in lines), lines
    assert any("fragile" in ln and "998" in ln and "Completed" in ln for ln in lines), lines


# the level ----------------------------------------------------------------------------------

LEVEL_SCRIPT = """
from ferroflow import flow, get_run_logger, task

@task
def t():
    get_run_logger().warning("careful now")
    return 1

@flow
def f():
    get_run_logger().info("info from flow")
    return t()

assert f() == 1
"""


def test_logging_level_env_silences_info(run_script):
    proc = run_script(LEVEL_SCRIPT, env={"FERROFLOW_LOGGING_LEVEL": "WARNING"})
    assert proc.returncode == 0, proc.stderr
    assert "| INFO    |" not in proc.stderr, proc.stderr
    assert task_line("WARNING", "t-0", "careful now").search(proc.stderr), proc.stderr


def test_logging_level_info_shows_info(run_script):
    proc = run_script(LEVEL_SCRIPT, env={"FERROFLOW_LOGGING_LEVEL": "INFO"})
    assert proc.returncode == 0, proc.stderr
    assert line("INFO", r"Flow run '[a-z]+-[a-z]+' - info from flow").search(proc.stderr), proc.stderr
    assert task_line("WARNING", "t-0", "careful now").search(proc.stderr), proc.stderr
