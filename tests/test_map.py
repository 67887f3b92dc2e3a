""".map(): what is mapped, what is static, the future list and its errors."""
from __future__ import annotations

import collections.abc
import time

import pytest

from ferroflow import flow, task, unmapped
from ferroflow.exceptions import MappingLengthMismatch, MappingMissingIterable
from ferroflow.futures import PrefectFuture, PrefectFutureList
from ferroflow.states import State


@task
def inc(x):
    return x + 1


@task
def double(x):
    return x * 2


@task
def add(x, y):
    return x + y


@task
def show(x):
    return x


@task
def pair(x, y):
    return (x, y)


@task
def pair_sum(left, right):
    return left + right


def in_flow(fn):
    """Run ``fn`` inside a flow run and return what it returns."""

    @flow
    def wrapper():
        return fn()

    return wrapper()


# what gets mapped --------------------------------------------------------------------


def test_map_over_one_list():
    assert in_flow(lambda: inc.map([1, 2, 3]).result()) == [2, 3, 4]


def test_map_zips_two_lists():
    assert in_flow(lambda: add.map([1, 2, 3], [10, 20, 30]).result()) == [11, 22, 33]


def test_unmapped_iterable_goes_whole_to_every_run():
    assert in_flow(lambda: pair.map([1, 2], unmapped([7, 8])).result()) == [
        (1, [7, 8]),
        (2, [7, 8]),
    ]


def test_unmapped_value_is_shared_by_reference():
    shared = {"k": 1}

    @task
    def ident(x, obj):
        return id(obj)

    ids = in_flow(lambda: ident.map([1, 2, 3], unmapped(shared)).result())
    assert ids == [id(shared)] * 3


def test_static_non_iterable_argument():
    assert in_flow(lambda: add.map([1, 2, 3], 5).result()) == [6, 7, 8]


def test_str_argument_is_static():
    assert in_flow(lambda: pair.map([1, 2], "ab").result()) == [(1, "ab"), (2, "ab")]


def test_bytes_argument_is_static():
    assert in_flow(lambda: pair.map([1, 2], b"ab").result()) == [(1, b"ab"), (2, b"ab")]


def test_dict_is_mapped_over_its_keys():
    # A dict is iterable (reference §1.1): it is turned into list(d), its keys.
    assert in_flow(lambda: show.map({"a": 1, "b": 2}).result()) == ["a", "b"]


def test_tuple_and_range_are_mapped():
    assert in_flow(lambda: pair.map((1, 2), range(10, 12)).result()) == [(1, 10), (2, 11)]


@pytest.mark.parametrize(
    "values",
    [
        range(2**63 - 3, 2**63 - 1),  # near the top of 64 bits
        range(-(2**63), -(2**63) + 6, 3),  # the bottom, with a step
        range(10, -10, -7),  # downwards
        range(2**63 - 1, 2**63 + 2),  # past 64 bits: mapped over its items
        range(-(2**70), -(2**70) + 2),
    ],
)
def test_range_values_are_exact_at_the_edges_of_64_bits(values):
    assert in_flow(lambda: show.map(values).result()) == list(values)


def test_generator_is_consumed():
    assert in_flow(lambda: inc.map(x * x for x in range(4)).result()) == [1, 2, 5, 10]


def test_keyword_arguments_are_mapped():
    assert in_flow(lambda: add.map(x=[1, 2], y=[10, 20]).result()) == [11, 22]


def test_keyword_static_and_positional_mapped_mix():
    assert in_flow(lambda: add.map([1, 2], y=unmapped(100)).result()) == [101, 102]


def test_defaults_are_applied_per_run():
    @task
    def with_default(x, y=100):
        return x + y

    assert in_flow(lambda: with_default.map([1, 2]).result()) == [101, 102]


def test_top_level_future_argument_is_static_and_resolved():
    assert in_flow(lambda: add.map([1, 2], inc.submit(9)).result()) == [11, 12]


def test_map_over_a_list_of_futures():
    assert in_flow(lambda: inc.map([inc.submit(1), inc.submit(2)]).result()) == [3, 4]


def test_map_over_the_future_list_of_another_map():
    assert in_flow(lambda: double.map(inc.map([1, 2, 3])).result()) == [4, 6, 8]


def test_map_outside_a_flow_works():
    assert inc.map([1, 2, 3]).result() == [2, 3, 4]


# the future list ----------------------------------------------------------------------


def test_results_come_back_in_input_order():
    @task
    def sleepy(seconds):
        time.sleep(seconds)
        return seconds

    assert in_flow(lambda: sleepy.map([0.2, 0.0, 0.1]).result()) == [0.2, 0.0, 0.1]


def test_future_list_len_index_and_iteration():
    box = {}

    @flow
    def f():
        futs = inc.map(range(5))
        box["type_ok"] = isinstance(futs, PrefectFutureList)
        box["len"] = len(futs)
        box["first"] = futs[0].result()
        box["last"] = futs[-1].result()
        box["slice"] = [fut.result() for fut in futs[1:3]]
        box["iter"] = [fut.result() for fut in futs]
        box["all_futures"] = all(isinstance(fut, PrefectFuture) for fut in futs)

    f()
    assert box == {
        "type_ok": True,
        "len": 5,
        "first": 1,
        "last": 5,
        "slice": [2, 3],
        "iter": [1, 2, 3, 4, 5],
        "all_futures": True,
    }


def test_future_list_is_a_sequence():
    # Prefect's PrefectFutureList subclasses list; ferroflow's is a view over the runs
    # (no object per run, DESIGN.md), registered as a Sequence instead.
    box = {}

    @flow
    def f():
        futs = inc.map([1, 2])
        box["sequence"] = isinstance(futs, collections.abc.Sequence)
        box["as_list"] = [fut.result() for fut in list(futs)]

    f()
    assert box == {"sequence": True, "as_list": [2, 3]}


def test_future_list_wait_completes_every_run():
    box = {}

    @flow
    def f():
        futs = inc.map([1, 2, 3])
        box["wait"] = futs.wait()
        box["names"] = [fut.state.name for fut in futs]

    f()
    assert box == {"wait": None, "names": ["Completed"] * 3}


def test_map_return_state_gives_a_list_of_states():
    box = {}

    @flow
    def f():
        box["states"] = inc.map([1, 2], return_state=True)

    f()
    states = box["states"]
    assert isinstance(states, list) and len(states) == 2
    assert all(isinstance(s, State) and s.is_completed() for s in states)
    assert [s.result() for s in states] == [2, 3]


def test_map_of_ten_thousand_items():
    assert in_flow(lambda: inc.map(range(10_000)).result()) == list(range(1, 10_001))


def test_one_failing_element_raises_its_exception_from_result():
    @task
    def fragile(x):
        if x == 2:
            raise ValueError(f"bad {x}")
        return x

    box = {}

    @flow
    def f():
        futs = fragile.map([1, 2, 3])
        with pytest.raises(ValueError, match=r"^bad 2$"):
            futs.result()
        futs.wait()
        box["names"] = [fut.state.name for fut in futs]
        box["ok"] = [futs[0].result(), futs[2].result()]
        return "flow goes on"

    assert f() == "flow goes on"
    assert box == {"names": ["Completed", "Failed", "Completed"], "ok": [1, 3]}


def test_wait_for_applies_to_every_mapped_run():
    order = []

    @task
    def gatekeeper():
        time.sleep(0.2)
        order.append("gate")

    @task
    def child(x):
        order.append(x)

    @flow
    def f():
        g = gatekeeper.submit()
        child.map([1, 2, 3], wait_for=[g]).wait()

    f()
    assert order[0] == "gate"
    assert sorted(order[1:]) == [1, 2, 3]


# errors at the call site --------------------------------------------------------------


def test_length_mismatch_raises_at_the_call_site():
    box = {}

    @flow
    def f():
        with pytest.raises(MappingLengthMismatch) as info:
            pair_sum.map([1, 2, 3], [1, 2])
        box["msg"] = str(info.value)
        return "after"

    assert f() == "after"
    msg = box["msg"]
    assert "pair_sum" in msg
    assert "left" in msg and "right" in msg
    assert "3" in msg and "2" in msg


def test_missing_iterable_raises_at_the_call_site():
    box = {}

    @flow
    def f():
        with pytest.raises(MappingMissingIterable) as info:
            pair_sum.map(1, 2)
        box["msg"] = str(info.value)
        return "after"

    assert f() == "after"
    assert "pair_sum" in box["msg"]


def test_str_alone_is_not_an_iterable_to_map():
    with pytest.raises(MappingMissingIterable):
        in_flow(lambda: show.map("abc"))


def test_map_errors_outside_a_flow():
    with pytest.raises(MappingLengthMismatch):
        pair_sum.map([1], [1, 2])
    with pytest.raises(MappingMissingIterable):
        pair_sum.map(1, 2)


# the old sequence protocol (issue 7, item 12) ----------------------------------------------


class OldSequence:
    """Only __len__ and __getitem__ (raising IndexError at the end): iter() works on it."""

    def __init__(self, *items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]


class GetItemOnly:
    """Only __getitem__: iter() still works (the sequence protocol needs no __len__)."""

    def __getitem__(self, index):
        if index >= 3:
            raise IndexError(index)
        return index * 10


def test_map_over_an_object_with_only_len_and_getitem():
    assert in_flow(lambda: inc.map(OldSequence(1, 2, 3)).result()) == [2, 3, 4]


def test_map_over_an_object_with_only_getitem():
    assert in_flow(lambda: inc.map(GetItemOnly()).result()) == [1, 11, 21]


def test_old_sequence_is_zipped_with_a_list():
    assert in_flow(lambda: add.map(OldSequence(1, 2), [10, 20]).result()) == [11, 22]


def test_old_sequence_length_mismatch():
    with pytest.raises(MappingLengthMismatch):
        in_flow(lambda: add.map(OldSequence(1, 2), [10, 20, 30]))


def test_old_sequence_outside_a_flow():
    assert inc.map(OldSequence(5)).result() == [6]


def test_unmapped_old_sequence_is_passed_whole():
    seq = OldSequence(1, 2)
    assert in_flow(lambda: pair.map([1, 2], unmapped(seq)).result()) == [(1, seq), (2, seq)]


def test_object_whose_iter_is_none_is_static():
    class NotIterable:
        __iter__ = None

        def __getitem__(self, index):
            return index

    value = NotIterable()
    with pytest.raises(MappingMissingIterable):
        in_flow(lambda: show.map(value))


# Prefect's messages (issue 7, item 21) -----------------------------------------------------


def test_missing_iterable_message_is_prefect_s():
    with pytest.raises(MappingMissingIterable) as info:
        pair_sum.map(1, 2)
    message = str(info.value)
    assert message.startswith(
        "No iterable parameters were received. Parameters for map must include at least one iterable. "
        "Parameters: {'left': 1, 'right': 2}"
    ), message
    assert "pair_sum" in message


def test_length_mismatch_message_is_prefect_s():
    with pytest.raises(MappingLengthMismatch) as info:
        pair_sum.map([1], [1, 2])
    message = str(info.value)
    assert message.startswith(
        "Received iterable parameters with different lengths. Parameters for map must all be the same length. "
        "Got lengths: {'left': 1, 'right': 2}"
    ), message
    assert "pair_sum" in message


def test_mapped_input_longer_than_a_map_can_be_is_an_overflow_error_before_copying():
    class Huge:
        def __len__(self):
            return 2**32

        def __getitem__(self, index):
            raise AssertionError("must not be read")

    with pytest.raises(OverflowError, match=r"Task 'inc': .* at most 4294967295 runs; parameter 'x' has 4294967296"):
        inc.map(Huge())
