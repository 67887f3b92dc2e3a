"""Every sync seed example runs with exit code 0 and prints what its seed says."""
from __future__ import annotations

import re

import pytest

from run_lines import FLOW_BEGIN, task_done

FLOW_DONE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3} \| INFO    \| Flow run '[^']+' - Finished in state Completed\(\)$",
    re.M,
)


def ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def tokens(stdout: str) -> list[str]:
    """The values printed with ``end="\r"``, in print order (sequential prints)."""
    assert stdout.endswith("\r"), repr(stdout[-50:])
    return stdout[:-1].split("\r")


def words(stdout: str) -> list[str]:
    """The AAAA/BBBB values in print order. Concurrent threads may interleave the two
    writes of one print (the value, then "\r"), so split on the words themselves."""
    assert stdout.count("\r") == 25, repr(stdout)
    return re.findall(r"AAAA|BBBB", stdout)


def assert_interleaved(toks: list[str]) -> None:
    assert toks.count("AAAA") == 15 and toks.count("BBBB") == 10, toks
    first_a, last_a = toks.index("AAAA"), len(toks) - 1 - toks[::-1].index("AAAA")
    first_b, last_b = toks.index("BBBB"), len(toks) - 1 - toks[::-1].index("BBBB")
    # Run one after the other, one of these would fail: they ran at the same time.
    assert first_a < last_b and first_b < last_a, toks
    # BBBB (10 values) is done about 2.5 s before AAAA (15 values).
    assert toks[-1] == "AAAA", toks


# seed 000 ------------------------------------------------------------------------


def test_seed_000_submit_completes_the_submitted_task(run_example):
    proc = ok(run_example("seed_000_submit"))
    assert proc.stdout == ""
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "my-flow"
    assert task_done("my_task-0").search(proc.stderr), proc.stderr
    assert FLOW_DONE.search(proc.stderr), proc.stderr


@pytest.mark.slow
def test_seed_000_concurrent_tasks_interleave(run_example):
    proc = ok(run_example("seed_000_concurrent", time_scale=0.2))
    assert_interleaved(words(proc.stdout))
    done_b = task_done("print_values-1").search(proc.stderr)
    done_a = task_done("print_values-0").search(proc.stderr)
    assert done_a and done_b, proc.stderr
    assert done_b.start() < done_a.start(), "BBBB finishes first, as in the seed"
    assert FLOW_DONE.search(proc.stderr), proc.stderr


def test_seed_000_sequential_runs_aaaa_then_bbbb(run_example):
    # The seed code sleeps 0.5 s per value (12.5 s in all); run it on a 10x clock.
    proc = ok(run_example("seed_000_sequential", time_scale=0.1))
    assert tokens(proc.stdout) == ["AAAA"] * 15 + ["BBBB"] * 10
    assert task_done("print_values-0").search(proc.stderr), proc.stderr
    assert task_done("print_values-1").search(proc.stderr), proc.stderr


# seed 002 ------------------------------------------------------------------------

FAKE_REQUESTS = """
import requests

class _FakeResponse:
    status_code = 200
    def json(self):
        return {"fact": "Cats sleep 70% of their lives.", "length": 30}

def _fake_get(url, *args, **kwargs):
    assert url == "https://catfact.ninja/fact", url
    return _FakeResponse()

requests.get = _fake_get
"""


def test_seed_002_api_flow_prints_status_and_fact(run_example):
    pytest.importorskip("requests")
    # No network in tests: requests.get is replaced before the example runs.
    proc = ok(run_example("seed_002_api_flow", prelude=FAKE_REQUESTS))
    assert proc.stdout == "200\n{'fact': 'Cats sleep 70% of their lives.', 'length': 30}\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "api-flow"
    assert task_done("call_api-0").search(proc.stderr), proc.stderr


def test_seed_002_configured_names_appear_in_logs(run_example):
    proc = ok(run_example("seed_002_configured"))
    assert proc.stdout == "Task1\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "My Example Flow"
    assert task_done("My Example Task-0").search(proc.stderr), proc.stderr
    assert "Retry" not in proc.stderr


@pytest.mark.slow
def test_seed_002_concurrent_tasks_interleave(run_example):
    proc = ok(run_example("seed_002_concurrent", time_scale=0.2))
    assert_interleaved(words(proc.stdout))


def test_seed_002_sequential_runs_named_tasks_in_order(run_example):
    proc = ok(run_example("seed_002_sequential", time_scale=0.1))
    assert tokens(proc.stdout) == ["AAAA"] * 15 + ["BBBB"] * 10
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "Sequential Flow"
    assert task_done("Sequential Task-0").search(proc.stderr), proc.stderr
    assert task_done("Sequential Task-1").search(proc.stderr), proc.stderr


# seed 003 ------------------------------------------------------------------------


def test_seed_003_elevator_moves_at_most_three_at_a_time(run_example):
    # The seed sleeps `floor` seconds (about 19 s in all); run it on a 20x clock.
    proc = ok(run_example("seed_003_elevator", time_scale=0.05))
    # Three threads print at once, and a print's text and its "\n" are two writes
    # that other threads may come between: find the messages themselves.
    assert proc.stdout.count("\n") == 20, proc.stdout
    lines = re.findall(r"elevator (?:moving to|stops on) floor \d+", proc.stdout)
    expected = [f"elevator moving to floor {f}" for f in range(10, 0, -1)] + [
        f"elevator stops on floor {f}" for f in range(10, 0, -1)
    ]
    assert sorted(lines) == sorted(expected)
    moving = [int(line.rsplit(" ", 1)[1]) for line in lines if "moving" in line]
    assert set(moving[:3]) == {10, 9, 8}, moving
    in_flight, started = 0, set()
    for line in lines:
        floor = int(line.rsplit(" ", 1)[1])
        if "moving" in line:
            in_flight += 1
            started.add(floor)
            assert in_flight <= 3, lines
        else:
            assert floor in started, lines
            in_flight -= 1
    for n in range(10):
        assert task_done(f"stop_at_floor-{n}").search(proc.stderr), proc.stderr


def test_seed_003_hello_world_passes_the_value_not_the_future(run_example):
    proc = ok(run_example("seed_003_hello_world"))
    assert proc.stdout == "<class 'str'>\nHello Marvin!\n"
    assert FLOW_BEGIN.search(proc.stderr).group("flow") == "hello-flow"


def test_seed_003_result_prints_42(run_example):
    proc = ok(run_example("seed_003_result"))
    assert proc.stdout == "42\n"


def test_seed_003_raise_on_failure_false_completes(run_example):
    proc = ok(run_example("seed_003_raise_on_failure"))
    assert proc.stdout == ""
    assert task_done("my_task-0").search(proc.stderr), proc.stderr
    assert FLOW_DONE.search(proc.stderr), proc.stderr


def test_seed_003_wait_for_runs_all_four_tasks(run_example):
    proc = ok(run_example("seed_003_wait_for"))
    assert proc.stdout == ""
    for name in ("task_a-0", "task_b-0", "task_c-0", "task_d-0"):
        assert task_done(name).search(proc.stderr), proc.stderr
    assert FLOW_DONE.search(proc.stderr), proc.stderr


def test_seed_003_map_flow_prints_numbers_then_squares(run_example):
    proc = ok(run_example("seed_003_map_flow"))
    assert proc.stdout == "".join(f"{n}\n" for n in (1, 2, 3, 5, 8, 13, 1, 4, 9, 25, 64, 169))


def test_seed_003_static_value_assert_holds(run_example):
    proc = ok(run_example("seed_003_static_value"))
    assert proc.stdout == ""
    assert "AssertionError" not in proc.stderr


def test_seed_003_unmapped_assert_holds(run_example):
    proc = ok(run_example("seed_003_unmapped"))
    assert proc.stdout == ""
    assert "AssertionError" not in proc.stderr


# other examples ------------------------------------------------------------------

HUGE_MAP_LINE = re.compile(r"^mapped (?P<count>[\d,]+) task runs in \d+\.\d\d s \(\d+\.\d\d µs per run\)\n\Z")


def test_huge_map_small_n(run_example, log_lines):
    proc = ok(run_example("huge_map", args=["10000"]))
    match = HUGE_MAP_LINE.match(proc.stdout)
    assert match, proc.stdout
    assert match.group("count") == "10,000"
    assert len(log_lines(proc.stderr)) < 20, proc.stderr


@pytest.mark.slow
def test_huge_map_default_million(run_example, log_lines):
    proc = ok(run_example("huge_map"))
    match = HUGE_MAP_LINE.match(proc.stdout)
    assert match, proc.stdout
    assert match.group("count") == "1,000,000"
    assert len(log_lines(proc.stderr)) < 20, proc.stderr


def test_every_example_is_tested():
    """A new example file must get a test, here or in another test module (the async
    examples are run by test_async_examples.py)."""
    import pathlib

    here = pathlib.Path(__file__).parent
    names = {p.stem for p in (here.parent / "examples").glob("*.py")}
    source = "\n".join(p.read_text() for p in sorted(here.glob("test_*.py")))
    untested = sorted(n for n in names if f'"{n}"' not in source)
    assert untested == []
