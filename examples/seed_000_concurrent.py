"""Seed 000, "Concurrent execution" (In [2]): two tasks submitted to the default
(thread pool) task runner run at the same time.

Prints "AAAA" 15 times and "BBBB" 10 times, each followed by "\\r", interleaved:
both tasks print every 0.5 s, so BBBB finishes after about 5 s while AAAA goes on
until about 7.5 s (the terminal shows the line switching, ending on AAAA).
On stderr: ``Task run 'print_values-1' - Finished in state Completed()`` (BBBB),
then the same for ``print_values-0`` (AAAA).
"""
import time
from ferroflow import task, flow

@task
def print_values(values):
    for value in values:
        time.sleep(0.5)
        print(value, end="\r")

@flow
def my_flow():
    print_values.submit(["AAAA"] * 15)
    print_values.submit(["BBBB"] * 10)

if __name__ == "__main__":
    my_flow()
