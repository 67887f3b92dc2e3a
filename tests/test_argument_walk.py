"""The one walk over arguments (issue 7, item 1): what a task receives, and which
upstream runs a new run depends on, for structures that share, nest or contain
themselves. The adversarial cases (20,000 deep, 2^40 paths, crashes) are in
test_adversarial_arguments.py; these pin the walk's rules."""

from __future__ import annotations

import collections
import dataclasses

from ferroflow import allow_failure, flow, task
from ferroflow._core import contains_futures, futures_in, replace_futures


@task
def two():
    return 2


@task
def boom():
    raise ValueError("boom")


@task
def receive(x):
    return x


def test_a_future_met_both_inside_allow_failure_and_plainly_is_a_strict_dependency():
    @flow
    def f():
        failed = boom.submit()
        shared = [failed]
        # The same list first inside allow_failure, then plainly: the plain reference
        # cannot take the exception, so the run does not start (as in Prefect).
        return receive.submit((allow_failure(shared), shared), return_state=True).name

    assert f() == "NotReady"


def test_only_allowed_references_give_the_exception():
    @flow
    def f():
        failed = boom.submit()
        return receive.submit([allow_failure(failed)]).result()

    (received,) = f()
    assert isinstance(received, ValueError)


def test_a_copy_keeps_the_shape_of_what_it_copies():
    @flow
    def f():
        future = two.submit()
        shared = [future]
        cyclic = {"shared_a": shared, "shared_b": shared}
        cyclic["self"] = cyclic
        return receive.submit(cyclic).result()

    got = f()
    assert got["shared_a"] == [2]
    assert got["shared_a"] is got["shared_b"], "a shared sub-list became two lists"
    assert got["self"] is got, "the dict no longer contains itself"


def test_container_subclasses_and_frozen_dataclasses_keep_their_types():
    @dataclasses.dataclass(frozen=True)
    class Point:
        x: object
        y: int

    Pair = collections.namedtuple("Pair", "left right")

    @flow
    def f():
        future = two.submit()
        counts = collections.defaultdict(list, {"a": [future]})
        return receive.submit((counts, Point(future, 1), Pair(future, 0))).result()

    counts, point, pair = f()
    assert type(counts) is collections.defaultdict and counts["a"] == [2]
    assert counts["missing"] == []  # still a defaultdict of lists
    assert point == Point(2, 1)
    assert pair == Pair(2, 0)


def test_the_package_walks_find_and_replace_futures_through_cycles():
    @flow
    def f():
        future = two.submit()
        future.wait()
        cyclic = [future]
        cyclic.append(cyclic)
        assert contains_futures(cyclic)
        assert futures_in(cyclic) == [future]
        replaced = replace_futures(cyclic, lambda found: found.result())
        assert replaced[0] == 2 and replaced[1] is replaced
        plain = [1, [2, (3,)]]
        assert replace_futures(plain, lambda found: found) is plain  # nothing to replace
        return True

    assert f()
