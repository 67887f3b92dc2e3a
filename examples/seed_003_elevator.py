"""Seed 003 ("Configure a task runner"): ten elevator stops on a thread pool of 3.

Prints "elevator moving to floor N" and "elevator stops on floor N" for every floor
from 10 down to 1. Floors 10, 9 and 8 start first; at most three elevators move at
any time; each task sleeps N seconds, so the whole flow takes about 19 s.
"""
from ferroflow import flow, task
from ferroflow.futures import wait
from ferroflow.task_runners import ThreadPoolTaskRunner
import time


@task
def stop_at_floor(floor):
    print(f"elevator moving to floor {floor}")
    time.sleep(floor)
    print(f"elevator stops on floor {floor}")


@flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
def elevator():
    floors = []

    for floor in range(10, 0, -1):
        floors.append(stop_at_floor.submit(floor))

    wait(floors)


if __name__ == "__main__":
    elevator()
