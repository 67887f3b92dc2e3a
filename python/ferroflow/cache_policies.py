"""Cache policies, at Prefect's path (`prefect.cache_policies`): how a task run's cache
key is computed.

A policy's `compute_key(task_ctx, inputs, flow_parameters)` gives the key of a run, or
None for "do not cache this run". Policies add up (`INPUTS + TASK_SOURCE`: the key of
the sum hashes the keys of its parts) and `INPUTS - "client"` leaves a parameter out.

Keys are hashed with `ferroflow.utilities.hashing`, which gives the same key in every
process: a record written by one run of a script is found by the next.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ferroflow.exceptions import HashError
from ferroflow.utilities.hashing import hash_objects

if TYPE_CHECKING:
    from typing_extensions import Self

    from ferroflow.context import TaskRunContext
    from ferroflow.filesystems import LocalFileSystem

__all__ = [
    "DEFAULT",
    "FLOW_PARAMETERS",
    "INPUTS",
    "NONE",
    "NO_CACHE",
    "RUN_ID",
    "TASK_SOURCE",
    "CacheKeyFnPolicy",
    "CachePolicy",
    "CompoundCachePolicy",
    "FlowParameters",
    "Inputs",
    "RunId",
    "TaskSource",
]

IsolationLevel = Literal["READ_COMMITTED", "SERIALIZABLE"]


@dataclass
class CachePolicy:
    """The base of all policies; `key_storage` is the folder (a path or a
    `LocalFileSystem`) where the records of a task with this policy are kept, instead of
    its result storage."""

    key_storage: LocalFileSystem | str | Path | None = None
    isolation_level: IsolationLevel | None = None
    lock_manager: Any = None

    @classmethod
    def from_cache_key_fn(
        cls, cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None]
    ) -> CacheKeyFnPolicy:
        """The policy whose key is `cache_key_fn(context, parameters)`."""
        return CacheKeyFnPolicy(cache_key_fn=cache_key_fn)

    def configure(
        self,
        key_storage: LocalFileSystem | str | Path | None = None,
        lock_manager: Any = None,
        isolation_level: IsolationLevel | None = None,
    ) -> Self:
        """A copy of the policy with the given options changed (those left None are kept)."""
        new = deepcopy(self)
        if key_storage is not None:
            new.key_storage = key_storage
        if lock_manager is not None:
            new.lock_manager = lock_manager
        if isolation_level is not None:
            new.isolation_level = isolation_level
        return new

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        raise NotImplementedError

    def __sub__(self, other: str) -> CachePolicy:
        """Leaves parameter `other` out of the inputs hashed; a policy that hashes no
        inputs is itself."""
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        return self

    def __add__(self, other: CachePolicy) -> CachePolicy:
        """A policy whose key hashes the keys of both (adding NO_CACHE changes nothing)."""
        if isinstance(other, _None):
            return self
        _check_compatible(self, other)
        return CompoundCachePolicy(
            policies=[self, other],
            key_storage=self.key_storage or other.key_storage,
            isolation_level=self.isolation_level or other.isolation_level,
            lock_manager=self.lock_manager or other.lock_manager,
        )


def _check_compatible(one: CachePolicy, other: CachePolicy) -> None:
    for option, words in (
        ("key_storage", "storage locations"),
        ("isolation_level", "isolation levels"),
        ("lock_manager", "lock implementations"),
    ):
        mine, theirs = getattr(one, option), getattr(other, option)
        if mine is not None and theirs is not None and mine != theirs:
            raise ValueError(f"Cannot add CachePolicies with different {words}.")


@dataclass
class CacheKeyFnPolicy(CachePolicy):
    """The key is what `cache_key_fn(task_run_context, parameters)` returns."""

    cache_key_fn: Callable[[TaskRunContext, dict[str, Any]], str | None] | None = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if self.cache_key_fn is None:
            return None
        return self.cache_key_fn(task_ctx, inputs)


@dataclass
class CompoundCachePolicy(CachePolicy):
    """Several policies: the key hashes their keys (those that are None are left out;
    all None gives None). Nested compounds are flattened and the `Inputs` among them
    merged into one, excluding every parameter any of them excluded."""

    policies: list[CachePolicy] = field(default_factory=lambda: [])

    def __post_init__(self) -> None:
        flat = [
            policy
            for part in self.policies
            for policy in (part.policies if isinstance(part, CompoundCachePolicy) else [part])
        ]
        inputs = [policy for policy in flat if isinstance(policy, Inputs)]
        self.policies = [policy for policy in flat if not isinstance(policy, Inputs)]
        if inputs:
            excluded = sorted({name for policy in inputs for name in policy.exclude})
            self.policies.append(Inputs(exclude=excluded))

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        keys = [
            key
            for policy in self.policies
            if (key := policy.compute_key(task_ctx=task_ctx, inputs=inputs, flow_parameters=flow_parameters, **kwargs))
            is not None
        ]
        if not keys:
            return None
        return hash_objects(*keys, raise_on_failure=True)

    def __add__(self, other: CachePolicy) -> CachePolicy:
        super().__add__(other)  # its checks
        more = other.policies if isinstance(other, CompoundCachePolicy) else [other]
        return CompoundCachePolicy(
            policies=[*self.policies, *more],
            key_storage=self.key_storage or other.key_storage,
            isolation_level=self.isolation_level or other.isolation_level,
            lock_manager=self.lock_manager or other.lock_manager,
        )

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        if not any(isinstance(policy, Inputs) for policy in self.policies):
            return self  # it hashes no inputs
        return dataclasses.replace(self, policies=[*self.policies, Inputs(exclude=[other])])


@dataclass
class _None(CachePolicy):
    """No key, ever: the run is neither cached nor persisted (`NO_CACHE`)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return None

    def __add__(self, other: CachePolicy) -> CachePolicy:
        return other


# Sources already hashed, by code object: a task's source is read from disk once per
# process, not once per run.
_source_keys: dict[Any, str | None] = {}


@dataclass
class TaskSource(CachePolicy):
    """The key is a hash of the task function's source code (its bytecode when the
    source cannot be read, as for a function made by `exec`)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any] | None,
        flow_parameters: dict[str, Any] | None,
        **kwargs: Any,
    ) -> str | None:
        if task_ctx is None:
            return None
        fn = task_ctx.task.fn
        code = getattr(getattr(fn, "__func__", fn), "__code__", None)
        if code is not None and code in _source_keys:
            return _source_keys[code]
        key = _source_key(fn, code)
        if code is not None:
            _source_keys[code] = key
        return key


def _source_key(fn: Any, code: Any) -> str | None:
    import inspect

    try:
        return hash_objects(inspect.getsource(fn), raise_on_failure=True)
    except (OSError, TypeError):
        pass
    if code is None:
        return None
    return hash_objects(code.co_code.hex(), repr(code.co_consts), code.co_names, raise_on_failure=True)


@dataclass
class FlowParameters(CachePolicy):
    """The key is a hash of the parameters of the flow run the task runs in (None
    outside flows, or for a flow without parameters)."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not flow_parameters:
            return None
        return hash_objects(flow_parameters, raise_on_failure=True)


@dataclass
class RunId(CachePolicy):
    """The key is the id of the flow run (of the task run, outside flows): runs share
    records within one flow run only."""

    def compute_key(
        self,
        task_ctx: TaskRunContext | None,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if task_ctx is None:
            return None
        run_id = task_ctx.task_run.flow_run_id
        if run_id is None:
            run_id = task_ctx.task_run.id
        return str(run_id)


@dataclass
class Inputs(CachePolicy):
    """The key is a hash of the run's arguments by parameter name (defaults applied),
    leaving out those in `exclude`; None for a task without parameters."""

    exclude: list[str] = field(default_factory=lambda: [])

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        if not inputs:
            return None
        exclude = self.exclude
        hashed = {name: _stable_form(value) for name, value in inputs.items() if name not in exclude}
        try:
            return hash_objects(hashed, raise_on_failure=True)
        except HashError as exc:
            raise ValueError(
                f"{exc}\n\n"
                "This often occurs when task inputs contain objects that cannot be cached "
                "like locks, file handles, or other system resources.\n\n"
                "To resolve this, you can:\n"
                "  1. Exclude these arguments by defining a custom `cache_key_fn`\n"
                "  2. Disable caching by passing `cache_policy=NO_CACHE`\n"
            ) from exc

    def __sub__(self, other: str) -> CachePolicy:
        if not isinstance(other, str):
            raise TypeError("Can only subtract strings from key policies.")
        return dataclasses.replace(self, exclude=[*self.exclude, other])


def _stable_form(value: Any) -> Any:
    """A pandas DataFrame as its columns in name order (its pickle is not the same from
    one process to the next); anything else as it is. pandas is never imported here."""
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        return [value[column] for column in sorted(value.columns)]
    return value


INPUTS = Inputs()
NONE = _None()
NO_CACHE = _None()
TASK_SOURCE = TaskSource()
FLOW_PARAMETERS = FlowParameters()
RUN_ID = RunId()
DEFAULT = INPUTS + TASK_SOURCE + RUN_ID


def task_input_hash(context: TaskRunContext, arguments: dict[str, Any]) -> str | None:
    """`ferroflow.tasks.task_input_hash`: a hash of the task function's qualified name and
    bytecode and of `arguments`, or None (no caching) when they cannot be hashed. Prefect
    hashes its `task_key` where this hashes the qualified name: both are the same in every
    process."""
    fn = context.task.fn
    code = getattr(getattr(fn, "__func__", fn), "__code__", None)
    name = getattr(fn, "__qualname__", context.task.name)
    return hash_objects(name, "" if code is None else code.co_code.hex(), arguments)
