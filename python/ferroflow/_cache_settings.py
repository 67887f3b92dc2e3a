"""The environment settings of caching and result storage, under ferroflow's names and
Prefect's (ferroflow's win when both are set), read when they are needed so that a
setting changed between runs takes effect."""

from __future__ import annotations

import os

#: Where results go when a task names no storage.
STORAGE_PATH = (
    "FERROFLOW_RESULTS_LOCAL_STORAGE_PATH",
    "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
    "PREFECT_LOCAL_STORAGE_PATH",
)
#: Whether a task that says nothing about persistence persists its results.
PERSIST_BY_DEFAULT = ("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "PREFECT_RESULTS_PERSIST_BY_DEFAULT")
#: The serializer of a task that names none.
DEFAULT_SERIALIZER = ("FERROFLOW_RESULTS_DEFAULT_SERIALIZER", "PREFECT_RESULTS_DEFAULT_SERIALIZER")
#: Whether every cached task runs and overwrites its record (`refresh_cache=True`).
REFRESH_CACHE = ("FERROFLOW_TASKS_REFRESH_CACHE", "PREFECT_TASKS_REFRESH_CACHE")
#: Whether a task without an explicit policy gets NO_CACHE.
DEFAULT_NO_CACHE = ("FERROFLOW_TASKS_DEFAULT_NO_CACHE", "PREFECT_TASKS_DEFAULT_NO_CACHE")
#: Whether caching is off for every task, whatever its options.
DISABLE_CACHING = ("FERROFLOW_TASKS_DISABLE_CACHING", "PREFECT_TASKS_DISABLE_CACHING")

#: ferroflow's default storage folder (Prefect's is ~/.prefect/storage).
DEFAULT_STORAGE_PATH = os.path.join("~", ".ferroflow", "storage")

_TRUE = frozenset({"1", "true", "t", "yes", "y", "on"})
_FALSE = frozenset({"", "0", "false", "f", "no", "n", "off"})


def _raw(names: tuple[str, ...]) -> tuple[str, str] | None:
    """The first of `names` set in the environment, with its value."""
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            return name, value
    return None


def flag(names: tuple[str, ...]) -> bool:
    """A yes/no setting (unset: no); a value that is neither raises ValueError naming it."""
    found = _raw(names)
    if found is None:
        return False
    name, value = found
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise ValueError(f"{name}={value!r}: expected true or false")


# The last storage setting seen and what it resolved to: a run of a cached task reads the
# setting, and resolving the same value again (home folder, working directory) is skipped.
_resolved_storage: tuple[tuple[str, str] | None, tuple[str, bool]] | None = None


def storage_path() -> tuple[str, bool]:
    """The default storage folder, absolute, and whether it is ferroflow's own default
    (whose parent folder ferroflow also creates owner-only)."""
    global _resolved_storage
    found = _raw(STORAGE_PATH)
    resolved = _resolved_storage
    if resolved is not None and resolved[0] == found:
        return resolved[1]
    if found is None or not found[1]:
        path = os.path.abspath(os.path.expanduser(DEFAULT_STORAGE_PATH)), True
    else:
        path = os.path.abspath(os.path.expanduser(found[1])), False
    if os.path.isabs(os.path.expanduser(found[1] if found else DEFAULT_STORAGE_PATH)):
        _resolved_storage = (found, path)  # a relative path depends on the working directory
    return path


def default_serializer() -> str:
    found = _raw(DEFAULT_SERIALIZER)
    return "pickle" if found is None or not found[1] else found[1]
