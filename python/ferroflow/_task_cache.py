"""The function the engine calls for a run of a task that caches (Prefect's transaction
around a task run, without a server).

For each attempt it computes the run's cache key (a policy's, or the formatted
`result_storage_key`). A usable record for that key is a hit: the function is not called
and the run ends in a Completed state named `Cached` holding the recorded value. Otherwise
the function runs and, if it returns a value (not a State), the value is recorded. What
goes wrong on the way is logged on the run's logger with Prefect's words and never fails
the run, except a `result_storage_key` that cannot be formatted, which is the task's
configuration error (as in Prefect).

The settings (refresh-cache, the default storage folder, the default serializer) are read
once per flow run, when its first run of the task starts (outside flows, for every run).
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any, NamedTuple

from ferroflow import _cache_settings, states
from ferroflow._result_store import MISS, RecordFolder
from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.exceptions import SerializationError
from ferroflow.logging import get_run_logger
from ferroflow.results import record_folder, resolve_result_storage
from ferroflow.serializers import Serializer, resolve_serializer

_KEY_ERROR = "Error encountered when computing cache key - result will not be persisted."


def cached_function(task: Any, fn: Callable[..., Any], body: str) -> tuple[Callable[..., Any], str]:
    """`fn` (what the engine would call for `task`) with the cache around it, and the
    body kind of the result: a sync function stays sync; a coroutine function is wrapped
    in one that awaits it."""
    plan = _CachePlan(task)

    if body == "sync":

        def run_cached(*args: Any, **kwargs: Any) -> Any:
            record = plan.record_of(args, kwargs)
            if record is not None and not record.settings.refresh:
                value = plan.read(record)
                if value is not MISS:
                    return _cached_state(value)
            result = fn(*args, **kwargs)
            if record is not None:
                plan.write(record, result)
            return result

        return run_cached, "sync"

    async def run_cached_async(*args: Any, **kwargs: Any) -> Any:
        record = plan.record_of(args, kwargs)
        if record is not None and not record.settings.refresh:
            value = plan.read(record)
            if value is not MISS:
                return _cached_state(value)
        result = await fn(*args, **kwargs)
        if record is not None:
            plan.write(record, result)
        return result

    return run_cached_async, "coroutine"


def _cached_state(value: Any) -> states.State[Any]:
    """What a hit returns: a Completed state of no run named `Cached`, which the engine
    takes for a hit (`ferroflow._runtime.is_cache_hit`): the run ends `Cached` with the
    recorded value as its result, and a direct call returns that value."""
    return states.State(states.StateType.COMPLETED, name="Cached", data=value)


def _receiver(fn: Any) -> tuple[str, Any] | None:
    """(name of the first parameter, the object it is bound to) for a bound method."""
    receiver = getattr(fn, "__self__", None)
    function = getattr(fn, "__func__", None)
    code = getattr(function, "__code__", None)
    if receiver is None or code is None or not code.co_argcount:
        return None
    return code.co_varnames[0], receiver


def _reads_run_context(policy: Any) -> bool:
    """Whether `policy` may read the `task_ctx` it is given: all do but ferroflow's own
    INPUTS, FLOW_PARAMETERS and NO_CACHE (and sums of them), which get None instead. No
    policy (the storage key is the key) reads nothing."""
    from ferroflow import cache_policies

    if policy is None:
        return False
    if type(policy) is cache_policies.CompoundCachePolicy:
        return any(_reads_run_context(part) for part in policy.policies)
    return type(policy) not in (cache_policies.Inputs, cache_policies.FlowParameters, type(cache_policies.NO_CACHE))


def _warn(message: str) -> None:
    get_run_logger().warning(message)


class _Settings(NamedTuple):
    """What the settings say for the runs of one flow run."""

    refresh: bool
    folder: RecordFolder
    serializer: Serializer


class _Record(NamedTuple):
    """A run's record: its key, its file, and the settings it is read and written with."""

    key: str
    path: str
    settings: _Settings


class _CachePlan:
    """What every run of one cached task needs, worked out once."""

    __slots__ = (
        "task",
        "policy",
        "key_option",
        "expiration",
        "use_memory",
        "folder",
        "serializer",
        "names",
        "defaults",
        "simple",
        "receiver",
        "needs_context",
        "_settings",
    )

    def __init__(self, task: Any) -> None:
        self.task = task
        #: The policy computing keys; None when the formatted `result_storage_key` is the key.
        self.policy = task.cache_policy
        #: The option a key comes from, to name in messages.
        self.key_option = (
            "result_storage_key"
            if self.policy is None
            else "cache_key_fn"
            if task.cache_key_fn is not None
            else "cache_policy"
        )
        expiration = task.cache_expiration
        self.expiration = None if expiration is None else expiration.total_seconds()
        self.use_memory: bool = task.cache_result_in_memory
        key_storage = getattr(self.policy, "key_storage", None)
        storage = key_storage if key_storage is not None else task.result_storage
        # None: the default folder, which the settings name.
        self.folder = None if storage is None else record_folder(resolve_result_storage(storage))
        self.serializer: Serializer | None = (
            None if task.result_serializer is None else resolve_serializer(task.result_serializer)
        )
        signature = task._signature
        parameters = list(signature.signature.parameters.values())
        self.names = tuple(parameter.name for parameter in parameters)
        self.defaults = {p.name: p.default for p in parameters if p.default is not p.empty}
        self.simple: bool = signature.simple
        #: A bound method's first parameter and what it is bound to (the instance, or the
        #: class of a classmethod): part of the parameters, as in Prefect, so that
        #: instances in different states do not share records.
        self.receiver = _receiver(task.fn)
        #: Whether the policy reads the task run's context (building it costs a run id).
        self.needs_context = _reads_run_context(self.policy)
        self._settings: tuple[Any, _Settings] | None = None  # (flow run id, its settings)

    # -- the key ---------------------------------------------------------------------

    def parameters(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """The run's arguments by parameter name, defaults applied; without `inspect`'s
        binding for plain positional calls (the engine has checked them already)."""
        parameters: dict[str, Any] = {} if self.receiver is None else dict((self.receiver,))
        if self.simple and not kwargs and len(args) <= len(self.names):
            parameters.update(zip(self.names, args, strict=False))  # defaults fill the rest
            for name in self.names[len(args) :]:
                parameters[name] = self.defaults[name]
        else:
            parameters.update(self.task.bind_parameters(args, kwargs))
        return parameters

    def record_of(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Record | None:
        """This run's record, or None when the run has no key (a key that could not be
        computed is logged)."""
        parameters = self.parameters(args, kwargs)
        context = TaskRunContext.get() if self.needs_context else None
        flow_context = FlowRunContext.get() if context is None else context.flow_run_context
        if self.policy is None:
            key: Any = self._formatted_storage_key(parameters)
        else:
            try:
                if context is None and self.needs_context:
                    raise ValueError("Task run context is not set")
                flow_parameters = (flow_context.parameters if flow_context is not None else None) or {}
                key = self.policy.compute_key(task_ctx=context, inputs=parameters, flow_parameters=flow_parameters)
            except Exception:
                get_run_logger().exception(_KEY_ERROR)
                return None
        if key is None:
            return None
        settings = self.settings(flow_context)
        try:
            path = settings.folder.record_path(key)
        except (TypeError, ValueError) as exc:
            get_run_logger().error(
                f"{_KEY_ERROR}\nTask {self.task.name!r}: the key its {self.key_option} gave is unusable: {exc}"
            )
            return None
        return _Record(key, path, settings)

    def _formatted_storage_key(self, parameters: dict[str, Any]) -> str:
        """`result_storage_key` formatted with `parameters` and `ferroflow.runtime`'s
        objects (`flow_run`, `task_run`), as Prefect formats it; a template that cannot be
        formatted fails the run, naming the task and the option."""
        template: str = self.task.result_storage_key
        values: dict[str, Any] = {"parameters": parameters}
        try:
            runtime = importlib.import_module("ferroflow.runtime")
        except ImportError:
            pass  # no runtime module: templates use `parameters` only
        else:
            names = ("flow_run", "task_run", "deployment")
            values.update((name, getattr(runtime, name)) for name in names if hasattr(runtime, name))
        try:
            return template.format(**values)
        except Exception as exc:
            raise ValueError(
                f"Task {self.task.name!r}: result_storage_key {template!r} could not be formatted: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    # -- the settings ----------------------------------------------------------------

    def settings(self, flow_context: FlowRunContext | None) -> _Settings:
        """The settings for a run in `flow_context`: read for its first run of this task
        (for every run outside flows)."""
        flow_run_id = None if flow_context is None else flow_context.flow_run.id
        known = self._settings
        if known is not None and flow_run_id is not None and known[0] == flow_run_id:
            return known[1]
        refresh = self.task.refresh_cache
        settings = _Settings(
            refresh=refresh if refresh is not None else _cache_settings.flag(_cache_settings.REFRESH_CACHE),
            folder=self.folder if self.folder is not None else record_folder(None),
            serializer=self.serializer or resolve_serializer(_cache_settings.default_serializer()),
        )
        if flow_run_id is not None:
            self._settings = (flow_run_id, settings)
        return settings

    # -- the record ------------------------------------------------------------------

    def read(self, record: _Record) -> Any:
        return record.settings.folder.read(record.path, self.serializer, self.use_memory, _warn)

    def write(self, record: _Record, result: Any) -> None:
        """Records what a run returned (a State it returned is its end, not a value: not
        recorded); a failure to record is logged, and the run keeps its result."""
        if isinstance(result, states.State):
            return
        expires_at = None if self.expiration is None else time.time() + self.expiration
        settings = record.settings
        try:
            settings.folder.write(record.path, result, settings.serializer, expires_at, _warn)
        except SerializationError as exc:
            get_run_logger().warning(
                f"Encountered an error while serializing result for transaction {record.key!r}: {exc} "
                "Code execution will continue, but the transaction will not be committed."
            )
        except Exception:
            get_run_logger().exception(f"An error was encountered while committing transaction {record.key!r}")
