"""Starting measurements in fresh interpreters, and the conditions they run under.

Every run gets its own interpreter, so its peak RSS is its own and nothing warmed up
by an earlier run helps it. The child loads this package under another name
(`_ferroflow_bench`, from its files) instead of importing `ferroflow.bench`: importing
ferroflow costs memory and time that must not count against the bare loop or a peer.
Each child gets a session of its own and a hard timeout; after it ends, whatever it
left running (a peer's helper processes) is killed with its process group.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from .child import RESULT_MARKER
from .results import OK, Run

#: Set in every child: the libraries log warnings only, as the Prefect reference was measured.
CHILD_ENV = {"FERROFLOW_LOGGING_LEVEL": "WARNING", "PREFECT_LOGGING_LEVEL": "WARNING"}

_BOOTSTRAP = """\
import importlib.util, os, sys
init = sys.argv.pop(1)
spec = importlib.util.spec_from_file_location(
    "_ferroflow_bench", init, submodule_search_locations=[os.path.dirname(init)]
)
package = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = package
spec.loader.exec_module(package)
from _ferroflow_bench.child import main
main(sys.argv[1:])
"""

_PACKAGE_INIT = str(Path(__file__).with_name("__init__.py"))

#: How much of a failed child's stderr the report keeps (the traceback's end).
_STDERR_KEPT = 2000


def _child_env() -> dict[str, str]:
    return {**os.environ, **CHILD_ENV}


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def run_child(workload: str, size: int, system: str, round_: int, timeout: float) -> Run:
    """Measures `system` running `workload` at `size` once, in a fresh interpreter.

    Its output goes to files, not pipes: a helper process a peer started could hold a
    pipe open after the child ends, and reading it would hang."""
    command = [sys.executable, "-c", _BOOTSTRAP, _PACKAGE_INIT, system, workload, str(size)]
    measured = functools.partial(Run, workload, size, system, round_)
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, stdout=out, stderr=err, text=True, env=_child_env(), start_new_session=True)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return measured(status="timed out", detail=f"timed out after {timeout:g} s")
        finally:
            _kill_group(process)
            process.wait()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    reports = [line[len(RESULT_MARKER) :] for line in stdout.splitlines() if line.startswith(RESULT_MARKER)]
    if process.returncode < 0:
        name = signal.Signals(-process.returncode).name
        detail = f"crashed ({name}): {_last_line(stderr)}"
        return measured(status="crashed", detail=detail, stderr=stderr[-_STDERR_KEPT:])
    if process.returncode != 0 or not reports:
        detail = f"failed (exit {process.returncode}): {_last_line(stderr)}"
        return measured(status="failed", detail=detail, stderr=stderr[-_STDERR_KEPT:])
    report: dict[str, Any] = json.loads(reports[-1])
    error = report.pop("error")
    return measured(status="wrong result" if error else OK, detail=error, **report)


def _timed_python(code: str, env: dict[str, str]) -> float | None:
    """Wall time of a fresh `python -c code`; None if it fails."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, env=env)
    return time.perf_counter() - started if done.returncode == 0 else None


def import_seconds(modules: list[str], repeats: int) -> dict[str, float | None]:
    """Each module's import time: the median wall time of `python -c "import M"` minus
    that of `python -c pass`, fresh interpreters, interleaved; None if it fails to import.

    Every module is imported once first with bytecode writing on, into a cache of this
    measurement's own: the timed imports then load compiled bytecode, as they do from an
    installed wheel (pip compiles it) or on any second import. Without that, a package
    installed in editable mode under PYTHONDONTWRITEBYTECODE is compiled on every import
    and its figure is mostly the compiler's.
    """
    with tempfile.TemporaryDirectory(prefix="ferroflow-bench-pycache-") as cache:
        env = {**_child_env(), "PYTHONPYCACHEPREFIX": cache}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for code in ["pass", *(f"import {module}" for module in modules)]:
            _timed_python(code, env)
        empty: list[float | None] = []
        samples: dict[str, list[float | None]] = {module: [] for module in modules}
        for _ in range(repeats):
            empty.append(_timed_python("pass", env))
            for module in modules:
                samples[module].append(_timed_python(f"import {module}", env))
    floor = statistics.median(t for t in empty if t is not None)
    seconds: dict[str, float | None] = {}
    for module, times in samples.items():
        imported = [t for t in times if t is not None]
        seconds[module] = (
            max(0.0, statistics.median(imported) - floor) if imported and len(imported) == len(times) else None
        )
    return seconds


def environment() -> dict[str, Any]:
    """What the numbers depend on, for the JSON report and the table's header."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "child_env": CHILD_ENV,
    }
