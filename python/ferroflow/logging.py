"""Run loggers and console output in Prefect's format, on the standard `logging` module.

Importing this module configures the `ferroflow` logger once: one stderr handler with
`RunFormatter`, level from `FERROFLOW_LOGGING_LEVEL` (default INFO), no propagation,
so lines look exactly like Prefect's:

    12:00:01.234 | INFO    | Task run 'inc-0' - Finished in state Completed()
"""

from __future__ import annotations

import builtins
import io
import logging
import os
import sys
import threading
from collections.abc import Callable, Generator, MutableMapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TextIO

from ferroflow.context import FlowRunContext, TaskRunContext
from ferroflow.exceptions import MissingContextError

if TYPE_CHECKING:
    from typing import TypeAlias

    # Generic to the type checkers; subscriptable at run time only from Python 3.11.
    _StreamHandler = logging.StreamHandler[TextIO]
    _LoggerAdapter = logging.LoggerAdapter[logging.Logger]
    #: What a run logger is: the plain logger, or an adapter adding the run's fields.
    RunLogger: TypeAlias = logging.Logger | logging.LoggerAdapter[logging.Logger]
else:
    _StreamHandler = logging.StreamHandler
    _LoggerAdapter = logging.LoggerAdapter

__all__ = [
    "DATE_FORMAT",
    "FLOW_RUN_FORMAT",
    "STANDARD_FORMAT",
    "TASK_RUN_FORMAT",
    "RunFormatter",
    "RunLoggerAdapter",
    "StderrHandler",
    "disable_run_logger",
    "flow_run_logger",
    "get_logger",
    "get_run_logger",
    "install_print_capture",
    "print_as_log",
    "task_run_logger",
]

# Prefect's console formats (logging.yml), verbatim.
STANDARD_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | %(name)s - %(message)s"
FLOW_RUN_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | Flow run %(flow_run_name)r - %(message)s"
TASK_RUN_FORMAT = "%(asctime)s.%(msecs)03d | %(levelname)-7s | Task run %(task_run_name)r - %(message)s"
DATE_FORMAT = "%H:%M:%S"

_ROOT_NAME = "ferroflow"
_FLOW_RUNS = "ferroflow.flow_runs"
_TASK_RUNS = "ferroflow.task_runs"
_UNKNOWN = "<unknown>"  # what Prefect records for a run or flow name it cannot know
_HANDLER_NAME = "ferroflow.console"


class RunFormatter(logging.Formatter):
    """Prefect's console format, picking the tail per record.

    A record carrying `task_run_name` reads `Task run 'name' - msg`, one carrying
    `flow_run_name` reads `Flow run 'name' - msg`, any other `logger.name - msg`.
    Deciding on the record's fields, not the logger name, keeps child loggers of a
    run adapter in the run's format.
    """

    def __init__(self) -> None:
        super().__init__(STANDARD_FORMAT, datefmt=DATE_FORMAT)
        self._flow_run_style = logging.PercentStyle(FLOW_RUN_FORMAT)
        self._task_run_style = logging.PercentStyle(TASK_RUN_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = record.__dict__
        if "task_run_name" in fields:
            return self._task_run_style.format(record)
        if "flow_run_name" in fields:
            return self._flow_run_style.format(record)
        return self._style.format(record)


class StderrHandler(_StreamHandler):
    """A StreamHandler writing to whatever `sys.stderr` is at emit time.

    Binding the stream at import would write past pytest's capsys/capfd and any
    later redirection of `sys.stderr`.
    """

    def __init__(self) -> None:
        logging.Handler.__init__(self)  # StreamHandler's __init__ would assign `stream`

    # Read-only on purpose: the stream is whatever sys.stderr is now.
    @property
    def stream(self) -> TextIO:  # type: ignore[override]  # pyright: ignore[reportIncompatibleVariableOverride]
        return sys.stderr


def _level_from_env() -> int | str:
    raw = os.environ.get("FERROFLOW_LOGGING_LEVEL", "INFO")
    value = raw.strip().upper()
    if value.isdigit():
        return int(value)
    # The one lookup of a level by name that 3.10 has (getLevelNamesMapping is 3.11+).
    if not isinstance(logging.getLevelName(value), int):  # pyright: ignore[reportDeprecated]
        raise ValueError(f"FERROFLOW_LOGGING_LEVEL={raw!r} is not a logging level name")
    return value


def _configure() -> None:
    """Set up the `ferroflow` logger; a second call (a reload) adds no second handler."""
    logger = logging.getLogger(_ROOT_NAME)
    logger.setLevel(_level_from_env())
    logger.propagate = False
    if not any(h.name == _HANDLER_NAME for h in logger.handlers):
        handler = StderrHandler()
        handler.name = _HANDLER_NAME
        handler.setFormatter(RunFormatter())
        logger.addHandler(handler)


_configure()


class RunLoggerAdapter(_LoggerAdapter):
    """A LoggerAdapter that merges its run fields with a call's `extra=`.

    The stock adapter replaces the call's `extra` with its own (bpo-32732); Prefect's
    `PrefectLogAdapter` merges them, and so does this one.
    """

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = kwargs.get("extra")
        # No copy when the call brings no extra: makeRecord only reads it.
        kwargs["extra"] = {**(self.extra or {}), **extra} if extra else self.extra
        return msg, kwargs

    def getChild(self, suffix: str, extra: dict[str, Any] | None = None) -> RunLoggerAdapter:
        """A child logger that keeps this adapter's run fields (plus `extra`)."""
        fields = {**(self.extra or {}), **(extra or {})}
        return RunLoggerAdapter(self.logger.getChild(suffix), fields)


def get_logger(name: str | None = None) -> logging.Logger:
    """The `ferroflow` logger, or `ferroflow.<name>` (a full `ferroflow.x` name is kept)."""
    if not name:
        return logging.getLogger(_ROOT_NAME)
    if name.startswith(_ROOT_NAME + "."):
        return logging.getLogger(name)
    return logging.getLogger(f"{_ROOT_NAME}.{name}")


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def task_run_logger(
    task_run_name: str,
    task_name: str | None = None,
    flow_run_name: str | None = None,
    flow_name: str | None = None,
    task_run_id: Any = None,
    flow_run_id: Any = None,
    **kwargs: Any,
) -> RunLoggerAdapter:
    """A logger for one task run; its records carry Prefect's task-run fields and `kwargs`."""
    extra = {
        "task_run_id": _str_or_none(task_run_id),
        "flow_run_id": _str_or_none(flow_run_id),
        "task_run_name": task_run_name,
        "task_name": task_name or _UNKNOWN,
        "flow_run_name": flow_run_name or _UNKNOWN,
        "flow_name": flow_name or _UNKNOWN,
    }
    extra.update(kwargs)
    return RunLoggerAdapter(logging.getLogger(_TASK_RUNS), extra)


def flow_run_logger(
    flow_run_name: str,
    flow_name: str | None = None,
    flow_run_id: Any = None,
    **kwargs: Any,
) -> RunLoggerAdapter:
    """A logger for one flow run; its records carry Prefect's flow-run fields and `kwargs`."""
    extra = {
        "flow_run_name": flow_run_name,
        "flow_run_id": _str_or_none(flow_run_id),
        "flow_name": flow_name or _UNKNOWN,
    }
    extra.update(kwargs)
    return RunLoggerAdapter(logging.getLogger(_FLOW_RUNS), extra)


# Handed out by get_run_logger outside any run while run logging is disabled: drops all.
_null_logger = logging.Logger("ferroflow.null")
_null_logger.disabled = True


def get_run_logger(context: Any = None, **kwargs: Any) -> RunLogger:
    """The logger of the current task run, else of the current flow run.

    `context` picks a run context explicitly instead of the active one; `kwargs`
    become fields of every record. Outside any run this raises MissingContextError,
    unless `disable_run_logger()` is active, when a logger that drops everything is
    returned (so `my_task.fn()` can be unit-tested).
    """
    if context is None:
        task_ctx = TaskRunContext.get()
        flow_ctx = None if task_ctx is not None else FlowRunContext.get()
    elif isinstance(context, TaskRunContext):
        task_ctx, flow_ctx = context, None
    elif isinstance(context, FlowRunContext):
        task_ctx, flow_ctx = None, context
    else:
        raise TypeError(
            f"Received unexpected type {type(context).__name__!r} for context. "
            "Expected one of 'None', 'FlowRunContext', or 'TaskRunContext'."
        )

    if task_ctx is not None:
        flow_run, flow = task_ctx.flow_run, task_ctx.flow
        fields: dict[str, Any] = {
            "task_run_name": task_ctx.task_run.name,
            "task_name": task_ctx.task.name,
            "flow_run_name": flow_run.name if flow_run is not None else None,
            "flow_name": flow.name if flow is not None else None,
            "task_run_id": task_ctx.task_run.id,
            "flow_run_id": flow_run.id if flow_run is not None else None,
        }
        fields.update(kwargs)  # as in Prefect, a caller's field wins
        return task_run_logger(**fields)
    if flow_ctx is not None:
        fields = {
            "flow_run_name": flow_ctx.flow_run.name,
            "flow_name": flow_ctx.flow.name,
            "flow_run_id": flow_ctx.flow_run.id,
        }
        fields.update(kwargs)
        return flow_run_logger(**fields)
    if logging.getLogger(_FLOW_RUNS).disabled and logging.getLogger(_TASK_RUNS).disabled:
        return _null_logger
    raise MissingContextError("There is no active flow or task run context.")


@contextmanager
def disable_run_logger() -> Generator[None, None, None]:
    """Silence both run loggers for the block, process-wide (as Prefect), then restore them."""
    loggers = [logging.getLogger(_FLOW_RUNS), logging.getLogger(_TASK_RUNS)]
    previous = [logger.disabled for logger in loggers]
    try:
        for logger in loggers:
            logger.disabled = True
        yield
    finally:
        for logger, was_disabled in zip(loggers, previous, strict=True):
            logger.disabled = was_disabled


# -- print capture (log_prints) --------------------------------------------------------

_print_lock = threading.Lock()
_original_print: Callable[..., None] = builtins.print
_print_resolver: Callable[[], RunLogger | None] | None = None
#: Whether `install_print_capture` has put `print_as_log` in `builtins` yet.
_print_swapped = False


def _print_in_one_write(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`print`, except that the whole line (sep and end included) reaches the stream in
    one `write`, so lines printed by concurrent threads never merge. Formatting (and its
    errors) is print's own; `file=` and `flush=` keep their meaning."""
    if not _is_builtin(_original_print):
        return _original_print(*args, **kwargs)  # someone else's print: leave it alone
    file = kwargs.pop("file", None)
    flush = kwargs.pop("flush", False)
    if file is None:
        file = sys.stdout
        if file is None:  # no console (pythonw): print does nothing either
            return _original_print(*args, **kwargs)
    buffer = io.StringIO()
    _original_print(*args, file=buffer, **kwargs)
    file.write(buffer.getvalue())
    if flush:
        file.flush()


def print_as_log(*args: Any, **kwargs: Any) -> None:
    """`print`, except that while the current run logs its prints it becomes one INFO record.

    The run's logger comes from the resolver given to `install_print_capture`.
    Prints to a file other than stdout/stderr, and every print when the resolver
    returns None, are printed as `print` does, in one write to the stream.
    """
    resolver = _print_resolver
    if resolver is None:
        return _print_in_one_write(args, kwargs)
    file = kwargs.get("file")
    if file is not None and file is not sys.stdout and file is not sys.stderr:
        return _print_in_one_write(args, kwargs)
    logger = resolver()
    if logger is None:
        return _print_in_one_write(args, kwargs)
    # Let print itself do sep/end/str(); Prefect then strips the trailing whitespace.
    buffer = io.StringIO()
    kwargs["file"] = buffer
    _original_print(*args, **kwargs)
    logger.info(buffer.getvalue().rstrip(), stacklevel=2)


def install_print_capture(
    resolver: Callable[[], RunLogger | None],
) -> None:
    """Route prints through `resolver()`'s logger, by swapping `builtins.print` once.

    `resolver` is called on every print and returns the current run's logger, or None
    to leave the print alone (it is then written in one piece). The swap is process-wide
    and happens once; calling again only replaces the resolver, and the real `print` is
    kept for pass-through.
    """
    global _original_print, _print_resolver, _print_swapped
    with _print_lock:
        _print_resolver = resolver
        current = builtins.print
        if current is print_as_log:
            return
        # Once swapped, a `print` that is neither ours nor the interpreter's was put there
        # after us and may call ours (Ray's progress bars wrap it so): taking it as the real
        # one would make each call the other forever. It is left in place; prints still
        # reach ours through it.
        if not _print_swapped or _is_builtin(current):
            _original_print = current
            builtins.print = print_as_log
            _print_swapped = True


def _is_builtin(function: Callable[..., Any]) -> bool:
    return getattr(function, "__module__", None) == "builtins"
