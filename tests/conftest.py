"""Shared helpers for the user-level test suite.

Everything here is about *how* the tests run (subprocesses, deadlines, reading log
lines), never about ferroflow's internals: the tests only use public names.

The helpers are handed to tests as fixtures (``run_example``, ``run_script``,
``log_lines``, ``call_with_deadline``, ``os_thread_count``, ``ferroflow_records``) rather
than imported, so
that no test depends on which ``conftest`` module Python saw first.
"""
from __future__ import annotations

import builtins
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Tests press Ctrl-C in child interpreters (SIGINT). A test run started as a background
# job of a non-interactive shell inherits SIGINT *ignored*, every child inherits that
# too, and Python then installs no KeyboardInterrupt handler: those tests would fail for
# the way they were launched. A handler here (reset to the default by exec) gives every
# child the ordinary Ctrl-C, and makes the run itself interruptible as usual.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
EXAMPLES_DIR = ROOT / "examples"

#: The interpreter's own `print`, as it is before any test runs: Ray, imported by its test
#: module, wraps `builtins.print`, and ferroflow swaps it once tasks run on worker threads.
_INTERPRETER_PRINT = builtins.print


@pytest.fixture
def interpreter_print(monkeypatch):
    """Puts the interpreter's own `print` back in `builtins` for the test (undone after
    it) and returns it: for tests of what becomes of `print`, whatever ran before them."""
    monkeypatch.setattr(builtins, "print", _INTERPRETER_PRINT)
    return _INTERPRETER_PRINT


#: One console log line in Prefect's format: ``12:00:01.234 | INFO    | ...``.
LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL) *\| ")

# Runs a script as ``__main__`` after a prelude (e.g. replacing ``requests.get``).
_WRAPPER = """
import os, runpy, sys
_prelude, _path = sys.argv[1], sys.argv[2]
exec(compile(_prelude, "<prelude>", "exec"), {})
sys.argv = [_path, *sys.argv[3:]]
sys.path.insert(0, os.path.dirname(_path))
runpy.run_path(_path, run_name="__main__")
"""

#: Its `sitecustomize` scales the sleeps of every process started with
#: ``FERROFLOW_TEST_TIME_SCALE`` set (see ``run_example``).
TIME_SCALE_DIR = Path(__file__).parent / "time_scale"


def example_path(name: str) -> Path:
    if not name.endswith(".py"):
        name += ".py"
    path = EXAMPLES_DIR / name
    assert path.is_file(), f"no example {path}"
    return path


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("PYTHONIOENCODING", "utf-8")
    if extra:
        env.update(extra)
    return env


def run_example(
    name: str,
    *,
    time_scale: float | None = None,
    prelude: str | None = None,
    args: list[str] | tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run ``examples/<name>.py`` with ``sys.executable`` in a subprocess.

    ``time_scale`` multiplies every ``time.sleep`` and ``asyncio.sleep`` in the
    process and in every Python process it starts (``tests/time_scale``), and
    ``prelude`` is Python run before the script (the example's code is not touched);
    ``args`` are its command-line arguments. Returns the CompletedProcess (text stdout
    and stderr, with any "\r" kept).
    """
    path = example_path(name)
    if prelude is None:
        cmd = [sys.executable, str(path), *args]
    else:
        cmd = [sys.executable, "-c", _WRAPPER, textwrap.dedent(prelude), str(path), *args]
    if time_scale is not None:
        paths = [str(TIME_SCALE_DIR), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        scaled = {"FERROFLOW_TEST_TIME_SCALE": repr(float(time_scale)), "PYTHONPATH": os.pathsep.join(paths)}
        env = {**(env or {}), **scaled}
    return _run(cmd, env=env, timeout=timeout)


def _run(cmd: list[str], *, env: dict[str, str] | None, timeout: float) -> subprocess.CompletedProcess:
    # Bytes, decoded here: text=True would turn every "\r" into "\n" (universal
    # newlines), and the seed examples print with end="\r".
    proc = subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=str(ROOT), env=_env(env))
    proc.stdout = proc.stdout.decode("utf-8", "replace")
    proc.stderr = proc.stderr.decode("utf-8", "replace")
    return proc


def run_script(
    code: str, *, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run a snippet of Python in a fresh interpreter (dedented first)."""
    return _run([sys.executable, "-c", textwrap.dedent(code)], env=env, timeout=timeout)


def log_lines(text: str) -> list[str]:
    """The lines of ``text`` that are console log lines (tracebacks excluded)."""
    return [line for line in text.splitlines() if LOG_LINE.match(line)]


def call_with_deadline(fn, seconds: float = 15.0):
    """Call ``fn()`` in a daemon thread; fail the test if it has not returned after
    ``seconds`` (a deadlock), otherwise return its value or re-raise its exception.
    """
    box: dict[str, object] = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True, name="deadline-call")
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"call did not return within {seconds} s (deadlock?)")
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box.get("value")


def os_thread_count() -> int:
    """Number of OS threads of this process (native Rust threads included)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        try:
            import psutil
        except ImportError:  # pragma: no cover - platform without /proc and psutil
            pytest.skip("cannot count OS threads here")
        return psutil.Process().num_threads()


@pytest.fixture
def gate():
    """A threading.Event that tasks can block on; it is set at teardown so that a
    failing test never leaves a run blocked forever."""
    event = threading.Event()
    yield event
    event.set()


# Fixtures handing the helpers to the tests.


@pytest.fixture(name="run_example")
def run_example_fixture():
    return run_example


@pytest.fixture(name="run_script")
def run_script_fixture():
    return run_script


@pytest.fixture(name="log_lines")
def log_lines_fixture():
    return log_lines


@pytest.fixture(name="call_with_deadline")
def call_with_deadline_fixture():
    return call_with_deadline


@pytest.fixture(name="os_thread_count")
def os_thread_count_fixture():
    return os_thread_count


@pytest.fixture
def ferroflow_records(caplog):
    """ferroflow's log records from INFO up. Its loggers do not propagate to the root,
    where caplog listens, so caplog's handler is put on the `ferroflow` logger for the
    test. Call it with a logger name (`"ferroflow.task_runs"`) for that logger's records
    so far, or without one for all of them."""
    logger = logging.getLogger("ferroflow")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="ferroflow")
    yield lambda name=None: [record for record in caplog.records if name is None or record.name == name]
    logger.removeHandler(caplog.handler)
