"""The live progress line of long flow runs (issue 11, item 2).

What is checked here:
- `FERROFLOW_PROGRESS` on / off / auto (and a wrong value), in processes whose stderr is a
  pipe (as under pytest): `auto` and `off` draw nothing, `on` draws;
- rich is imported only when a line is drawn (never by `import ferroflow`, nor by a flow
  run shorter than the delay);
- what the line says, from the engine's counters (a subflow's runs included), and that
  its thread ends with the flow run however it ends;
- in a real terminal (tmux): the line is seen while a 3 s map runs, and afterwards only
  the usual log lines are on screen; Ctrl-C erases it too.

The line's delay and refresh interval are module attributes (`ferroflow._progress.DELAY`,
`INTERVAL`): the subprocess tests shorten them, so that they stay fast.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from ferroflow import _progress, flow, task
from ferroflow._progress import Counts, describe
from ferroflow.task_runners import ThreadPoolTaskRunner

#: An escape sequence (colours, cursor moves, line erasure).
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
#: The progress line, as `describe` writes it (with runs registered; in 80 columns, without
#: the words "Flow run").
LINE = re.compile(r"(Flow run )?'[^']+' .*\d+% +[\d,]+/[\d,]+ task runs · [\d,]+ failed · [\d,]+ running")

#: A flow whose map runs about `seconds` (tasks sleep 10 ms, on 4 workers), with its own
#: delay and interval for the line; prints whether rich was imported, at the end.
SCRIPT = """
import sys, time
import ferroflow._progress as progress
from ferroflow import flow, task
from ferroflow.task_runners import ThreadPoolTaskRunner

progress.DELAY, progress.INTERVAL = {delay!r}, {interval!r}

@task
def work(x):
    time.sleep(0.01)
    if x == 7:
        raise ValueError("seven")
    return x

@flow(name="big-map", flow_run_name="the-run", task_runner=ThreadPoolTaskRunner(max_workers=4))
def big_map(n):
    work.map(range(n)).wait()

big_map(int({seconds!r} * 400))
print("rich imported:", any(m == "rich" or m.startswith("rich.") for m in sys.modules))
"""


def _script(seconds: float, delay: float = 0.1, interval: float = 0.05) -> str:
    return SCRIPT.format(seconds=seconds, delay=delay, interval=interval)


def _plain(text: str) -> str:
    return ANSI.sub("", text)


# -- FERROFLOW_PROGRESS, when stderr is not a terminal -----------------------------------


def test_import_ferroflow_does_not_import_rich(run_script):
    proc = run_script(
        """
        import sys
        import ferroflow, ferroflow.task_runners
        print(sorted(m for m in sys.modules if m == "rich" or m.startswith("rich.")))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("value", ["", "auto", "off", "OFF"])
def test_no_line_unless_on_when_stderr_is_not_a_terminal(run_script, value):
    proc = run_script(_script(0.5), env={"FERROFLOW_PROGRESS": value})
    assert proc.returncode == 0, proc.stderr
    assert "rich imported: False" in proc.stdout
    assert "task runs" not in proc.stderr
    assert "\x1b[" not in proc.stderr
    assert "Finished in state Completed()" in proc.stderr


def test_on_draws_the_line_even_when_not_a_terminal(run_script, log_lines):
    proc = run_script(_script(0.6), env={"FERROFLOW_PROGRESS": " On "})
    assert proc.returncode == 0, proc.stderr
    assert "rich imported: True" in proc.stdout
    plain = _plain(proc.stderr)
    drawn = [match.start() for match in LINE.finditer(plain)]
    assert drawn, proc.stderr
    # Drawn again below each log line written meanwhile (the map's summary too), and
    # erased before the flow run's last line.
    assert drawn[-1] > plain.index("Mapped task 'work': 240 runs finished in")
    assert drawn[-1] < plain.rindex("Flow run 'the-run' - Finished in state Completed()")
    assert plain.rstrip().endswith("Flow run 'the-run' - Finished in state Completed()")
    assert "\x1b[2K" in proc.stderr  # the erasure (rich's transient live display)
    lines = log_lines(plain)
    assert any("Task run 'work-7' - Finished in state Failed(" in line for line in lines)


def test_a_short_flow_run_draws_nothing_and_imports_nothing_even_when_on(run_script):
    proc = run_script(_script(0.05, delay=1.0), env={"FERROFLOW_PROGRESS": "on"})
    assert proc.returncode == 0, proc.stderr
    assert "rich imported: False" in proc.stdout
    assert "task runs" not in proc.stderr


def test_a_wrong_value_is_named_with_the_allowed_ones_and_means_auto(run_script):
    proc = run_script(_script(0.3), env={"FERROFLOW_PROGRESS": "yes"})
    assert proc.returncode == 0, proc.stderr
    warning = "FERROFLOW_PROGRESS='yes' is not one of 'auto', 'on', 'off'; using 'auto'"
    assert proc.stderr.count(warning) == 1, proc.stderr  # once, not per flow run
    assert "rich imported: False" in proc.stdout


def test_mode_reads_the_variable(monkeypatch):
    for raw, expected in [("", "auto"), ("auto", "auto"), ("ON", "on"), (" off", "off")]:
        monkeypatch.setenv("FERROFLOW_PROGRESS", raw)
        assert _progress.mode() == expected
    monkeypatch.delenv("FERROFLOW_PROGRESS")
    assert _progress.mode() == "auto"


# -- what the line says ------------------------------------------------------------------


def _text(parts: list[tuple[str, str]]) -> str:
    return "".join(text for text, _ in parts)


def test_the_line_says_done_failed_running_rate_and_eta():
    parts = describe("quiet-otter", Counts(registered=1000, done=400, failed=3, running=4), 2.0, 200.0)
    assert _text(parts) == (
        "Flow run 'quiet-otter' ━━━━━━━━────────────  40%   400/1,000 task runs · 3 failed · 4 running"
        " · 200/s · ETA 0:03 · 0:02 elapsed"
    )
    assert parts[1:3] == [("━" * 8, "bar.complete"), ("─" * 12, "bar.back")]  # 40% of 20 cells
    assert ("━" * 8 + "╸", "bar.complete") in describe("r", Counts(1000, 425, 0, 0), 1.0, None)  # and a half
    assert (" · ETA 0:03", "cyan") in parts
    assert (" · 3 failed", "red") in parts


def test_the_line_without_a_rate_without_runs_and_when_narrow():
    counts = Counts(registered=1_000_000, done=999_999, failed=0, running=1)
    assert _text(describe("r", counts, 3725.0, None)).endswith(
        " 99%   999,999/1,000,000 task runs · 0 failed · 1 running · 1:02:05 elapsed"
    )
    assert _text(describe("r", Counts(), 5.0, None)) == "Flow run 'r' no task runs yet · 0:05 elapsed"
    wide = _text(describe("r", counts, 3.0, 1.5e6))
    assert wide.endswith(
        "━╸  99%   999,999/1,000,000 task runs · 0 failed · 1 running · 1.5M/s · ETA 0:01 · 0:03 elapsed"
    )
    assert _text(describe("r", counts, 3.0, 1.5e6, width=len(wide))) == wide
    # Narrower: the time so far goes, then the bar narrows to 8 cells, then it goes.
    without_time = wide.removesuffix(" · 0:03 elapsed")
    assert _text(describe("r", counts, 3.0, 1.5e6, width=len(wide) - 1)) == without_time
    narrower = _text(describe("r", counts, 3.0, 1.5e6, width=len(without_time) - 12))
    assert narrower == without_time.replace("━" * 12, "", 1)
    counted = " 99%   999,999/1,000,000 task runs · 0 failed · 1 running · 1.5M/s · ETA 0:01"
    assert _text(describe("r", counts, 3.0, 1.5e6, width=len(counted) + 13)) == "Flow run 'r' " + counted
    assert _text(describe("r", counts, 3.0, 1.5e6, width=len(counted) + 12)) == "'r'" + counted
    assert _text(describe("r", counts, 3.0, 1.5e6, width=40)) == counted  # the terminal cuts it


def _progress_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "ferroflow-progress"]


@pytest.fixture
def watched(monkeypatch):
    """Flow runs here are watched (as on a terminal), but their line never shows: the
    delay is longer than any test. The monitor thread must be gone soon after."""
    monkeypatch.setenv("FERROFLOW_PROGRESS", "on")
    monkeypatch.setattr(_progress, "DELAY", 600.0)
    monkeypatch.setattr(_progress, "IDLE_EXIT", 0.05)
    yield
    assert _progress._watches == {}
    assert _progress._roots == []
    deadline = time.monotonic() + 5
    while _progress_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _progress_threads() == [], "the monitor thread outlived the flow runs it watched"


def test_the_counts_are_the_engine_s_while_the_flow_runs(watched, call_with_deadline):
    release = threading.Event()
    started = [threading.Event() for _ in range(3)]
    seen: list[Counts] = []

    @task
    def hold(x: int) -> int:
        started[x].set()
        release.wait(10)
        return x

    @task
    def fail(x: int) -> int:
        raise ValueError(x)

    @task
    def quick(x: int) -> int:
        return x

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=3))
    def counted() -> None:
        (watch,) = set(_progress._watches.values())
        fail.map(range(2)).wait()
        quick.map(range(5)).wait()
        held = []
        for x in range(3):  # one at a time: each starts on a worker of its own
            held.append(hold.submit(x))
            assert started[x].wait(5)
        seen.append(watch.counts())
        release.set()
        for future in held:
            future.wait()

    call_with_deadline(lambda: counted(return_state=True))
    assert seen == [Counts(registered=10, done=7, failed=2, running=3)]


def test_a_subflow_counts_in_its_parent_s_line_and_draws_none_of_its_own(watched, call_with_deadline):
    seen: list[tuple[int, Counts]] = []

    @task
    def one(x: int) -> int:
        return x

    @flow
    def child(n: int) -> None:
        one.map(range(n)).wait()
        watches = set(_progress._watches.values())
        seen.append((len(_progress_threads()), *(watch.counts() for watch in watches)))

    @flow
    def parent() -> None:
        one.map(range(4)).wait()
        child(6)
        (watch,) = set(_progress._watches.values())
        seen.append((len(_progress_threads()), watch.counts()))

    call_with_deadline(parent)
    assert seen == [
        (1, Counts(registered=10, done=10, failed=0, running=0)),  # one line: the parent's
        (1, Counts(registered=10, done=10, failed=0, running=0)),  # the subflow's runs stay counted
    ]


def test_the_thread_ends_when_the_flow_fails_or_is_interrupted(watched, call_with_deadline):
    @flow
    def fails() -> None:
        raise RuntimeError("no")

    @flow
    def interrupted() -> None:
        raise KeyboardInterrupt

    state = call_with_deadline(lambda: fails(return_state=True))
    assert state.is_failed()
    with pytest.raises(KeyboardInterrupt):
        call_with_deadline(interrupted)
    # (the fixture checks that no watch and no thread is left)


def test_an_async_flow_run_is_watched_like_a_sync_one(watched):
    import asyncio

    seen: list[Counts] = []

    @task
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    @flow
    async def doubled() -> None:
        await double.map(range(5))
        (watch,) = set(_progress._watches.values())
        # An awaited result is there a moment before the engine counts its run as
        # finished (the counters are read without a lock): wait for the count to settle.
        deadline = time.monotonic() + 5
        while watch.counts().done < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        seen.append(watch.counts())

    asyncio.run(doubled())
    assert seen == [Counts(registered=5, done=5, failed=0, running=0)]


def test_an_ended_watch_erases_its_line_and_its_thread_ends(monkeypatch, run_script):
    """Failure, Ctrl-C (a KeyboardInterrupt in the flow) and a line shown meanwhile: the
    streams are rich's no longer once the flow run has ended, and the monitor thread ends
    `IDLE_EXIT` after the last one."""
    proc = run_script(
        """
        import sys, threading, time
        import ferroflow._progress as progress
        from ferroflow import flow, task

        progress.DELAY, progress.INTERVAL, progress.IDLE_EXIT = 0.05, 0.02, 0.1
        streams = (sys.stdout, sys.stderr)

        @task
        def nap(x):
            time.sleep(0.1)

        @flow
        def fails():
            nap.map(range(2)).wait()
            raise RuntimeError("no")

        @flow
        def interrupted():
            nap.map(range(2)).wait()
            raise KeyboardInterrupt

        fails(return_state=True)
        try:
            interrupted()
        except KeyboardInterrupt:
            pass
        restored = (sys.stdout, sys.stderr) == streams  # at once: the lines were erased
        deadline = time.monotonic() + 5
        while any(t.name == "ferroflow-progress" for t in threading.enumerate()) and time.monotonic() < deadline:
            time.sleep(0.01)
        names = [t.name for t in threading.enumerate() if t.name == "ferroflow-progress"]
        print("threads:", names, "streams restored:", restored)
        """,
        env={"FERROFLOW_PROGRESS": "on"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "threads: [] streams restored: True" in proc.stdout
    assert len(LINE.findall(_plain(proc.stderr))) >= 2  # both flow runs showed a line


# -- in a real terminal ------------------------------------------------------------------

needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed: no terminal to test in")


class Terminal:
    """A command in a tmux pane of its own (a private tmux server, named after this
    process and test), 120 columns by 30 lines."""

    def __init__(self, name: str, command: str, env: dict[str, str]) -> None:
        self.socket = f"ferroflow-test-{os.getpid()}-{name}"
        self.session = self.socket
        self._tmux("new-session", "-d", "-s", self.session, "-x", "120", "-y", "30", command, env=env)

    def _tmux(self, *args: str, env: dict[str, str] | None = None) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, env=env, timeout=10
        ).stdout

    def screen(self) -> str:
        return self._tmux("capture-pane", "-p", "-t", self.session)

    def keys(self, *keys: str) -> None:
        self._tmux("send-keys", "-t", self.session, *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-session", "-t", self.session], capture_output=True)
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)

    def watch(self, until: str, seconds: float) -> list[str]:
        """The screens seen every 0.1 s until one shows `until` (that one is the last)."""
        screens = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            screens.append(self.screen())
            if until in screens[-1]:
                return screens
            time.sleep(0.1)
        pytest.fail(f"{until!r} never appeared; last screen:\n{screens[-1] if screens else ''}")


def _terminal(tmp_path: Path, name: str, seconds: float, progress: str) -> Terminal:
    script = tmp_path / "big_map.py"
    script.write_text(textwrap.dedent(_script(seconds, delay=_progress.DELAY, interval=_progress.INTERVAL)))
    env = dict(os.environ, FERROFLOW_PROGRESS=progress, PYTHONIOENCODING="utf-8")
    env.pop("TMUX", None)
    # (The shell survives a Ctrl-C sent to the pane, to say how Python exited.)
    run = f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}"
    command = shlex.join(["bash", "-c", f"trap true INT; {run}; echo EXIT=$?; sleep 60"])
    return Terminal(name, command, env)


def _screen_lines(screen: str) -> list[str]:
    return [line for line in screen.splitlines() if line.strip()]


@needs_tmux
def test_in_a_terminal_the_line_shows_while_a_map_runs_and_only_the_summary_stays(tmp_path):
    terminal = _terminal(tmp_path, "auto", 3.0, "auto")
    try:
        screens = terminal.watch("EXIT=", 30)
    finally:
        terminal.close()
    live = [screen for screen in screens if LINE.search(screen)]
    assert live, "no progress line was seen while the map ran"
    # Mid-run, the line is the last on screen, below whole log lines ...
    middle = _screen_lines(live[len(live) // 2])
    assert LINE.match(middle[-1]), middle[-1]
    assert re.search(r" · \d+/s · ETA \d+:\d\d( · \d+:\d\d elapsed)?$", middle[-1]), middle[-1]
    assert not any("task runs" in line for line in middle[:-1])
    # ... and at the end, those lines are still there, and the usual ones follow.
    final = _screen_lines(screens[-1])
    assert final[: len(middle) - 1] == middle[:-1]
    assert not any("task runs" in line for line in final), screens[-1]
    assert re.search(r"Mapped task 'work': 1200 runs finished in [\d.]+s: 1199 Completed, 1 Failed$", final[-4])
    assert final[-3].endswith("Flow run 'the-run' - Finished in state Completed()"), final
    assert final[-2:] == ["rich imported: True", "EXIT=0"]


@needs_tmux
def test_in_a_terminal_off_draws_nothing(tmp_path):
    terminal = _terminal(tmp_path, "off", 1.5, "off")
    try:
        screens = terminal.watch("EXIT=", 30)
    finally:
        terminal.close()
    assert len(screens) > 10
    assert not any("task runs" in screen for screen in screens)


@needs_tmux
def test_in_a_terminal_ctrl_c_erases_the_line(tmp_path):
    terminal = _terminal(tmp_path, "ctrl-c", 20.0, "auto")
    try:
        terminal.watch("task runs", 15)
        terminal.keys("C-c")
        screens = terminal.watch("EXIT=", 15)
    finally:
        terminal.close()
    final = _screen_lines(screens[-1])
    assert not any("task runs" in line for line in final), screens[-1]
    assert any("Crash detected! Execution was aborted by an interrupt signal." in line for line in final), final
    assert final[-1] == "EXIT=130", final  # Python's exit on an unhandled KeyboardInterrupt
