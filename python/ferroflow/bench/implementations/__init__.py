"""Each workload written idiomatically for one system.

A module exposes session factories: `session(workers)` returns a context manager that
starts whatever the system needs (outside the timing) and yields an object with a
method per workload (`trivial_map(n)`, `chain(n)`, ...) returning the workload's result.
`workers` is the workload's required concurrency, None for the system's default. A
workload a system has no idiom for is simply absent (see `System.not_applicable`).
"""
