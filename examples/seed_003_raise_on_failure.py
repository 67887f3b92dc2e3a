"""Seed 003: ``future.result(raise_on_failure=False)`` and ``future.state``.

The task succeeds, so the ``else`` branch is taken. Prints nothing on stdout; the
flow finishes in state Completed().
"""
from ferroflow import flow, task

@task
def my_task():
    return "I'm a task!"


@flow
def my_flow():
    future = my_task.submit()
    result = future.result(raise_on_failure=False)
    if future.state.is_failed():
        # `result` is an exception! handle accordingly
        ...
    else:
        # `result` is the expected return value of our task
        ...

if __name__ == "__main__":
    my_flow()
