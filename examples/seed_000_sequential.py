"""Seed 000, "Sequential execution" (In [3]): the same two tasks on a
SequentialTaskRunner run one after the other, in submission order.

Prints "AAAA" 15 times, then "BBBB" 10 times, each followed by "\\r" (the terminal
shows AAAA, then BBBB). Takes about 12.5 s.
"""
import time
from ferroflow import task, flow
from ferroflow.task_runners import SequentialTaskRunner

@task
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")

@flow(task_runner=SequentialTaskRunner())
def my_flow():
    print_values.submit(["AAAA"] * 15)
    print_values.submit(["BBBB"] * 10)

if __name__ == "__main__":
    my_flow()
