"""Seed 002 (In [7]): a named task on a named flow with the SequentialTaskRunner.

Prints "AAAA" 15 times, then "BBBB" 10 times, each followed by "\\r" (the terminal
shows AAAA, then BBBB). On stderr the task runs are ``Sequential Task-0`` and
``Sequential Task-1`` of flow 'Sequential Flow'. Takes about 12.5 s.
"""
from ferroflow import flow, task
import time

from ferroflow.task_runners import SequentialTaskRunner

@task(name="Sequential Task")
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")

@flow(name="Sequential Flow",
      task_runner=SequentialTaskRunner())
def my_flow():
    print_values.submit(["AAAA"] * 15)
    print_values.submit(["BBBB"] * 10)

if __name__ == "__main__":
    my_flow()
