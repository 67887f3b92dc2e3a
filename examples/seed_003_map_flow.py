"""Seed 003 ("Mapping over iterables"): ``.map`` submits one run per element, and
the future list passed to a direct task call arrives as a list of values.

Prints 1 2 3 5 8 13, then 1 4 9 25 64 169, one number per line.
"""
from ferroflow import flow, task

@task
def print_nums(nums):
    for n in nums:
        print(n)

@task
def square_num(num):
    return num**2

@flow
def map_flow(nums):
    print_nums(nums)
    squared_nums = square_num.map(nums) 
    print_nums(squared_nums)

if __name__ == "__main__":
    map_flow([1,2,3,5,8,13])
