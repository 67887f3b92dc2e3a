"""The current flow run, as `prefect.runtime.flow_run`: `id`, `name`, `flow_name`,
`flow_version`, `parameters`, `run_count`, `tags`, `scheduled_start_time`, read when
asked, from the flow's own code or from any task run of it. Outside flow runs they are
None, `{}`, 0, `[]` and now, as in Prefect (`id` comes from `PREFECT__FLOW_RUN_ID` if set;
a server would be asked for the rest, and there is none)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.runtime._attributes import flow_run_id_from_environment, runtime_attribute

if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["flow_name", "flow_version", "id", "name", "parameters", "run_count", "scheduled_start_time", "tags"]

# What each attribute is, for type checkers: the values come from `__getattr__`, per read.
id: str | None
name: str | None
flow_name: str | None
flow_version: str | None
parameters: dict[str, Any]
run_count: int
tags: list[str]
scheduled_start_time: datetime


def __getattr__(name: str) -> Any:
    return runtime_attribute(__name__, "flow_run", FIELDS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


def get_id() -> str | None:
    context = FlowRunContext.get()
    if context is not None:
        return str(context.flow_run.id)
    if TaskRunContext.get() is not None:  # a task run outside flows: it has no flow run
        return None
    return flow_run_id_from_environment()


def get_name() -> str | None:
    context = FlowRunContext.get()
    return None if context is None else context.flow_run.name


def get_flow_name() -> str | None:
    context = FlowRunContext.get()
    return None if context is None else context.flow.name


def get_flow_version() -> str | None:
    context = FlowRunContext.get()
    return None if context is None else context.flow.version


def get_parameters() -> dict[str, Any]:
    context = FlowRunContext.get()
    return {} if context is None else context.parameters


def get_run_count() -> int:
    context = FlowRunContext.get()
    return 0 if context is None else context.flow_run.run_count


def get_tags() -> list[str]:
    context = FlowRunContext.get()
    return [] if context is None else list(context.flow_run.tags)


def get_scheduled_start_time() -> datetime:
    """When the flow run started (in-process a run starts when called); now outside runs."""
    context = FlowRunContext.get()
    if context is not None:
        return context.flow_run.expected_start_time
    from datetime import datetime, timezone

    return datetime.now(timezone.utc)


FIELDS: dict[str, Callable[[], Any]] = {
    "id": get_id,
    "name": get_name,
    "flow_name": get_flow_name,
    "flow_version": get_flow_version,
    "parameters": get_parameters,
    "run_count": get_run_count,
    "tags": get_tags,
    "scheduled_start_time": get_scheduled_start_time,
}
