"""`ferroflow bench`: ferroflow side by side with the bare Python loop and its peers.

Nothing here is imported by `import ferroflow` (its import must stay fast); the command
line (`python -m ferroflow bench`) loads it. The modules, each with one job:

- `workloads`: what each workload computes, its sizes and its right answer;
- `systems`: who runs them (the bare loop, ferroflow, concurrent.futures, Dask, Ray,
  Prefect), whether each is installed, and how it is configured;
- `implementations/`: each workload written idiomatically for each system;
- `child`: one measurement, in a fresh interpreter;
- `measure`: starting that interpreter with a hard timeout, and timing imports;
- `runner`: the schedule (interleaved rounds, skipping systems too slow to go on);
- `results`: medians and ratios; `table`, `plot`: presenting them; `cli`: the command.

The modules use relative imports only: a child loads this package under another name so
that measuring a peer never imports ferroflow (see `measure`).
"""
