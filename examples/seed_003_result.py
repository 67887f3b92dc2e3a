"""Seed 003: ``future.result()`` waits for the task and returns its value.

Prints ``42``.
"""
from ferroflow import flow, task

@task
def my_task():
    return 42

@flow
def my_flow():
    future = my_task.submit()
    result = future.result()
    print(result)

if __name__ == "__main__":
    my_flow()
