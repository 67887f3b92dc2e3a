"""Seed 003: a non-iterable argument to ``.map`` is passed whole to every run.

Prints nothing; the ``assert resulting_sum == [6, 7, 8]`` must hold (exit code 0).
"""
from ferroflow import flow, task

@task
def add_together(x, y):
    return x + y

@flow
def sum_it(numbers, static_value):
    futures = add_together.map(numbers, static_value)
    return futures.result()

if __name__ == "__main__":
    resulting_sum = sum_it([1, 2, 3], 5)
    assert resulting_sum == [6, 7, 8]
