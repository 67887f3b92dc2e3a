"""Seed 002 (In [5]): a flow and a task configured with a name, a description,
retries and a retry delay.

Prints ``Task1``. On stderr the flow run begins "for flow 'My Example Flow'" and the
task run is named ``My Example Task-0``; both finish in state Completed(). The task
never fails, so the 60 s retry delay is never used.
"""
from ferroflow import flow, task

@task(name="My Example Task", 
      description="An example task for a tutorial.",
      retries=5,
      retry_delay_seconds=60)
def my_task():
    print("Task1")

@flow(name="My Example Flow", 
      description="An example flow for a tutorial.")
def my_flow():
    my_task()

if __name__ == "__main__":
    my_flow()
