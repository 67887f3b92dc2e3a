"""Seed 000, "Parallel execution" (In [4]): the two tasks on a DaskTaskRunner (a
temporary local Dask cluster of worker processes) run at the same time.

Prints "AAAA" 15 times and "BBBB" 10 times, each followed by "\\r", interleaved (the
workers print to the same terminal). On stderr: ``Task run 'print_values-0'`` and
``'print_values-1' - Finished in state Completed()``, BBBB's first. Takes about 8 s
plus the cluster's start.
"""
import time
from ferroflow import task, flow
from ferroflow.dask.task_runners import DaskTaskRunner

@task
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")

@flow(task_runner=DaskTaskRunner())
def my_flow():
    print_values.submit(["AAAA"] * 15)
    print_values.submit(["BBBB"] * 10)

if __name__ == "__main__":
    my_flow()
