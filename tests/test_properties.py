"""Property tests (issue 7, item 29): random flows against a sequential oracle.

Hypothesis generates a small program: a list of operations, each a `.submit`, a
`.map` or a direct call (with `return_state=True`) of a task that adds up what it
receives, fails, fails its first attempts (with or without enough retries), or is a
coroutine; arguments are nested lists, tuples, dicts and dataclasses holding earlier
futures (some under `allow_failure`), shared sub-structures and, in the cyclic variant,
containers that hold their own ancestors; `wait_for` names earlier futures. The program
runs in a flow on a random task runner, and again on the oracle: plain Python, one
operation after the other. Then:

- every run ends in the oracle's final state (Completed with the same value, Failed
  with the task's ValueError, NotReady), and the value a task computed from the
  structure it received shows that the structure arrived whole: futures replaced by
  their values, sharing and cycles kept;
- every argument object the program built is released after the flow and
  `gc.collect()` (weak references to its leaves are dead).

The property runs in a fresh interpreter, so that a crash (today a self-referencing
argument kills the process with SIGSEGV) or a hang fails the test instead of pytest.
In CI (`CI` set) hypothesis is derandomized and keeps no database; shrinking is off
under pytest (bounded time): for a shrunk counterexample run
`python tests/test_properties.py acyclic_states` (or another property's name).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ferroflow import allow_failure, flow, task, unmapped
from ferroflow.states import State
from ferroflow.task_runners import SequentialTaskRunner, ThreadPoolTaskRunner

TESTS_DIR = Path(__file__).resolve().parent

# settings ----------------------------------------------------------------------------

_COMMON = dict(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile("ferroflow-ci", derandomize=True, database=None, **_COMMON)
settings.register_profile("ferroflow-dev", **_COMMON)
PROFILE = settings.get_profile("ferroflow-ci" if os.environ.get("CI") else "ferroflow-dev")
#: Under pytest the property runs without shrinking, so that a failure costs seconds.
SHRINK = os.environ.get("FERROFLOW_PROPERTY_SHRINK") == "1"
PHASES = tuple(Phase) if SHRINK else tuple(p for p in Phase if p is not Phase.shrink)

# the values in argument structures ---------------------------------------------------


class Leaf:
    """An int in an argument structure that can be weakly referenced."""

    __slots__ = ("__weakref__", "value")

    def __init__(self, value: int) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Leaf({self.value})"


@dataclasses.dataclass(eq=False)
class Pair:
    a: Any = None
    b: Any = None


def digest(received: Any, const: int) -> tuple[int, str]:
    """What a task returns: the sum of what it received and a canonical shape of it, in
    which a list, dict or Pair met again (shared or cyclic) is written `@n`. A future or
    an `allow_failure` wrapper left in place is an error: the walker missed it."""
    seen: dict[int, int] = {}
    tokens: list[str] = []
    total = const

    def visit(obj: Any) -> None:
        nonlocal total
        kind = type(obj)
        if kind in (list, dict, Pair):
            if id(obj) in seen:
                tokens.append(f"@{seen[id(obj)]}")
                return
            seen[id(obj)] = len(seen)
            if kind is list:
                tokens.append("[")
                for item in obj:
                    visit(item)
                tokens.append("]")
            elif kind is dict:
                tokens.append("{")
                for key in sorted(obj):
                    tokens.append(key)
                    visit(obj[key])
                tokens.append("}")
            else:
                tokens.append("P(")
                visit(obj.a)
                visit(obj.b)
                tokens.append(")")
        elif kind is tuple:
            tokens.append("(")
            for item in obj:
                visit(item)
            tokens.append(")")
        elif kind is Leaf:
            total += obj.value
            tokens.append("i")
        elif kind is int:
            total += obj
            tokens.append("n")
        elif kind is str:
            tokens.append(f"s{len(obj)}")
        elif isinstance(obj, BaseException):  # an upstream's error, through allow_failure
            total += 1000
            tokens.append("E")
        else:
            raise AssertionError(f"the task received a {kind.__module__}.{kind.__qualname__}: {obj!r}")

    visit(received)
    return total, "".join(tokens)


# the tasks -----------------------------------------------------------------------------

_attempts: dict[str, int] = {}
_attempts_lock = threading.Lock()


def _attempt(tag: str) -> int:
    with _attempts_lock:
        _attempts[tag] = _attempts.get(tag, 0) + 1
        return _attempts[tag]


@task
def add(x, structure, tag, const, flakiness):
    return digest((x, structure), const)


@task
def fail(x, structure, tag, const, flakiness):
    del x, structure  # the traceback must not keep the arguments alive
    raise ValueError(f"failed on purpose ({tag})")


@task
def flaky(x, structure, tag, const, flakiness):
    if _attempt(tag) <= flakiness:
        del x, structure
        raise ValueError(f"attempt failed on purpose ({tag})")
    return digest((x, structure), const)


@task
async def async_add(x, structure, tag, const, flakiness):
    await asyncio.sleep(0)
    return digest((x, structure), const)


TASKS = {"add": add, "fail": fail, "flaky": flaky, "async_add": async_add}
RUNNERS = {
    "threads-1": lambda: ThreadPoolTaskRunner(max_workers=1),
    "threads-2": lambda: ThreadPoolTaskRunner(max_workers=2),
    "threads-4": lambda: ThreadPoolTaskRunner(max_workers=4),
    "sequential": SequentialTaskRunner,
}

# programs ------------------------------------------------------------------------------
#
# A structure spec is pure data (so hypothesis keeps no argument object alive):
#   ("leaf", v)          Leaf(v)
#   ("fut", k)           an earlier future (the k-th, modulo how many exist)
#   ("allow", k)         allow_failure(that future)
#   ("again", k)         a container built earlier in this structure: shared
#   ("cycle", k)         a list, dict or Pair still being built (an ancestor): a cycle
#   ("list"|"tuple"|"dict", [specs]), ("pair", spec, spec)


def structures(cyclic: bool) -> st.SearchStrategy[tuple]:
    index = st.integers(0, 99)
    leaves = [
        st.tuples(st.just("leaf"), st.integers(0, 9)),
        st.tuples(st.just("fut"), index),
        st.tuples(st.just("allow"), index),
        st.tuples(st.just("again"), index),
    ]
    if cyclic:
        leaves.append(st.tuples(st.just("cycle"), index))

    def containers(children: st.SearchStrategy[tuple]) -> st.SearchStrategy[tuple]:
        return st.one_of(
            st.tuples(st.just("list"), st.lists(children, max_size=4)),
            st.tuples(st.just("tuple"), st.lists(children, max_size=3)),
            st.tuples(st.just("dict"), st.lists(children, max_size=3)),
            st.tuples(st.just("pair"), children, children),
        )

    tree = st.recursive(st.one_of(leaves), containers, max_leaves=10)
    if not cyclic:
        return tree
    # At least one cycle: a list that ends with a reference to itself or an ancestor.
    return st.tuples(st.just("list"), st.tuples(tree, st.tuples(st.just("cycle"), index)).map(list))


def operations(cyclic: bool) -> st.SearchStrategy[dict]:
    items = st.one_of(
        st.tuples(st.just("leaf"), st.integers(0, 9)),
        st.tuples(st.just("fut"), st.integers(0, 99)),
        st.tuples(st.just("allow"), st.integers(0, 99)),
    )
    return st.fixed_dictionaries(
        {
            "kind": st.sampled_from(("submit", "submit", "map", "call")),
            "task": st.sampled_from(("add", "add", "fail", "flaky", "async_add")),
            "retries": st.integers(0, 2),
            "flakiness": st.integers(0, 2),
            "structure": structures(cyclic),
            "items": st.lists(items, max_size=4),
            "wait_for": st.lists(st.integers(0, 99), max_size=2),
            "const": st.integers(0, 9),
        }
    )


def programs(cyclic: bool) -> st.SearchStrategy[list[dict]]:
    return st.lists(operations(cyclic), min_size=1, max_size=8)


class Builder:
    """Builds the objects a structure spec describes. `future(k)` and `allowed(k)` give
    what stands for the k-th earlier future (a real one, or the oracle's placeholder);
    the same spec built twice gives two graphs of the same shape."""

    def __init__(self, future, allowed, count: int, leaves: list | None = None) -> None:
        self.future, self.allowed, self.count = future, allowed, count
        self.leaves = leaves  # weak references to every Leaf made, when tracked
        self.done: list[Any] = []
        self.open: list[Any] = []

    def leaf(self, value: int) -> Leaf:
        made = Leaf(value)
        if self.leaves is not None:
            self.leaves.append(weakref.ref(made))
        return made

    def build(self, spec: tuple) -> Any:
        kind = spec[0]
        if kind == "leaf":
            return self.leaf(spec[1])
        if kind in ("fut", "allow"):
            if not self.count:
                return self.leaf(spec[1] % 10)
            k = spec[1] % self.count
            return self.future(k) if kind == "fut" else self.allowed(k)
        if kind == "again":
            return self.done[spec[1] % len(self.done)] if self.done else self.leaf(0)
        if kind == "cycle":
            return self.open[spec[1] % len(self.open)] if self.open else self.leaf(0)
        if kind == "tuple":
            made: Any = tuple(self.build(child) for child in spec[1])
        elif kind == "list":
            made = []
            self.open.append(made)
            made.extend(self.build(child) for child in spec[1])
            self.open.pop()
        elif kind == "dict":
            made = {}
            self.open.append(made)
            for i, child in enumerate(spec[1]):
                made[f"k{i}"] = self.build(child)
            self.open.pop()
        elif kind == "pair":
            made = Pair()
            self.open.append(made)
            made.a = self.build(spec[1])
            made.b = self.build(spec[2])
            self.open.pop()
        else:
            raise ValueError(spec)
        self.done.append(made)
        return made


def task_of(op: dict) -> Any:
    name = op["task"]
    if op["kind"] == "call" and name == "async_add":
        name = "add"  # a direct call of an async task is a coroutine; that is another test
    return TASKS[name].with_options(retries=op["retries"], retry_delay_seconds=0)


# the oracle ----------------------------------------------------------------------------


class Placeholder:
    def __init__(self, index: int, allowed: bool) -> None:
        self.index, self.allowed = index, allowed


class UpstreamFailed(Exception):
    """What the oracle's task receives through allow_failure of an unfinished upstream."""


def oracle(program: list[dict]) -> list[tuple]:
    """The final state of every run, in order (submits, map items, direct calls):
    ("Completed", value), ("Failed",) or ("NotReady",)."""
    states: list[tuple] = []  # of runs that have a future, indexed as the real ones
    outcomes: list[tuple] = []
    for number, op in enumerate(program):
        count = len(states)
        builder = Builder(lambda k: Placeholder(k, False), lambda k: Placeholder(k, True), count)
        structure = builder.build(op["structure"])
        waits = {k % count for k in op["wait_for"]} if count else set()
        if op["kind"] == "map":
            runs = [
                (Builder(builder.future, builder.allowed, count).build(item), f"{number}-{j}")
                for j, item in enumerate(op["items"])
            ]
        else:
            runs = [(Leaf(number), f"{number}")]
        for x, tag in runs:
            state = oracle_run(op, (x, structure), waits, states, tag)
            outcomes.append(state)
            if op["kind"] != "call":
                states.append(state)
    return outcomes


def oracle_run(op: dict, arguments: Any, waits: set[int], states: list[tuple], tag: str) -> tuple:
    memo: dict[int, Any] = {}
    needed: set[int] = set(waits)

    def resolve(obj: Any) -> Any:
        if id(obj) in memo:
            return memo[id(obj)]
        if isinstance(obj, Placeholder):
            state = states[obj.index]
            if not obj.allowed:
                needed.add(obj.index)
            return state[1] if state[0] == "Completed" else UpstreamFailed(state[0])
        kind = type(obj)
        if kind is list:
            copy: Any = []
            memo[id(obj)] = copy
            copy.extend(resolve(item) for item in obj)
        elif kind is dict:
            copy = {}
            memo[id(obj)] = copy
            for key, value in obj.items():
                copy[key] = resolve(value)
        elif kind is Pair:
            copy = Pair()
            memo[id(obj)] = copy
            copy.a, copy.b = resolve(obj.a), resolve(obj.b)
        elif kind is tuple:
            copy = tuple(resolve(item) for item in obj)
            memo[id(obj)] = copy
        else:
            return obj
        return copy

    resolved = resolve(arguments)
    if any(states[k][0] != "Completed" for k in needed):
        return ("NotReady",)
    name = task_of(op).name
    if name == "fail" or (name == "flaky" and op["flakiness"] > op["retries"]):
        return ("Failed",)
    return ("Completed", digest(resolved, op["const"]))


# running a program on ferroflow -----------------------------------------------------


def run_on_ferroflow(program: list[dict], runner: str, leaves: list) -> list[tuple]:
    @flow(task_runner=RUNNERS[runner]())
    def program_flow() -> list[tuple]:
        futures: list[Any] = []
        ends: list[Any] = []  # futures, or the states of direct calls, in run order
        for number, op in enumerate(program):
            count = len(futures)
            builder = Builder(lambda k: futures[k], lambda k: allow_failure(futures[k]), count, leaves)
            structure = builder.build(op["structure"])
            waits = [futures[k % count] for k in op["wait_for"]] if count else []
            options = dict(const=op["const"], flakiness=op["flakiness"], wait_for=waits)
            the_task = task_of(op)
            if op["kind"] == "map":
                items = [Builder(builder.future, builder.allowed, count, leaves).build(i) for i in op["items"]]
                tags = [f"{number}-{j}" for j in range(len(items))]
                mapped = list(the_task.map(items, unmapped(structure), tags, **options))
                futures.extend(mapped)
                ends.extend(mapped)
            elif op["kind"] == "submit":
                future = the_task.submit(builder.leaf(number), structure, f"{number}", **options)
                futures.append(future)
                ends.append(future)
            else:
                ends.append(the_task(builder.leaf(number), structure, f"{number}", return_state=True, **options))
        return [observe(end) for end in ends]

    return program_flow()


def observe(end: Any) -> tuple:
    if isinstance(end, State):
        state = end
    else:
        end.wait(30)
        state = end.state
    if state.name == "NotReady":  # a PENDING-type state in Prefect: not `is_final()`
        return ("NotReady",)
    if not state.is_final():
        return ("Unfinished", state.name)
    if state.name == "Completed":
        return ("Completed", state.result())
    if state.name == "Failed":
        error = state.result(raise_on_failure=False)
        return ("Failed",) if isinstance(error, ValueError) else ("Failed", repr(error))
    return (state.name,)


def render(program: list[dict]) -> tuple[str, list[str]]:
    """The program as Python-like lines, and the label of each run in oracle order
    (f3 is the fourth future; c2 the direct call of operation 2)."""
    lines: list[str] = []
    labels: list[str] = []
    count = 0

    def show(spec: tuple) -> str:
        kind = spec[0]
        if kind in ("fut", "allow"):
            if not count:
                return f"Leaf({spec[1] % 10})"
            name = f"f{spec[1] % count}"
            return name if kind == "fut" else f"allow_failure({name})"
        if kind == "leaf":
            return f"Leaf({spec[1]})"
        if kind in ("again", "cycle"):
            return f"<{kind} {spec[1]}>"
        if kind == "pair":
            return f"Pair({show(spec[1])}, {show(spec[2])})"
        inner = ", ".join(f"k{i}: {show(child)}" if kind == "dict" else show(child) for i, child in enumerate(spec[1]))
        return {"list": f"[{inner}]", "tuple": f"({inner}{',' if len(spec[1]) == 1 else ''})", "dict": f"{{{inner}}}"}[
            kind
        ]

    for number, op in enumerate(program):
        name = task_of(op).name
        options = f"retries={op['retries']}" + (f", fails first {op['flakiness']}" if name == "flaky" else "")
        waits = f", wait_for=[{', '.join(f'f{k % count}' for k in op['wait_for'])}]" if count and op["wait_for"] else ""
        structure = show(op["structure"])
        if op["kind"] == "map":
            items = ", ".join(show(item) for item in op["items"])
            new = [f"f{count + j}" for j in range(len(op["items"]))]
            target = ", ".join(new) or "[]"
            lines.append(f"{target} = {name}.map([{items}], unmapped({structure}){waits})  # {options}")
            labels.extend(new)
            count += len(new)
        elif op["kind"] == "submit":
            lines.append(f"f{count} = {name}.submit(Leaf({number}), {structure}{waits})  # {options}")
            labels.append(f"f{count}")
            count += 1
        else:
            lines.append(f"c{number} = {name}(Leaf({number}), {structure}{waits}, return_state=True)  # {options}")
            labels.append(f"c{number}")
    return "\n".join(lines), labels


def check(program: list[dict], runner: str, *, states: bool, release: bool) -> None:
    print("program", runner, program, flush=True)  # the last one shown if the process dies
    _attempts.clear()
    leaves: list[weakref.ref] = []
    expected = oracle(program)
    got = run_on_ferroflow(program, runner, leaves)
    if states and got != expected:
        text, labels = render(program)
        differences = [
            f"{label}: ferroflow {g!r} != oracle {e!r}"
            for label, g, e in zip(labels, got, expected, strict=False)
            if g != e
        ] or [f"{len(got)} runs, the oracle has {len(expected)}"]
        raise AssertionError("\n".join(differences) + f"\nin the program (on {runner}):\n{text}")
    del got
    if not release:
        return
    # A worker may drop what it held a moment after the flow saw the run end.
    deadline = time.monotonic() + 2
    while True:
        gc.collect()
        alive = [ref() for ref in leaves if ref() is not None]
        if not alive or time.monotonic() > deadline:
            break
        del alive
        time.sleep(0.02)
    if alive:
        raise AssertionError(
            f"{len(alive)} of {len(leaves)} argument objects are alive after the flow: {alive[:5]}\n"
            f"in the program (on {runner}):\n{render(program)[0]}"
        )


# Final states and values, and the release of arguments, are separate properties, so
# that a failure of one does not hide the other.


@settings(PROFILE, max_examples=60, phases=PHASES)
@given(program=programs(cyclic=False), runner=st.sampled_from(sorted(RUNNERS)))
def acyclic_states(program: list[dict], runner: str) -> None:
    check(program, runner, states=True, release=False)


@settings(PROFILE, max_examples=40, phases=PHASES)
@given(program=programs(cyclic=False), runner=st.sampled_from(sorted(RUNNERS)))
def acyclic_release(program: list[dict], runner: str) -> None:
    check(program, runner, states=False, release=True)


@settings(PROFILE, max_examples=40, phases=PHASES)
@given(program=programs(cyclic=True), runner=st.sampled_from(sorted(RUNNERS)))
def cyclic_states(program: list[dict], runner: str) -> None:
    check(program, runner, states=True, release=False)


@settings(PROFILE, max_examples=30, phases=PHASES)
@given(program=programs(cyclic=True), runner=st.sampled_from(sorted(RUNNERS)))
def cyclic_release(program: list[dict], runner: str) -> None:
    check(program, runner, states=False, release=True)


# the tests: each property in a fresh interpreter ---------------------------------------


def hypothesis_report(stderr: str) -> str:
    """The failing example and its error, from the last traceback before hypothesis's
    "Failing test case"; else (the process died) the end of stderr without INFO lines."""
    lines = stderr.splitlines()
    marks = [i for i, line in enumerate(lines) if line.startswith(("Failing test case", "Falsifying example"))]
    if marks:
        starts = [i for i in range(marks[0]) if lines[i].startswith("Traceback (most recent call last):")]
        return "\n".join(lines[starts[-1] if starts else marks[0] :])
    return "\n".join(line for line in lines if "| INFO " not in line)[-6000:]


def run_property(name: str, timeout: float = 150) -> None:
    code = f"import sys; sys.path.insert(0, {str(TESTS_DIR)!r}); import test_properties; test_properties.{name}()"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, cwd=TESTS_DIR.parent
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        last = [line for line in out.splitlines() if line.startswith("program ")][-1:]
        pytest.fail(f"the {name} property did not finish within {timeout} s (a hang?); the last program run:\n{last}")
    if proc.returncode != 0:
        how = f"killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0 else f"exit {proc.returncode}"
        last = [line for line in proc.stdout.splitlines() if line.startswith("program ")][-1:]
        pytest.fail(
            f"the {name} property failed ({how})\n{hypothesis_report(proc.stderr)}\n"
            f"--- the last program run\n{''.join(last)}\n"
            f"(shrink it with: python tests/test_properties.py {name})"
        )


@pytest.mark.timeout(200)
def test_random_flows_end_in_the_states_and_values_a_sequential_oracle_gives():
    run_property("acyclic_states")


@pytest.mark.timeout(200)
def test_random_flows_release_every_argument_object_after_the_flow():
    run_property("acyclic_release")


@pytest.mark.timeout(200)
def test_random_flows_with_cyclic_arguments_end_in_the_states_and_values_the_oracle_gives():
    run_property("cyclic_states")


@pytest.mark.timeout(200)
def test_random_flows_with_cyclic_arguments_release_every_argument_object():
    run_property("cyclic_release")


if __name__ == "__main__":
    # One property, with shrinking:
    #   python tests/test_properties.py acyclic_states|acyclic_release|cyclic_states|cyclic_release
    os.environ["FERROFLOW_PROPERTY_SHRINK"] = "1"
    sys.path.insert(0, str(TESTS_DIR))
    import test_properties  # imported again, with shrinking on

    getattr(test_properties, sys.argv[1] if len(sys.argv) > 1 else "acyclic_states")()
