"""Per-task Ray options (prefect-ray's `ferroflow.ray.context`): `remote_options(...)`
gives the keyword arguments of Ray's `.options()` (`num_cpus`, `num_gpus`, `resources`,
`memory`, ...) to the task runs submitted or mapped inside its block.

The options live in a `ContextVar`. A submitted run keeps a copy of its submitter's
context (the engine takes one per `submit` / `map` call), so `RayTaskRunner` reads a
run's options from that copy when it ships the run, later and in another thread.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any

__all__ = ["RemoteOptionsContext", "remote_options"]

_NONE: Mapping[str, Any] = MappingProxyType({})
_current: ContextVar[Mapping[str, Any]] = ContextVar("ferroflow_ray_remote_options", default=_NONE)


class RemoteOptionsContext:
    """The Ray options in force (prefect-ray's name): `RemoteOptionsContext.get()`
    gives them as `current_remote_options`, empty outside any `remote_options` block."""

    __slots__ = ("current_remote_options",)

    def __init__(self, current_remote_options: Mapping[str, Any] | None = None) -> None:
        self.current_remote_options: dict[str, Any] = dict(current_remote_options or {})

    @classmethod
    def get(cls) -> RemoteOptionsContext:
        return cls(_current.get())

    def __repr__(self) -> str:
        return f"RemoteOptionsContext(current_remote_options={self.current_remote_options!r})"


@contextmanager
def remote_options(**new_remote_options: Any) -> Generator[dict[str, Any], None, None]:
    """Ray `.options()` keyword arguments for the task runs submitted in the block;
    nested blocks merge with the outer ones (the inner value wins for a key given in both).

    ```python
    with remote_options(num_cpus=4, num_gpus=1):
        process.submit(42)  # runs as process_fn.options(num_cpus=4, num_gpus=1).remote(...)
    ```
    """
    if "num_returns" in new_remote_options:
        raise ValueError(
            "remote_options: num_returns is RayTaskRunner's own (a run's Ray task returns its value and a report)"
        )
    merged = {**_current.get(), **new_remote_options}
    token = _current.set(merged)
    try:
        yield dict(merged)
    finally:
        _current.reset(token)


def options_in(context: Any) -> Mapping[str, Any]:
    """The options of a `contextvars.Context` (a run's copy of its submitter's)."""
    options: Mapping[str, Any] = context.get(_current, _NONE)
    return options
