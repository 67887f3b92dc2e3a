"""ferroflow: Prefect's flow and task API on a scheduling core written in Rust.

Change `from prefect import flow, task` to `from ferroflow import flow, task`; flows run
in-process, with no server, and a `.map` over a million items costs about what the
work costs.
"""

from ferroflow._core import __version__
from ferroflow.context import get_run_context, tags
from ferroflow.flows import Flow, flow
from ferroflow.futures import as_completed, wait
from ferroflow.logging import get_run_logger
from ferroflow.states import State
from ferroflow.tasks import Task, task
from ferroflow.utilities.annotations import allow_failure, unmapped

__all__ = [
    "Flow",
    "State",
    "Task",
    "__version__",
    "allow_failure",
    "as_completed",
    "flow",
    "get_run_context",
    "get_run_logger",
    "tags",
    "task",
    "unmapped",
    "wait",
]
