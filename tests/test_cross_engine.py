"""Waits across engines (issue 7, item 5): a task of a subflow that waits on a run its
parent flow has queued must not deadlock, even when the parent's only worker is busy
running the task that called the subflow (max_workers=1). That worker waits inside the
subflow's engine, so the parent's pool counts as stuck and the waiter runs the queued
run itself."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import time
    from ferroflow import flow, task
    from ferroflow.task_runners import ThreadPoolTaskRunner

    parent_futures = {}

    @task
    def queued():
        return 5

    @task
    def waits_on_the_parent():
        return parent_futures["queued"].result() + 1

    @flow
    def sub():
        return waits_on_the_parent.submit().result()

    @task
    def outer():
        # The parent's only worker runs this; the parent's next run stays queued.
        while "queued" not in parent_futures:
            time.sleep(0.005)
        return sub()

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def parent():
        running = outer.submit()
        parent_futures["queued"] = queued.submit()
        return running.result()

    print(parent(), flush=True)
    """
)


@pytest.mark.timeout(60)
def test_a_subflow_task_waiting_on_a_queued_run_of_its_parent_does_not_deadlock():
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("deadlocked: the queued parent run never ran")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "6", proc.stdout
