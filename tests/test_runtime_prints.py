"""Lines printed by concurrent tasks never merge (issue 7, item 22): once ferroflow runs
tasks on worker threads, each `print` call reaches its stream in one write, sep and end
included, and print otherwise does what it always did."""

from __future__ import annotations

import builtins
import io
import sys
import threading

import pytest

from ferroflow import flow, task
from ferroflow.task_runners import ThreadPoolTaskRunner


class Writes(io.TextIOBase):
    """A text stream that records each `write` call separately."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.flushes = 0
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        with self._lock:
            self.calls.append(text)
        return len(text)

    def flush(self) -> None:
        self.flushes += 1


@task
def elevator(i):
    for floor in range(30):
        print("elevator", i, "moving to floor", floor)


@pytest.fixture
def started(interpreter_print):
    """ferroflow has run tasks on worker threads (from the interpreter's own print)."""

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=10))
    def warm():
        elevator.map(range(1))

    stdout, sys.stdout = sys.stdout, Writes()
    try:
        warm()
    finally:
        sys.stdout = stdout


def test_prints_of_ten_threads_each_reach_the_stream_in_one_write(monkeypatch, started):
    stream = Writes()
    monkeypatch.setattr(sys, "stdout", stream)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=10))
    def building():
        elevator.map(range(10)).wait()

    building()
    lines = [call for call in stream.calls if call.startswith("elevator")]
    assert len(lines) == 300
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines), lines[:5]


def test_print_keeps_its_meaning(monkeypatch, started):
    stream = Writes()
    monkeypatch.setattr(sys, "stdout", stream)
    print("a", 1, None, sep="-", end="!\n")
    print()
    print(*[], end="")
    print("x", flush=True)
    assert stream.calls == ["a-1-None!\n", "\n", "", "x\n"]
    assert stream.flushes == 1

    other = Writes()
    print("to", "file", file=other, sep="")
    assert other.calls == ["tofile\n"]

    with pytest.raises(TypeError, match="sep must be None or a string"):
        print("a", sep=3)
    # print's own error, whose wording depends on the Python version
    with pytest.raises(TypeError, match=r"(invalid|unexpected) keyword argument"):
        print("a", color=True)
    with pytest.raises(AttributeError):
        print("a", file=object())

    monkeypatch.setattr(sys, "stdout", None)
    print("nowhere")  # as print does without a console: nothing, no error


def test_a_print_swapped_by_someone_else_is_left_alone(monkeypatch, started):
    seen = []
    monkeypatch.setattr("ferroflow.logging._original_print", lambda *args, **kwargs: seen.append((args, kwargs)))
    builtins.print("hello", end="")
    assert seen == [(("hello",), {"end": ""})]
