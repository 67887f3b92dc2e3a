"""`print` while ferroflow runs tasks: one write per call, and `log_prints`.

`builtins.print` is swapped once, process-wide, the first time a task runner starts
worker threads or a task or flow asks for `log_prints`. Each print then asks which run
the calling thread executes and whether that run (or, for a task that does not say, its
flow run) logs its prints; a print that is not logged is written in one piece, so lines
printed by concurrent tasks never merge.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ferroflow.context import TaskRunContext, current_flow_run_context
from ferroflow.logging import install_print_capture, task_run_logger

if TYPE_CHECKING:
    from ferroflow.logging import RunLogger


def _print_logger() -> RunLogger | None:
    task_context = TaskRunContext.get()
    if task_context is not None:
        if not task_context.log_prints:
            return None
        flow_context = task_context.flow_run_context
        run_name, task = task_context.task_run.name, task_context.task
        if flow_context is None:
            return task_run_logger(run_name, task_name=task.name)
        flow_run = flow_context.flow_run
        return task_run_logger(
            run_name,
            task_name=task.name,
            flow_run_name=flow_run.name,
            flow_name=flow_context.flow.name,
            flow_run_id=flow_run.id,
        )
    flow_context = current_flow_run_context()
    if flow_context is not None and flow_context.log_prints:
        logger: RunLogger = flow_context.logger
        return logger
    return None


def enable_print_capture() -> None:
    install_print_capture(_print_logger)
