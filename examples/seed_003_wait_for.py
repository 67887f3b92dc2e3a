"""Seed 003: ``wait_for=[...]`` orders tasks that share no data.

task_c starts after task_a and task_b; task_d (called directly, with
``wait_for=[c]``) runs after task_c. Prints nothing on stdout; on stderr task runs
task_a-0, task_b-0, task_c-0 and task_d-0 finish in state Completed().
"""
from ferroflow import flow, task

@task
def task_a():
    pass

@task
def task_b():
    pass

@task
def task_c():
    pass
    
@task
def task_d():
    pass

@flow
def my_flow():
    a = task_a.submit()
    b = task_b.submit()
    # Wait for task_a and task_b to complete
    c = task_c.submit(wait_for=[a, b])
    # task_d will wait for task_c to complete
    # Note: If waiting for one task it must still be in a list.
    d = task_d(wait_for=[c])

if __name__ == "__main__":
    my_flow()
