"""What a task's caching and result options mean, by Prefect's rules (its
`Task.__init__`), checked when the task is defined.

- `cache_key_fn` wins over `cache_policy` (a WARNING says so when both are given);
- an explicit policy other than NO_CACHE, a key function or any result option
  (`result_storage`, `result_serializer`, `result_storage_key`) turns `persist_result`
  on; `persist_result=False` turns caching off (NO_CACHE);
- a task that persists without a policy gets DEFAULT (inputs + source + flow run id);
  with a `result_storage_key` and no policy, that key is its cache key;
- a bare task neither persists nor caches, unless `FERROFLOW_RESULTS_PERSIST_BY_DEFAULT`
  (or Prefect's name) is on when it is defined.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any, NamedTuple

from ferroflow import _cache_settings
from ferroflow.utilities.annotations import NotSet

_logger = logging.getLogger("ferroflow.tasks")


class CacheOptions(NamedTuple):
    """A task's caching and result options, as its attributes hold them."""

    cache_policy: Any
    cache_key_fn: Any
    cache_expiration: datetime.timedelta | None
    refresh_cache: bool | None
    persist_result: bool | None
    result_storage: Any
    result_serializer: Any
    result_storage_key: str | None
    cache_result_in_memory: bool


def task_cache_options(owner: str, options: CacheOptions) -> CacheOptions:
    """The options a task keeps, from those it was given; TypeError, ValueError or
    NotImplementedError, naming the task (`owner`) and the option, for bad ones."""
    _check(owner, options)
    policy = options.cache_policy
    bare = (
        policy is NotSet
        and options.cache_key_fn is None
        and options.persist_result is None
        and options.result_storage is None
        and options.result_serializer is None
        and options.result_storage_key is None
    )
    if bare and not _cache_settings.flag(_cache_settings.PERSIST_BY_DEFAULT):
        return options  # nothing to resolve, and cache_policies stays unimported
    from ferroflow import cache_policies

    if policy is NotSet and _cache_settings.flag(_cache_settings.DEFAULT_NO_CACHE):
        policy = cache_policies.NO_CACHE
    key_fn = options.cache_key_fn
    if key_fn is not None:
        if policy is not NotSet and not _wraps(policy, key_fn):
            _logger.warning(f"Both `cache_policy` and `cache_key_fn` are set on {owner}. `cache_key_fn` will be used.")
        policy = cache_policies.CachePolicy.from_cache_key_fn(key_fn)
    persist = options.persist_result
    if persist is None and (
        (policy is not NotSet and policy is not None and policy != cache_policies.NO_CACHE)
        or key_fn is not None
        or options.result_storage_key is not None
        or options.result_storage is not None
        or options.result_serializer is not None
    ):
        persist = True
    if _cache_settings.flag(_cache_settings.DISABLE_CACHING):
        policy = cache_policies.NO_CACHE
    if persist is False:
        if policy is not NotSet and policy is not None and policy != cache_policies.NO_CACHE:
            _logger.warning(f"{owner}: ignoring `cache_policy` because `persist_result` is False")
        policy = None if policy is None else cache_policies.NO_CACHE
    elif policy is NotSet and options.result_storage_key is None:
        policy = cache_policies.DEFAULT
    elif policy != cache_policies.NO_CACHE and options.result_storage_key is not None:
        policy = None  # the storage key is the cache key
    return options._replace(cache_policy=policy, persist_result=persist)


def _wraps(policy: Any, key_fn: Any) -> bool:
    """Whether `policy` is the one `key_fn` makes (a copy by `with_options` has both)."""
    return getattr(policy, "cache_key_fn", None) is key_fn


def _check(owner: str, options: CacheOptions) -> None:
    policy = options.cache_policy
    if policy is not NotSet and policy is not None:
        from ferroflow.cache_policies import CachePolicy

        if not isinstance(policy, CachePolicy):
            raise TypeError(
                f"{owner}: cache_policy must be a CachePolicy (INPUTS, TASK_SOURCE, NO_CACHE, ...), "
                f"got {type(policy).__name__}: {policy!r}"
            )
        if policy.isolation_level not in (None, "READ_COMMITTED") or policy.lock_manager is not None:
            raise NotImplementedError(
                f"{owner}: cache_policy with isolation_level={policy.isolation_level!r} or a lock_manager is not "
                "supported: ferroflow does not lock cache keys (READ_COMMITTED: concurrent runs with one key may "
                "both run, and the last to finish writes the record)"
            )
    if options.cache_key_fn is not None and not callable(options.cache_key_fn):
        raise TypeError(f"{owner}: cache_key_fn must be callable, got {type(options.cache_key_fn).__name__}")
    expiration = options.cache_expiration
    if expiration is not None and not isinstance(expiration, datetime.timedelta):
        raise TypeError(
            f"{owner}: cache_expiration must be a datetime.timedelta, got {type(expiration).__name__}: {expiration!r}"
        )
    for option, may_be_none in (("refresh_cache", True), ("persist_result", True), ("cache_result_in_memory", False)):
        value = getattr(options, option)
        if not (isinstance(value, bool) or (may_be_none and value is None)):
            allowed = "True, False or None" if may_be_none else "True or False"
            raise TypeError(f"{owner}: {option} must be {allowed}, got {type(value).__name__}: {value!r}")
    key = options.result_storage_key
    if key is not None and not isinstance(key, str):
        raise TypeError(f"{owner}: result_storage_key must be a string template, got {type(key).__name__}: {key!r}")
    if options.result_storage is not None:
        from ferroflow.results import resolve_result_storage

        _named(owner, "result_storage", resolve_result_storage, options.result_storage)
    if options.result_serializer is not None:
        from ferroflow.serializers import resolve_serializer

        _named(owner, "result_serializer", resolve_serializer, options.result_serializer)


def _named(owner: str, option: str, resolve: Any, value: Any) -> None:
    """`resolve(value)`, its error re-raised with the task's name and the option."""
    try:
        resolve(value)
    except (TypeError, ValueError, NotImplementedError) as exc:
        message = str(exc)
        if not message.startswith(option):
            message = f"{option}: {message}"
        raise type(exc)(f"{owner}: {message}") from exc


def caches(task: Any) -> bool:
    """Whether runs of `task` look up and write cache records: it persists (its own
    option, else the persist-by-default setting), it has a key (a policy other than
    NO_CACHE, or a result storage key) and it is not a generator."""
    if task.isgenerator:
        return False
    persist = task.persist_result
    if persist is None:
        persist = task.cache_policy is not NotSet and _cache_settings.flag(_cache_settings.PERSIST_BY_DEFAULT)
    if not persist:
        return False
    policy = task.cache_policy
    if policy is None:
        return task.result_storage_key is not None
    if policy is NotSet:
        return False
    from ferroflow.cache_policies import NO_CACHE

    return bool(policy != NO_CACHE)
