"""A forked child must not inherit a dead pool: its runs execute on fresh threads."""

import os
import signal

import pytest

from ferroflow import flow, task


@task
def double(x):
    return 2 * x


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_tasks_on_new_threads():
    # The parent has started worker threads (default runner, outside any flow).
    assert double.submit(1).result() == 2
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: use the default runner and a flow, then report
        signal.alarm(20)  # a hang in the child ends it (the parent then sees no report)
        try:
            outside = double.submit(20).result(timeout=10)

            @flow
            def in_child():
                return double.map([1, 2, 3]).result(timeout=10)

            os.write(write, f"{outside} {in_child()}".encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        reported = pipe.read()
    os.waitpid(pid, 0)
    assert reported == "40 [2, 4, 6]", reported

