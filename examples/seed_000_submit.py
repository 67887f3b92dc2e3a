"""Seed 000, "Task runners" (In [1]): submit one task to the default task runner.

Prints nothing on stdout. On stderr the flow logs
``Task run 'my_task-0' - Finished in state Completed()`` and the flow ends
``Finished in state Completed()``.
"""
import time
from ferroflow import task, flow

@task
def my_task():
    return 1

@flow
def my_flow():
    result = my_task.submit()

if __name__ == "__main__":
    my_flow()
