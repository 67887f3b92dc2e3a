"""ferroflow.utilities.annotations: Prefect's one-element tuple wrappers."""

import copy
import pickle

import pytest

from ferroflow.utilities.annotations import (
    BaseAnnotation,
    NotSet,
    Quote,
    allow_failure,
    opaque,
    quote,
    unmapped,
)

KINDS = [unmapped, allow_failure, quote, opaque]


@pytest.mark.parametrize("kind", KINDS)
def test_one_element_tuple_with_unwrap_and_rewrap(kind):
    value = [1, 2, 3]
    wrapped = kind(value)
    assert isinstance(wrapped, tuple)
    assert isinstance(wrapped, BaseAnnotation)
    assert type(wrapped) is kind
    assert len(wrapped) == 1
    assert wrapped.unwrap() is value
    assert wrapped.value is value
    (unpacked,) = wrapped
    assert unpacked is value
    rewrapped = wrapped.rewrap("other")
    assert type(rewrapped) is kind
    assert rewrapped.unwrap() == "other"


@pytest.mark.parametrize("kind", KINDS)
def test_repr(kind):
    assert repr(kind("x")) == f"{kind.__name__}('x')"


def test_unmapped_indexes_as_an_endless_constant():
    shared = {"k": 1}
    wrapped = unmapped(shared)
    assert wrapped[0] is shared
    assert wrapped[7] is shared
    assert wrapped[10**9] is shared
    assert list(wrapped) == [shared]  # iteration still sees the one element


def test_equality_depends_on_the_kind():
    assert unmapped(1) == unmapped(1)
    assert unmapped(1) != unmapped(2)
    assert unmapped(1) != allow_failure(1)
    assert not (unmapped(1) == allow_failure(1))
    assert quote(1) != (1,)


def test_hashable_for_sets_and_dict_keys():
    assert len({unmapped(1), unmapped(1), quote(2)}) == 2


def test_quote_unquote_and_deprecated_alias():
    assert quote(5).unquote() == 5
    with pytest.warns(DeprecationWarning, match="Use `quote` instead"):
        old = Quote(5)
    assert isinstance(old, quote)
    assert old.unquote() == 5


@pytest.mark.parametrize("kind", KINDS)
def test_pickle_and_copy_round_trip(kind):
    wrapped = kind({"a": [1]})
    for clone in (pickle.loads(pickle.dumps(wrapped)), copy.copy(wrapped), copy.deepcopy(wrapped)):
        assert type(clone) is kind
        assert clone == wrapped
        assert clone.unwrap() == {"a": [1]}


def test_subscriptable_for_type_hints():
    assert unmapped[int] is not None
    assert allow_failure[list[int]] is not None


def test_notset_is_a_sentinel_class():
    assert isinstance(NotSet, type)
    assert NotSet is not None
