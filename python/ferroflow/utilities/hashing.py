"""Stable hashes of Python objects, at Prefect's path (`prefect.utilities.hashing`).

A cache key must be the same in every process that computes it, so nothing here uses
`hash()` (salted per process for strings). Objects are encoded as JSON when they can be
(sorted keys: the common case, and the cheapest); otherwise they are pickled after sets
and dicts are put in a canonical order, so that `{"b", "a"}` hashes alike in every
process, which Prefect's plain cloudpickle fallback does not promise.

Only imported by tasks that cache: `import ferroflow` does not load it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from typing import Any, cast

from ferroflow.exceptions import HashError

__all__ = ["file_hash", "hash_objects", "stable_hash"]


# One encoder for every hash: `json.dumps(..., sort_keys=True)` would build one per call.
_json = json.JSONEncoder(sort_keys=True)


def _md5() -> Any:
    # Not a security use: a key only names a record. FIPS builds refuse plain md5().
    return hashlib.md5(usedforsecurity=False)


def stable_hash(*args: str | bytes, hash_algo: Callable[..., Any] = _md5) -> str:
    """The hex digest of the arguments' bytes (strings UTF-8 encoded), in order."""
    digest = hash_algo()
    for arg in args:
        digest.update(arg.encode() if isinstance(arg, str) else arg)
    return str(digest.hexdigest())


def file_hash(path: str, hash_algo: Callable[..., Any] = _md5) -> str:
    """The hash of a file's contents."""
    with open(path, "rb") as file:
        return stable_hash(file.read(), hash_algo=hash_algo)


def hash_objects(
    *args: Any, hash_algo: Callable[..., Any] = _md5, raise_on_failure: bool = False, **kwargs: Any
) -> str | None:
    """A hash of the arguments that every process computes alike, or None (`HashError`
    with `raise_on_failure=True`) when they can be neither JSON-encoded nor pickled."""
    try:
        return stable_hash(_json.encode((args, kwargs)), hash_algo=hash_algo)
    except Exception as exc:
        json_error = str(exc)
    try:
        return stable_hash(_pickled(_canonical((args, kwargs))), hash_algo=hash_algo)
    except Exception as exc:
        pickle_error = str(exc)
    if raise_on_failure:
        raise HashError(
            "Unable to create hash - objects could not be serialized.\n"
            f"  JSON error: {json_error}\n"
            f"  Pickle error: {pickle_error}"
        )
    return None


class _Unordered(tuple[Any, ...]):
    """A set or a dict's items in canonical order, tagged so that a set never hashes like
    the tuple of its elements."""

    __slots__ = ()


def _canonical(obj: Any) -> Any:
    """`obj` with every set and dict (also nested in lists and tuples) replaced by its
    elements sorted by their own pickled bytes: the same in every process, whatever the
    string hash salt made their iteration order."""
    # Tested by class, not isinstance: the checkers would narrow `obj` (the user's, of
    # any type) to containers of unknown items.
    kind = cast("type[Any]", obj.__class__)
    if issubclass(kind, (set, frozenset)):
        items = [_canonical(item) for item in obj]
        return _Unordered((kind.__name__, *sorted(items, key=_pickled)))
    if issubclass(kind, dict):
        pairs = [(_canonical(key), _canonical(value)) for key, value in obj.items()]
        return _Unordered(("dict", *sorted(pairs, key=lambda pair: _pickled(pair[0]))))
    if kind in _SEQUENCES:
        return kind(_canonical(item) for item in obj)
    return obj


# Rebuilt with their items made canonical (subclasses are left as they are: they may
# not be constructible from an iterable).
_SEQUENCES: tuple[type[Any], ...] = (list, tuple)


def _pickled(obj: Any) -> bytes:
    """cloudpickle's bytes of `obj` (a dependency, loaded only for what JSON cannot encode)."""
    return bytes(importlib.import_module("cloudpickle").dumps(obj))
