"""Seed 002 (In [6]): two tasks submitted to the default (concurrent) task runner.

Prints "AAAA" 15 times and "BBBB" 10 times, each followed by "\\r", interleaved
(both tasks print every 0.5 s; BBBB is done after about 5 s, AAAA after about 7.5 s,
so the terminal ends on AAAA, as in the seed).
"""
from ferroflow import flow, task
import time

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
