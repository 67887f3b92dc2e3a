"""Ctrl-C during a flow ends it promptly: runs that have not started end Cancelled,
the pool shuts down, and the KeyboardInterrupt reaches the caller."""

import signal
import subprocess
import sys
import textwrap
import time

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from ferroflow import flow, task
    from ferroflow.task_runners import ThreadPoolTaskRunner

    @task
    def nap(i):
        time.sleep(0.2)
        return i

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def sleepy():
        print("started", flush=True)
        return nap.map(range(200)).result()

    try:
        sleepy()
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(3)
    """
)


def test_ctrl_c_cancels_pending_runs_and_propagates():
    process = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.3)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 3, err
    assert "interrupted" in out
    summary = [line for line in err.splitlines() if "Mapped task 'nap': 200 runs finished" in line]
    assert len(summary) == 1, err
    assert "Cancelled" in summary[0]
    assert "Crash detected! Execution was aborted by an interrupt signal." in err
    assert "Finished in state Crashed('Execution was aborted by an interrupt signal.')" in err
    # One line per run that did not complete, capped per map: the terminal is not drowned.
    assert sum("Finished in state Cancelled(" in line for line in err.splitlines()) <= 20
