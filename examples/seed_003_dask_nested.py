"""Seed 003, "Using multiple task runners": a parent flow on the default thread pool
calls a subflow whose two tasks run on threads, then a subflow on DaskTaskRunner.

Prints "Hello marvin!" and "Hello ford!" (about 2 s), then "Hello from Dask!" (from a
Dask worker). On stderr, each subflow's and task run's ``Finished in state
Completed()``.
"""
from ferroflow import flow, task
from ferroflow.task_runners import ThreadPoolTaskRunner
from ferroflow.dask.task_runners import DaskTaskRunner
import time


@task
def hello_local(name: str):
    time.sleep(2)
    print(f"Hello {name}!")


@flow # implicitly uses the default task runner, ThreadPoolTaskRunner
def concurrent_nested_flow():
    marvin = hello_local.submit("marvin")
    ford = hello_local.submit("ford")
    marvin.wait(), ford.wait()


@task
def hello_dask():
    print("Hello from Dask!")


@flow(task_runner=DaskTaskRunner())
def dask_nested_flow():
    hello_dask.submit().wait()


@flow # implicitly uses the default task runner, ThreadPoolTaskRunner
def parent_flow():
    concurrent_nested_flow()
    dask_nested_flow()


if __name__ == "__main__":
    parent_flow()
