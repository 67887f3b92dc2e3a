"""Seed 001, "Parallel Execution": Prefect 2's early ``executor=DaskExecutor()``, which
ferroflow runs on ``DaskTaskRunner`` (with a DeprecationWarning naming
``task_runner=``). The seed's tasks are called directly, so they run in the flow's
process, one after the other, as a direct call does in Prefect 3.

Prints "AAAA" 15 times, then "BBBB" 10 times, each followed by "\\r". Takes about 12.5 s.
The seed's snippet has no imports of ``flow`` and ``task`` and never calls the flow:
both added (the call under a ``__main__`` guard).
"""
import time
from ferroflow import flow, task
from ferroflow.executors import DaskExecutor

@task
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")

@flow(executor=DaskExecutor())
def parallel_flow():
    print_values(["AAAA"] * 15)
    print_values(["BBBB"] * 10)

if __name__ == "__main__":
    parallel_flow()
