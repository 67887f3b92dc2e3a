"""Smoke tests of `ferroflow bench` (`python -m ferroflow bench`): tiny sizes, one or two
rounds, concurrent.futures as the only peer so that the tests take seconds whatever
else is installed. What is checked is the command's contract: the report's shape, the
options, the errors, and that nothing hangs; not the numbers."""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PEER = "concurrent.futures"


def bench(*args: str, timeout: float = 50) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ferroflow", "bench", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def bench_json(*args: str) -> dict:
    done = bench(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_every_workload_gives_the_right_answer_on_every_system():
    report = bench_json("--sizes", "20", "--rounds", "1", "--import-repeats", "0", "--peers", PEER)
    assert {run["status"] for run in report["runs"]} == {"ok"}, [r for r in report["runs"] if r["status"] != "ok"]
    by_system = {(c["workload"], c["system"]): c for c in report["summary"]}
    assert by_system["many_flows", PEER]["status"] == "n/a"
    assert by_system["sleep_fanout", "bare loop"]["status"] == "n/a"
    assert 0 < by_system["sleep_fanout", "ferroflow"]["efficiency"] <= 1
    assert by_system["chain", "ferroflow"]["ratio_to_ferroflow"] == 1


def test_json_has_every_measurement_medians_and_the_environment():
    report = bench_json(
        "--only", "trivial_map,chain", "--sizes", "1e2", "--rounds", "2", "--import-repeats", "1", "--peers", PEER
    )
    assert set(report) >= {
        "environment",
        "settings",
        "systems",
        "workloads",
        "import_seconds",
        "runs",
        "summary",
        "total_seconds",
    }
    environment = report["environment"]
    assert environment["cpu_count"] >= 1 and environment["python"]
    assert environment["versions"]["ferroflow"] and environment["child_env"]["FERROFLOW_LOGGING_LEVEL"] == "WARNING"
    assert {s["name"] for s in report["systems"]} == {"bare loop", "ferroflow", PEER}
    assert {run["workload"] for run in report["runs"]} == {"trivial_map", "chain"}
    assert len(report["runs"]) == 2 * 3 * 2  # workloads x systems x rounds
    assert report["settings"]["sizes"] == {"trivial_map": [100], "chain": [100]}
    assert set(report["import_seconds"]) == {"ferroflow", "concurrent.futures"}
    for cell in report["summary"]:
        assert cell["status"] == "ok" and cell["rounds"] == 2
        assert cell["us_per_task"] > 0 and cell["ratio_to_bare"] > 0 and cell["max_threads"] >= 1
        assert isinstance(cell["rss_bytes_per_task"], float)


def test_table_progress_total_and_json_file(tmp_path):
    path = tmp_path / "report.json"
    done = bench(
        "--only",
        "fan_in",
        "--sizes",
        "50",
        "--rounds",
        "1",
        "--import-repeats",
        "1",
        "--peers",
        PEER,
        "--json",
        str(path),
    )
    assert done.returncode == 0, done.stderr
    assert {cell["system"] for cell in json.loads(path.read_text())["summary"]} == {"bare loop", "ferroflow", PEER}
    table = done.stdout
    for text in (
        "µs/task",
        "× bare",
        "B/task",
        "threads",
        "× ferroflow",
        "FERROFLOW_LOGGING_LEVEL=WARNING",
        "import time",
    ):
        assert text in table
    lines = table.splitlines()
    rule = next(i for i, line in enumerate(lines) if set(line) == {"-"})
    rows = lines[rule + 1 : lines.index("", rule)]
    assert [row.split()[0] for row in rows] == ["fan_in", "ferroflow", PEER], table
    assert table.rstrip().splitlines()[-1].startswith("total ")
    assert "fan_in N=50 round 1/1 ferroflow" in done.stderr


def test_peers_not_installed_are_listed_as_such():
    missing = [
        peer
        for peer, module in (("dask", "distributed"), ("ray", "ray"), ("prefect", "prefect"))
        if importlib.util.find_spec(module) is None
    ]
    if not missing:
        pytest.skip("every peer is installed here")
    # Only the missing ones are asked for: an installed peer would start its cluster.
    done = bench(
        "--only", "chain", "--sizes", "10", "--rounds", "1", "--import-repeats", "0", "--peers", ",".join(missing)
    )
    assert done.returncode == 0, done.stderr
    for peer in missing:
        assert any(line.split() == [peer, "not", "installed"] for line in done.stdout.splitlines()), done.stdout


def test_no_peers_runs_ferroflow_and_the_bare_loop():
    report = bench_json(
        "--only", "many_flows", "--sizes", "10", "--rounds", "1", "--import-repeats", "0", "--peers", ""
    )
    assert {run["system"] for run in report["runs"]} == {"bare loop", "ferroflow"}


def test_a_system_too_slow_at_one_size_is_skipped_at_the_larger_ones():
    report = bench_json(
        "--only",
        "trivial_map",
        "--sizes",
        "10,100",
        "--rounds",
        "1",
        "--import-repeats",
        "0",
        "--peers",
        "",
        "--max-seconds",
        "1e-9",
    )
    larger = [c for c in report["summary"] if c["size"] == 100]
    assert larger and all(c["status"] == "skipped" and c["note"].startswith("skipped (too slow: ") for c in larger)
    assert {run["size"] for run in report["runs"]} == {10}


def test_a_run_past_its_timeout_is_reported_and_not_repeated():
    done = bench(
        "--only",
        "trivial_map",
        "--sizes",
        "10",
        "--rounds",
        "3",
        "--import-repeats",
        "0",
        "--peers",
        "",
        "--timeout",
        "0.001",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("timed out after 0.001 s") == 2  # bare loop and ferroflow, once each


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only", "trivial_map,nope"], "unknown workload 'nope'"),
        (["--peers", "celery"], "unknown peer 'celery'"),
        (["--sizes", "1e4,lots"], "not a size: 'lots'"),
        (["--sizes", "0.5"], "positive whole number"),
        (["--rounds", "0"], "--rounds"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args, message):
    done = bench(*args)
    assert done.returncode == 2
    assert message in done.stderr


def test_no_subcommand_exits_2_with_usage():
    done = subprocess.run([sys.executable, "-m", "ferroflow"], check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "usage: ferroflow" in done.stderr and "{bench}" in done.stderr


def test_each_workload_table_is_printed_as_soon_as_it_is_measured():
    # stdout and stderr into one pipe, in the order written: the first workload's rows
    # must come before the second workload's first progress line.
    done = subprocess.run(
        [sys.executable, "-m", "ferroflow", "bench", "--only", "trivial_map,chain", "--sizes", "20",
         "--rounds", "1", "--import-repeats", "0", "--peers", ""],
        check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    first_row = next(i for i, line in enumerate(lines) if line.split()[:2] == ["trivial_map", "20"])
    second_started = next(i for i, line in enumerate(lines) if "chain N=20 round 1/1" in line)
    second_row = next(i for i, line in enumerate(lines) if line.split()[:2] == ["chain", "20"])
    assert first_row < second_started < second_row, done.stdout
    assert lines.index("systems:") < first_row  # the header before anything is measured
    assert any(line.startswith("total ") for line in lines[second_row:]), done.stdout


def test_every_workload_measured_at_several_sizes_gets_a_plot_panel():
    from ferroflow.bench.plot import plotted_workloads
    from ferroflow.bench.results import Cell

    def cell(workload: str, size: int, system: str, status: str = "ok") -> Cell:
        return Cell(workload, size, system, status, us_per_task=1.0 if status == "ok" else None)

    cells = [
        cell("trivial_map", 10, "bare loop"),
        cell("trivial_map", 100, "bare loop"),
        cell("chain", 10, "ferroflow"),  # one size only: no panel
        cell("fan_in", 10, "ferroflow"),
        cell("fan_in", 100, "dask"),  # sizes measured by different systems still count
        cell("many_flows", 10, "ferroflow"),
        cell("many_flows", 100, "ferroflow", status="failed"),  # a failed size is not a measurement
    ]
    assert plotted_workloads(cells) == ["trivial_map", "fan_in"]


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bench.png"
    done = bench(
        "--only", "trivial_map", "--sizes", "10,100", "--rounds", "1", "--import-repeats", "0", "--peers", "",
        "--plot", str(path),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert path.stat().st_size > 0


def test_plot_without_matplotlib_fails_before_measuring(tmp_path):
    hidden = tmp_path / "hidden" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    path = tmp_path / "bench.png"
    done = subprocess.run(
        [sys.executable, "-m", "ferroflow", "bench", "--only", "trivial_map", "--peers", "", "--plot", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=50,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(hidden.parent)},
    )
    assert done.returncode == 2, done.stderr
    assert "--plot needs matplotlib" in done.stderr and "pip install" in done.stderr
    assert "round" not in done.stderr, "nothing was measured"
    assert not path.exists()


def test_import_ferroflow_does_not_load_the_command():
    code = (
        "import ferroflow, sys; "
        "print([m for m in sys.modules if m.startswith(('ferroflow.bench', 'ferroflow.__main__'))])"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=30)
    assert done.stdout.strip() == "[]", done.stderr


def test_console_script_entry_point_names_main():
    tomllib = pytest.importorskip("tomllib")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["ferroflow"].partition(":")
    assert callable(getattr(importlib.import_module(module), function))


def test_a_wrong_answer_is_an_error_not_a_timing():
    from ferroflow.bench.child import wrong_result

    assert wrong_result([1, 2, 3], [1, 2, 3]) is None
    assert wrong_result([1, 5, 3], [1, 2, 3]) == "wrong result: item 1 is 5, expected 2"
    assert wrong_result([1, 2], [1, 2, 3]) == "wrong result: 2 items instead of 3"
    assert wrong_result(7, 6) == "wrong result: 7, expected 6"


def test_a_failing_run_is_reported_with_its_error():
    from ferroflow.bench.measure import run_child

    run = run_child("no_such_workload", 10, "bare loop", 1, timeout=30)
    assert run.status == "failed" and run.seconds is None
    assert run.detail.startswith("failed (exit 1): KeyError") and "Traceback" in run.stderr


def test_import_times_load_compiled_bytecode_from_a_cache_of_their_own(monkeypatch):
    """Under PYTHONDONTWRITEBYTECODE an editable install is recompiled by every import:
    the measurement first writes bytecode into its own cache, then times loading it."""
    from ferroflow.bench import measure

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    runs: list[tuple[str, dict[str, str]]] = []

    def run(command, *, env, **_kwargs):
        runs.append((command[-1], env))
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(measure.subprocess, "run", run)
    seconds = measure.import_seconds(["json"], repeats=2)
    assert set(seconds) == {"json"}
    assert [code for code, _env in runs] == ["pass", "import json"] * 3
    caches = {env["PYTHONPYCACHEPREFIX"] for _code, env in runs}
    assert len(caches) == 1, "every run shares one bytecode cache"
    assert not any("PYTHONDONTWRITEBYTECODE" in env for _code, env in runs), "the first runs write it"
    assert not Path(caches.pop()).exists(), "the cache is removed afterwards"
