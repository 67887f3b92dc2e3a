"""The current task run, as `prefect.runtime.task_run`: `id`, `name`, `tags`,
`parameters`, `run_count`, `task_name`, read when asked. Outside task runs (in a flow's
own code, or outside flows) they are None, `[]`, `{}` and 0, as in Prefect."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferroflow.context import TaskRunContext
from ferroflow.runtime._attributes import runtime_attribute

__all__ = ["id", "name", "parameters", "run_count", "tags", "task_name"]

# What each attribute is, for type checkers: the values come from `__getattr__`, per read.
id: str | None
name: str | None
tags: list[str]
parameters: dict[str, Any]
run_count: int
task_name: str | None


def __getattr__(name: str) -> Any:
    return runtime_attribute(__name__, "task_run", FIELDS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


def get_id() -> str | None:
    context = TaskRunContext.get()
    return None if context is None else str(context.task_run.id)


def get_name() -> str | None:
    context = TaskRunContext.get()
    return None if context is None else context.task_run.name


def get_tags() -> list[str]:
    context = TaskRunContext.get()
    return [] if context is None else context.task_run.tags


def get_parameters() -> dict[str, Any]:
    context = TaskRunContext.get()
    return {} if context is None else context.parameters


def get_run_count() -> int:
    context = TaskRunContext.get()
    return 0 if context is None else context.task_run.run_count


def get_task_name() -> str | None:
    context = TaskRunContext.get()
    return None if context is None else context.task.name


FIELDS: dict[str, Callable[[], Any]] = {
    "id": get_id,
    "name": get_name,
    "tags": get_tags,
    "parameters": get_parameters,
    "run_count": get_run_count,
    "task_name": get_task_name,
}
