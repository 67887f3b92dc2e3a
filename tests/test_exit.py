"""The process ends cleanly and promptly with work in flight (issue 7, A2 and A4).

- Exit while done-callbacks keep submitting work never aborts; work submitted at or
  after shutdown runs to completion or ends Cancelled with a logged line, never
  silently lost.
- Ctrl-C is prompt everywhere: during an async task's retry delay, and outside a flow
  with 2,000 queued runs, the process ends within about a second, unstarted runs end
  Cancelled, and a second Ctrl-C prints no "Exception ignored in atexit callback" and no
  traceback from ferroflow's code.

Every scenario runs in a fresh interpreter, watched with deadlines.
"""

from __future__ import annotations

import concurrent.futures
import os
import queue
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX signals")

#: "Within 1 s", plus slack for a loaded 2-core CI machine.
PROMPT = 1.5


class Child:
    """A Python child process whose output is read by threads as it comes, so that a
    test can wait for a line, send signals, and time the end without ever blocking."""

    def __init__(self, code: str) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._out: list[str] = []
        self._err: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, self._out, True), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self._err, False), daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, sink: list[str], forward: bool) -> None:
        for line in stream:
            sink.append(line)
            if forward:
                self._lines.put(line)
        if forward:
            self._lines.put(None)

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no line {text!r} within {timeout} s\n{self.report()}")
            if line is None:
                self.finish(5)
                pytest.fail(f"the process ended before printing {text!r}\n{self.report()}")
            if line.strip() == text:
                return

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def finish(self, timeout: float) -> float | None:
        """Waits for the end; returns the seconds it took, or None (then kills it)."""
        start = time.monotonic()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return None
        for reader in self._readers:
            reader.join(10)
        return time.monotonic() - start

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for reader in self._readers:
            reader.join(10)

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def report(self) -> str:
        code = self.proc.returncode
        how = (
            "still running"
            if code is None
            else (f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}")
        )
        return f"{how}\n--- stdout (end)\n{self.stdout[-2000:]}\n--- stderr (end)\n{self.stderr[-4000:]}"


def noise_from_ferroflow(stderr: str) -> list[str]:
    """Lines of stderr that show ferroflow's own failures at exit: tracebacks through
    its code, ignored exceptions in atexit callbacks or threads, fatal errors, panics."""
    patterns = (
        "Exception ignored in atexit callback",
        "Fatal Python error",
        "panicked",
        "PanicException",
        "lost sys.stderr",
        f"{os.sep}ferroflow{os.sep}",  # a traceback frame in the package's files
    )
    return [
        line
        for line in stderr.splitlines()
        if any(p in line for p in patterns) or ("Exception ignored" in line and "ferroflow" in line)
    ]


def cancelled_count(text: str, name: str) -> int:
    """How many runs of task `name` the logged lines say ended Cancelled (a per-run line
    counts one; an aggregate line such as "...: 7 Cancelled" counts its number)."""
    count = 0
    for line in text.splitlines():
        if name not in line or "Cancelled" not in line:
            continue
        numbers = re.findall(r"(\d+) Cancelled", line)
        count += int(numbers[0]) if numbers else 1
    return count


# A2: exit with work in flight ---------------------------------------------------------

CALLBACK_CHAINS = """
import time
from ferroflow import task

@task
def work(i):
    time.sleep(0.001)
    return i

def again(future):
    if not future.state.is_completed():
        return  # cancelled at exit: nothing to chain
    n = future.result()
    if n % 1000 < 200:
        work.submit(n + 1).add_done_callback(again)

for chain in range(8):
    work.submit(chain * 1000).add_done_callback(again)
# The script ends here, while the callbacks keep submitting.
"""


@pytest.mark.timeout(240)
def test_exit_while_done_callbacks_submit_more_work_never_aborts():
    # About half the runs aborted (SIGABRT: a worker re-entering Python during
    # finalization), some runs always: repeat it.
    def one(_):
        try:
            return subprocess.run([sys.executable, "-c", CALLBACK_CHAINS], capture_output=True, text=True, timeout=30)
        except subprocess.TimeoutExpired:
            return None

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(20)))
    hung = sum(proc is None for proc in results)
    bad = [proc for proc in results if proc is not None and (proc.returncode != 0 or noise_from_ferroflow(proc.stderr))]
    signals = sorted({signal.Signals(-p.returncode).name for p in bad if p.returncode < 0})
    detail = "" if not bad else f"\nfirst bad run: exit {bad[0].returncode}\n{bad[0].stderr[-3000:]}"
    assert not hung and not bad, f"{hung} of 20 hung, {len(bad)} of 20 failed (signals: {signals}){detail}"


FIRE_AND_FORGET = """
import threading, time
from ferroflow import flow, task

@task
def leaf(i):
    time.sleep(0.05)
    print(f"leaf {i} ran", flush=True)

@task
def spawner():
    def later():
        time.sleep(0.3)  # the flow has returned by now
        for i in range(10):
            leaf.submit(i)  # fire and forget: nobody keeps the future
    threading.Thread(target=later).start()

@flow
def main():
    spawner.submit()

main()
print("flow returned", flush=True)
"""


@pytest.mark.timeout(60)
def test_fire_and_forget_submits_after_the_flow_returned_run_or_are_logged_cancelled():
    child = Child(FIRE_AND_FORGET)
    took = child.finish(30)
    assert took is not None, f"did not exit within 30 s\n{child.report()}"
    assert child.proc.returncode == 0, child.report()
    ran = set(re.findall(r"^leaf (\d+) ran$", child.stdout, re.MULTILINE))
    cancelled = cancelled_count(child.stdout + child.stderr, "leaf")
    assert len(ran) + cancelled >= 10, (
        f"{len(ran)} of 10 runs ran and {cancelled} were logged Cancelled: the rest were lost silently\n"
        + child.report()
    )


# A4: Ctrl-C ----------------------------------------------------------------------------

RETRY_DELAY = """
import asyncio, sys
from ferroflow import flow, task

@task(retries=5, retry_delay_seconds=5)
async def flaky():
    print("attempt", flush=True)
    await asyncio.sleep(0)
    raise ValueError("not yet")

@flow
def sync_flow():
    return flaky.submit().result()

@flow
async def async_flow():
    return await flaky()

try:
    if sys.argv[1] == "submitted":
        sync_flow()
    else:
        asyncio.run(async_flow())
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(3)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("how", ["submitted", "awaited"])
def test_ctrl_c_during_an_async_retry_delay_ends_the_process_at_once_with_the_run_cancelled(how):
    child = Child(RETRY_DELAY.replace("sys.argv[1]", repr(how)))
    child.wait_for_line("attempt")
    time.sleep(0.5)  # inside the 5 s delay before retry 1
    child.signal(signal.SIGINT)
    took = child.finish(10)
    assert took is not None, f"still running 10 s after Ctrl-C (waiting out the retries?)\n{child.report()}"
    assert took < PROMPT, f"took {took:.2f} s after Ctrl-C\n{child.report()}"
    assert child.proc.returncode == 3 and "interrupted" in child.stdout, child.report()
    assert cancelled_count(child.stderr + child.stdout, "flaky") >= 1, (
        f"the run did not end Cancelled\n{child.report()}"
    )
    assert child.stdout.count("attempt") == 1, f"a retry started after Ctrl-C\n{child.report()}"


QUEUED_OUTSIDE_A_FLOW = """
import sys, time
from ferroflow import task

@task
def nap(i):
    time.sleep(0.5)
    return i

futures = [nap.submit(i) for i in range(2000)]
print("queued", flush=True)
if sys.argv[1] == "sleep":
    time.sleep(60)  # Ctrl-C arrives here
"""


def queued_child(then: str) -> Child:
    return Child(QUEUED_OUTSIDE_A_FLOW.replace("sys.argv[1]", repr(then)))


@pytest.mark.timeout(60)
def test_exit_with_2000_queued_runs_outside_a_flow_is_prompt_and_cancels_unstarted_runs():
    child = queued_child("exit")
    child.wait_for_line("queued")
    took = child.finish(30)
    assert took is not None, f"still running 30 s after the script ended\n{child.report()}"
    assert took < PROMPT, f"exit took {took:.2f} s (the queue was run to its end?)\n{child.report()}"
    assert child.proc.returncode == 0, child.report()
    assert cancelled_count(child.stderr, "nap") >= 1, f"no run was logged Cancelled\n{child.report()}"
    assert not noise_from_ferroflow(child.stderr), child.report()


@pytest.mark.timeout(60)
def test_ctrl_c_with_2000_queued_runs_outside_a_flow_is_prompt_and_cancels_unstarted_runs():
    child = queued_child("sleep")
    child.wait_for_line("queued")
    time.sleep(0.3)
    child.signal(signal.SIGINT)
    took = child.finish(30)
    assert took is not None, f"still running 30 s after Ctrl-C\n{child.report()}"
    assert took < PROMPT, f"took {took:.2f} s after Ctrl-C\n{child.report()}"
    assert child.proc.returncode != 0, child.report()  # the KeyboardInterrupt ended the script
    assert cancelled_count(child.stderr, "nap") >= 1, f"no run was logged Cancelled\n{child.report()}"
    assert not noise_from_ferroflow(child.stderr), child.report()


@pytest.mark.timeout(60)
def test_a_second_ctrl_c_during_exit_prints_no_atexit_traceback():
    child = queued_child("sleep")
    child.wait_for_line("queued")
    time.sleep(0.3)
    first = time.monotonic()
    child.signal(signal.SIGINT)
    time.sleep(0.1)  # while the exit handlers run
    if child.proc.poll() is None:
        child.signal(signal.SIGINT)
    assert child.finish(30) is not None, f"still running 30 s after two Ctrl-C\n{child.report()}"
    took = time.monotonic() - first
    assert took < PROMPT, f"took {took:.2f} s after the first Ctrl-C\n{child.report()}"
    noise = noise_from_ferroflow(child.stderr)
    assert not noise, "\n".join(noise[:20]) + "\n" + child.report()
