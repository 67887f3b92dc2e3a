"""Seed 002, "Dask Task Runner" (In [10]): a named task and flow on DaskTaskRunner.

Prints "AAAA" 15 times and "BBBB" 10 times, each followed by "\\r", interleaved. On
stderr: ``Task run 'Dask Task-0'`` and ``'Dask Task-1' - Finished in state
Completed()``, and the lines of flow "Dask Flow". Takes about 8 s plus the cluster's
start. The seed's cell used ``time``, ``flow`` and ``task`` imported in earlier
cells: those imports are added.
"""
import time
from ferroflow import flow, task
from ferroflow.dask.task_runners import DaskTaskRunner

@task(name="Dask Task")
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")

@flow(name="Dask Flow",
      task_runner=DaskTaskRunner())
def my_flow():
    print_values.submit(["AAAA"] * 15)
    print_values.submit(["BBBB"] * 10)

if __name__ == "__main__":
    my_flow()
