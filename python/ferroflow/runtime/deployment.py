"""`prefect.runtime.deployment`, in-process: ferroflow runs flows without deployments, so
`id`, `name` and `version` are None; `flow_run_id` is the current flow run's, and
`parameters` are its parameters (what Prefect reads from its server for a run that has
no deployment), else `{}`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferroflow.context import FlowRunContext
from ferroflow.runtime._attributes import flow_run_id_from_environment, runtime_attribute

__all__ = ["flow_run_id", "id", "name", "parameters", "version"]

# What each attribute is, for type checkers: the values come from `__getattr__`, per read.
id: str | None
name: str | None
version: str | None
flow_run_id: str | None
parameters: dict[str, Any]


def __getattr__(name: str) -> Any:
    return runtime_attribute(__name__, "deployment", FIELDS, name)


def __dir__() -> list[str]:
    return sorted(__all__)


def _none() -> None:
    return None


def get_flow_run_id() -> str | None:
    context = FlowRunContext.get()
    return flow_run_id_from_environment() if context is None else str(context.flow_run.id)


def get_parameters() -> dict[str, Any]:
    context = FlowRunContext.get()
    return {} if context is None else context.parameters


FIELDS: dict[str, Callable[[], Any]] = {
    "id": _none,
    "name": _none,
    "version": _none,
    "flow_run_id": get_flow_run_id,
    "parameters": get_parameters,
}
