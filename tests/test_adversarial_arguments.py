"""Arguments no walker may choke on (issue 7, A1): structures that contain themselves,
trees with parent links, dataclasses with back-references, nesting 20,000 deep, and
40 levels of shared sub-lists (2^40 paths, 41 containers).

Every entry point that looks for or replaces futures is exercised: `.submit`, `.map`
(the structure as an `unmapped`/static argument and as mapped items), a direct call,
and a flow's return value. A future sits inside each structure, so the task must get
its value in the right place, with the structure's cycles and sharing preserved in
the copy it receives (`x[2] is x`).

Each case runs in a fresh interpreter: an unbounded recursion in native code kills the
process with SIGSEGV, which must fail the test, not pytest.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest

# Shared by every script: the structures, each with a checker run inside the task on
# the copy it received. `slow_two` sleeps so that a future the walker missed is still
# unfinished when the task starts: the task then sees a future instead of 2.
PRELUDE = """
import dataclasses, sys, time
from typing import Any
from ferroflow import flow, task, unmapped
from ferroflow.states import State

def value(x):
    # A task receives a future's value; a flow that returns a future hands back its
    # final State instead (Prefect's contract): the checks accept both.
    return x.result() if isinstance(x, State) else x

@task
def slow_two():
    time.sleep(0.02)
    return 2

def cyclic_list(value):
    x = ["head", value]
    x.append(x)
    return x

def check_cyclic_list(x):
    assert [x[0], value(x[1])] == ["head", 2], x[:2]
    assert x[2] is x, "the list no longer contains itself"

def cyclic_dict(value):
    d = {"value": value}
    d["self"] = d
    return d

def check_cyclic_dict(d):
    assert value(d["value"]) == 2, d["value"]
    assert d["self"] is d, "the dict no longer contains itself"

def parent_links(value):
    root = {"name": "root", "parent": None, "children": []}
    for i in range(3):
        root["children"].append({"name": i, "parent": root, "value": value if i == 1 else i})
    return root

def check_parent_links(root):
    assert [value(child["value"]) for child in root["children"]] == [0, 2, 2]
    assert all(child["parent"] is root for child in root["children"]), "parent links lost"

@dataclasses.dataclass
class Node:
    value: Any
    other: Any = None

def back_reference(value):
    a = Node(value)
    a.other = Node("b", a)
    return a

def check_back_reference(a):
    assert isinstance(a, Node) and value(a.value) == 2, a.value
    assert a.other.value == "b" and a.other.other is a, "back-reference lost"

STRUCTURES = {
    "cyclic_list": (cyclic_list, check_cyclic_list),
    "cyclic_dict": (cyclic_dict, check_cyclic_dict),
    "parent_links": (parent_links, check_parent_links),
    "back_reference": (back_reference, check_back_reference),
}

@task
def check(kind, structure):
    STRUCTURES[kind][1](structure)
    return kind

def each(body):
    # Runs body(kind, make, checker) for every structure; one line per success.
    for kind, (make, checker) in STRUCTURES.items():
        body(kind, make, checker)
        print("ok", kind, flush=True)
"""

KINDS = ("cyclic_list", "cyclic_dict", "parent_links", "back_reference")


def run(body: str, timeout: float = 60) -> subprocess.CompletedProcess:
    code = PRELUDE + textwrap.dedent(body)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"did not finish within {timeout} s; stdout so far:\n{out}")
    return proc


def describe(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        how = f"killed by {signal.Signals(-proc.returncode).name}"
    else:
        how = f"exit status {proc.returncode}"
    return f"{how}\n--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"


def assert_all_ok(proc: subprocess.CompletedProcess, expected: list[str]) -> None:
    assert proc.returncode == 0, describe(proc)
    done = [line for line in proc.stdout.splitlines() if line.startswith("ok ")]
    assert done == [f"ok {name}" for name in expected], describe(proc)


# self-referencing structures -------------------------------------------------------------


@pytest.mark.timeout(90)
def test_submit_finds_futures_in_self_referencing_arguments_and_keeps_the_cycles():
    proc = run(
        """
        @flow
        def main():
            def body(kind, make, checker):
                assert check.submit(kind, make(slow_two.submit())).result() == kind
                assert check.submit(kind, make(2)).result() == kind  # no future inside
            each(body)
        main()
        """
    )
    assert_all_ok(proc, list(KINDS))


@pytest.mark.timeout(90)
def test_direct_call_finds_futures_in_self_referencing_arguments_and_keeps_the_cycles():
    proc = run(
        """
        @flow
        def main():
            def body(kind, make, checker):
                assert check(kind, make(slow_two.submit())) == kind
                assert check(kind, make(2)) == kind
            each(body)
        main()
        """
    )
    assert_all_ok(proc, list(KINDS))


@pytest.mark.timeout(90)
def test_map_resolves_a_self_referencing_unmapped_or_static_argument_in_every_run():
    proc = run(
        """
        @flow
        def main():
            def body(kind, make, checker):
                structure = make(slow_two.submit())
                assert check.map([kind] * 3, unmapped(structure)).result() == [kind] * 3
            each(body)
            # A dataclass is not iterable: passed as is, it is a static argument.
            static = back_reference(slow_two.submit())
            assert check.map(["back_reference"] * 3, static).result() == ["back_reference"] * 3
            print("ok static", flush=True)
        main()
        """
    )
    assert_all_ok(proc, [*KINDS, "static"])


@pytest.mark.timeout(90)
def test_map_resolves_futures_inside_self_referencing_mapped_items():
    proc = run(
        """
        @flow
        def main():
            kinds = list(STRUCTURES)
            items = [STRUCTURES[kind][0](slow_two.submit()) for kind in kinds]
            assert check.map(kinds, items).result() == kinds
            print("ok mapped items", flush=True)
        main()
        """
    )
    assert_all_ok(proc, ["mapped items"])


@pytest.mark.timeout(90)
def test_flow_returning_a_self_referencing_structure_resolves_its_futures_and_keeps_the_cycles():
    proc = run(
        """
        def body(kind, make, checker):
            @flow
            def returns():
                return make(slow_two.submit())
            checker(returns())
        each(body)
        """
    )
    assert_all_ok(proc, list(KINDS))


# nesting 20,000 deep -----------------------------------------------------------------

DEEP = """
DEPTH = 20_000

def nest(leaf):
    x = leaf
    for _ in range(DEPTH):
        x = [x]
    return x

def bottom(x):
    depth = 0
    while isinstance(x, list):
        (x,) = x
        depth += 1
    return depth, x

@task
def walk_down(x):
    return bottom(x)

@task(name="walk_down")
def walk_down_at(i, x):
    return bottom(x)

def expect_deep(name, thunk):
    # Works (the leaf's future resolved at the bottom), or raises a recursion-style
    # error that names `name`: never a signal.
    try:
        result = thunk()
    except Exception as exc:
        message = str(exc)
        recursion = isinstance(exc, RecursionError) or any(
            word in message.lower() for word in ("recursion", "deep", "nest"))
        assert recursion, f"not a recursion-style error: {type(exc).__name__}: {message[:300]}"
        assert name in message, f"the error does not name {name!r}: {type(exc).__name__}: {message[:300]}"
        print("raised", type(exc).__name__, flush=True)
    else:
        assert (result[0], value(result[1])) == (DEPTH, 2), result
        print("worked", flush=True)
"""

DEEP_ENTRIES = {
    "submit": """
        @flow
        def main():
            expect_deep("walk_down", lambda: walk_down.submit(nest(slow_two.submit())).result())
        main()
    """,
    "direct_call": """
        @flow
        def main():
            expect_deep("walk_down", lambda: walk_down(nest(slow_two.submit())))
        main()
    """,
    "map_unmapped": """
        @flow
        def main():
            def mapped():
                (result,) = walk_down_at.map([0], unmapped(nest(slow_two.submit()))).result()
                return result
            expect_deep("walk_down", mapped)
        main()
    """,
    "flow_return": """
        @flow
        def deep_flow():
            return nest(slow_two.submit())
        expect_deep("deep_flow", lambda: bottom(deep_flow()))
    """,
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("entry", list(DEEP_ENTRIES))
def test_nesting_20000_deep_works_or_raises_a_recursion_error_naming_the_task(entry):
    proc = run(DEEP + textwrap.dedent(DEEP_ENTRIES[entry]))
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split()[:1] in (["worked"], ["raised"]), describe(proc)


# shared sub-structures ------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_forty_levels_of_shared_sublists_resolve_in_seconds_not_2_to_the_40_walks():
    # a = [f]; a = [a, a] 40 times: 41 lists, 2^40 paths to the future. A walker that
    # visits each container once takes microseconds; one that follows paths never ends.
    proc = run(
        """
        LEVELS = 40

        def shared(leaf):
            a = [leaf]
            for _ in range(LEVELS):
                a = [a, a]
            return a

        def check_shared(a):
            for _ in range(LEVELS):
                assert a[0] is a[1], "sharing lost"
                a = a[0]
            assert [value(item) for item in a] == [2], a

        @task
        def take(a):
            check_shared(a)
            return "took"

        @task
        def take_at(i, a):
            return take.fn(a)

        def timed(name, thunk):
            start = time.monotonic()
            thunk()
            print(f"ok {name} {time.monotonic() - start:.3f}", flush=True)

        @flow
        def main():
            timed("submit", lambda: take.submit(shared(slow_two.submit())).result())
            timed("direct_call", lambda: take(shared(slow_two.submit())))
            timed("map_unmapped", lambda: take_at.map([0], unmapped(shared(slow_two.submit()))).result())

        @flow
        def returns():
            return shared(slow_two.submit())

        main()
        timed("flow_return", lambda: check_shared(returns()))
        """,
        timeout=30,
    )
    assert proc.returncode == 0, describe(proc)
    seconds = {line.split()[1]: float(line.split()[2]) for line in proc.stdout.splitlines() if line.startswith("ok ")}
    assert list(seconds) == ["submit", "direct_call", "map_unmapped", "flow_return"], describe(proc)
    slow = {name: s for name, s in seconds.items() if s > 5}
    assert not slow, f"took seconds to walk 41 lists: {slow}"
