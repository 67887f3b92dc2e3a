"""Every async seed example runs with exit code 0 and prints what its seed says.

The seeds sleep 1 s per step; the examples run unchanged on a 5x clock
(``run_example(time_scale=STEP)`` scales ``time.sleep`` and ``asyncio.sleep``). Where a
seed says its runs are concurrent, the flow run's own log lines show it: from
``Beginning flow run`` to ``Finished in state`` takes less than halfway from the time the
steps take concurrently to the time they take one after the other.
"""

from __future__ import annotations

import datetime
import re

from run_lines import FLOW_BEGIN, task_done

FLOW_DONE = re.compile(
    r"^(?P<ts>\d\d:\d\d:\d\d\.\d{3}) \| INFO    \| Flow run '[^']+' - "
    r"Finished in state Completed\((?:'All states completed\.')?\)$",
    re.MULTILINE,
)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "WARNING" not in proc.stderr and "ERROR" not in proc.stderr, proc.stderr
    return proc


def flow_seconds(stderr: str, flow: str) -> float:
    """How long the (only) run of ``flow`` took, from its own begin and end log lines."""
    begins = [m for m in FLOW_BEGIN.finditer(stderr) if m.group("flow") == flow]
    assert len(begins) == 1, stderr
    done = FLOW_DONE.search(stderr, begins[0].end())
    assert done, stderr

    def at(ts: str) -> datetime.datetime:
        return datetime.datetime.strptime(ts, "%H:%M:%S.%f")

    seconds = (at(done.group("ts")) - at(begins[0].group("ts"))).total_seconds()
    return seconds + 86400 if seconds < 0 else seconds  # past midnight


#: A seed's 1 s step, on the clock the examples run on. Not faster: a flow run's own
#: start and end on a loaded machine must stay small beside the margins below (a step
#: of 0.1 s once left a 5-run flow 0.033 s over its bound, with the machine busy).
STEP = 0.2


def halfway(concurrent_steps: float, sequential_steps: float) -> float:
    """Seconds halfway from the steps' time run concurrently to one after the other."""
    return STEP * (concurrent_steps + sequential_steps) / 2


def completed_states(values: list[int]) -> str:
    return "[" + ", ".join(f"Completed(message=None, type=COMPLETED, result={v})" for v in values) + "]"


# seeds 000 and 001: async_flow ------------------------------------------------------


def test_seed_000_async_flow_gathered_calls_take_turns(run_example):
    # 2 + 4 values, one step each.
    proc = ok(run_example("seed_000_async_flow", time_scale=STEP))
    # "1 2" from the awaited call, then the two gathered calls alternate (a before 6:
    # it started first), exactly as the seed shows.
    assert proc.stdout == "1 2 a 6 b 7 c 8 d 9 "
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "async-flow"
    for name in ("print_values-0", "print_values-1", "print_values-2"):
        assert task_done(name).search(proc.stderr), proc.stderr
    # Run one after the other, the two 4-value calls would take 8 steps; gathered, 4.
    assert flow_seconds(proc.stderr, "async-flow") < halfway(2 + 4, 2 + 4 + 4), proc.stderr


def test_seed_001_async_flow_prints_what_the_seed_shows(run_example):
    proc = ok(run_example("seed_001_async_flow", time_scale=STEP))
    assert proc.stdout == "1 2 a 6 b 7 c 8 d 9 "
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "async-flow"
    assert task_done("print_values-2").search(proc.stderr), proc.stderr


# seed 004 -----------------------------------------------------------------------------


def test_seed_004_parallel_flow_gathers_submitted_futures(run_example):
    proc = ok(run_example("seed_004_parallel_flow", time_scale=STEP))
    assert proc.stdout == "Results: [2, 4, 6, 8, 10]\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "parallel-flow"
    for n in range(5):
        assert task_done(f"async_task-{n}").search(proc.stderr), proc.stderr
    # Five runs of one step: concurrent, one step; one after the other, five.
    assert flow_seconds(proc.stderr, "parallel-flow") < halfway(1, 5), proc.stderr


def test_seed_004_parallel_flow_with_taskgroup(run_example):
    proc = ok(run_example("seed_004_parallel_flow_with_taskgroup", time_scale=STEP))
    assert proc.stdout == "Results: [2, 4, 6, 8, 10]\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "parallel-flow-with-taskgroup"
    for n in range(5):
        assert task_done(f"async_task-{n}").search(proc.stderr), proc.stderr
    assert flow_seconds(proc.stderr, "parallel-flow-with-taskgroup") < halfway(1, 5), proc.stderr


def test_seed_004_mixed_flow_gathers_sync_and_async_futures(run_example):
    proc = ok(run_example("seed_004_mixed_flow", time_scale=STEP))
    assert proc.stdout == "Sync results: [2, 4, 6]\nAsync results: [3, 6, 9]\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "mixed-flow"
    for n in range(3):
        assert task_done(f"sync_task-{n}").search(proc.stderr), proc.stderr
        assert task_done(f"async_task-{n}").search(proc.stderr), proc.stderr
    # Six runs of one step.
    assert flow_seconds(proc.stderr, "mixed-flow") < halfway(1, 6), proc.stderr


def test_seed_004_sync_mixed_flow_returns_the_states_of_its_futures(run_example):
    proc = ok(run_example("seed_004_sync_mixed_flow", time_scale=STEP))
    # Returned futures come back as their final states (Prefect 3), in submission order.
    assert proc.stdout == completed_states([2, 4, 6, 3, 6, 9]) + "\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "sync-mixed-flow"
    for n in range(3):
        assert task_done(f"async_task-{n}").search(proc.stderr), proc.stderr
    assert flow_seconds(proc.stderr, "sync-mixed-flow") < halfway(1, 6), proc.stderr


def test_seed_004_complex_mixed_flow_task_group(run_example):
    proc = ok(run_example("seed_004_complex_mixed_flow", time_scale=STEP))
    assert proc.stdout == "Sync results: [2, 4, 6]\nAsync results: [3, 6, 9]\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "complex-mixed-flow"
    for n in range(3):
        assert task_done(f"sync_task-{n}").search(proc.stderr), proc.stderr
        assert task_done(f"async_task-{n}").search(proc.stderr), proc.stderr
    assert flow_seconds(proc.stderr, "complex-mixed-flow") < halfway(1, 6), proc.stderr


def test_seed_004_mixed_concurrent_flow_maps_sync_and_async(run_example):
    proc = ok(run_example("seed_004_mixed_concurrent_flow", time_scale=STEP))
    assert proc.stdout == (
        f"Sync results: {completed_states([2, 4, 6, 8, 10])}\nAsync results: {completed_states([3, 6, 9, 12, 15])}\n"
    )
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "mixed-concurrent-flow"
    assert "Mapped task 'sync_task': 5 runs finished in" in proc.stderr
    assert "Mapped task 'async_task': 5 runs finished in" in proc.stderr
    # Ten runs of one step.
    assert flow_seconds(proc.stderr, "mixed-concurrent-flow") < halfway(1, 10), proc.stderr
