"""Seed 002 (In [1]..[4]): a flow calling a task that fetches a cat fact over HTTP.

Needs the network (https://catfact.ninja/fact) and the ``requests`` package.
Prints the HTTP status code, ``200``, then the returned JSON as a dict, e.g.
``{'fact': "A cat's smell is their strongest sense, ...", 'length': 163}``.
"""
import requests
from ferroflow import flow, task
import time

@task
def call_api(url):
    response = requests.get(url)
    print(response.status_code)
    return response.json()

@flow
def api_flow(url):
    fact_json = call_api(url)
    return fact_json

if __name__ == "__main__":
    print(api_flow("https://catfact.ninja/fact"))
