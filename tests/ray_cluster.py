"""A Ray cluster for the tests: a head node started with `ray start --head` on 127.0.0.1
(once per test module, while no other test session uses Ray), the `ray.init` arguments
of a small local instance, and the check that no Ray process outlives the tests.

Importing this module sets the environment Ray reads in this process and in every
process it starts: listen on 127.0.0.1 only, no token files in the home directory, no
usage reports; and the tests' directory on `PYTHONPATH`, so that Ray workers import the
test modules whose tasks and values they receive (by reference, as cloudpickle sends
functions of importable modules).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # else Ray swaps 127.0.0.1 for the outward address
os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
_TESTS = str(Path(__file__).parent)
os.environ["PYTHONPATH"] = os.pathsep.join([_TESTS, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

#: How long the head may take to start on a loaded 2-core machine.
START_TIMEOUT = 90.0
#: The object store of every instance here: small, the machine is shared.
OBJECT_STORE_BYTES = 100 * 2**20


@dataclass
class Head:
    address: str
    process: subprocess.Popen[str]
    temp_dir: str


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def short_temp_dir() -> str:
    """A temporary directory with a short path (Ray's socket paths must stay short)."""
    return tempfile.mkdtemp(prefix="ffray", dir="/tmp")


def local_init_kwargs(temp_dir: str) -> dict[str, object]:
    """`ray.init` arguments of a small local instance on 127.0.0.1."""
    return {
        "num_cpus": 2,
        "include_dashboard": False,
        "object_store_memory": OBJECT_STORE_BYTES,
        "_temp_dir": temp_dir,
        "_node_ip_address": "127.0.0.1",
    }


def _dying_with_this_process() -> list[str]:
    """The prefix that makes a command get SIGTERM when this process dies, even by
    SIGKILL: a head left behind by a killed test session would hold its ports and cores.
    (`ray start --block` stops its node's processes on SIGTERM, and they die with it.)
    util-linux's `setpriv`; where it is missing, the head outlives a killed session."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []


def start_head() -> Head:
    """`ray start --head --block` in a process group of its own, once it says it started."""
    temp_dir = short_temp_dir()
    port = free_port()
    command = [
        *_dying_with_this_process(),
        *(sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", "--disable-usage-stats"),
        *("--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"),
        *(f"--object-store-memory={OBJECT_STORE_BYTES}", f"--temp-dir={temp_dir}"),
    ]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    started = threading.Event()
    output: list[str] = []

    def read() -> None:  # drains the output for the head's whole life
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Ray runtime started" in line:
                started.set()
        started.set()  # it exited

    threading.Thread(target=read, daemon=True).start()
    head = Head(f"127.0.0.1:{port}", process, temp_dir)
    if not started.wait(START_TIMEOUT) or process.poll() is not None:
        stop_head(head)
        raise RuntimeError("`ray start --head` did not start:\n" + "".join(output))
    return head


def stop_head(head: Head) -> None:
    """Kills the head's process group and every process it started (Ray's workers run in
    sessions of their own), and waits for them."""
    try:
        family = [psutil.Process(head.process.pid), *psutil.Process(head.process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        family = []
    try:
        os.killpg(head.process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for member in family:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    head.process.wait()
    psutil.wait_procs(family, timeout=15)
    shutil.rmtree(head.temp_dir, ignore_errors=True)


def assert_nothing_left(before: set[int]) -> None:
    """No process this one started since `before` (child pids then) is still running."""
    deadline = time.monotonic() + 20
    while True:
        left = [child for child in psutil.Process().children(recursive=True) if child.pid not in before]
        left = [child for child in left if child.is_running() and child.status() != psutil.STATUS_ZOMBIE]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert left == [], f"processes left running: {[(child.pid, child.cmdline()) for child in left]}"


#: Held by the tests that use Ray: one test session at a time on this machine (the test
#: command runs two interpreters' sessions side by side), as two Ray instances contend
#: for fixed ports (the Ray Client server's, the dashboard agent's) and for the cores.
LOCK_PATH = Path(tempfile.gettempdir()) / "ferroflow-tests-ray.lock"


#: How long a session waits for the others' Ray tests (each takes about a minute).
LOCK_PATIENCE = 900.0


@pytest.fixture(scope="module")
def ray_alone():
    """This session's Ray tests run while no other session's do (the wait is not part of
    a test's time limit: test_ray's limits count the test functions only)."""
    with LOCK_PATH.open("w") as lock:
        deadline = time.monotonic() + LOCK_PATIENCE
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test session held {LOCK_PATH} (its Ray tests) for {LOCK_PATIENCE:.0f} s")
                time.sleep(0.5)
        yield  # (closing the file releases the lock)


@pytest.fixture(scope="module")
def ray_head(ray_alone):
    """A Ray head node on 127.0.0.1 for a module's tests; nothing of it is left afterwards."""
    head = start_head()
    family = {head.process.pid}
    yield head
    family |= {child.pid for child in psutil.Process(head.process.pid).children(recursive=True)}
    stop_head(head)
    running = [pid for pid in family if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    assert running == [], f"Ray processes left running: {running}"
