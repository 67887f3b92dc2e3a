"""ferroflow.logging: Prefect's console lines, run loggers and print capture."""

import builtins
import io
import logging
import re
import sys
import threading
import time
import types
import uuid

import pytest

import ferroflow.logging as fflog
from ferroflow.exceptions import MissingContextError
from ferroflow.states import Completed, Failed, NotReady, State, StateType, exception_to_failed_state

LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} \| (?P<level>[A-Z]+ *) \| (?P<tail>.*)$")


def make_record(msg, *args, level=logging.INFO, name="ferroflow", created=None, **fields):
    record = logging.LogRecord(name, level, __file__, 1, msg, args, None)
    if created is not None:
        record.created = created
        record.msecs = round((created - int(created)) * 1000) % 1000
    record.__dict__.update(fields)
    return record


def prefix(record):
    hms = time.strftime("%H:%M:%S", time.localtime(record.created))
    return f"{hms}.{int(record.msecs):03d} | {record.levelname:<7} | "


@pytest.fixture
def records():
    """Every record reaching the `ferroflow` logger's handlers."""
    collected = []

    class Collect(logging.Handler):
        def emit(self, record):
            collected.append(record)

    handler = Collect()
    root = logging.getLogger("ferroflow")
    root.addHandler(handler)
    yield collected
    root.removeHandler(handler)


@pytest.fixture
def restore_logger_level():
    root = logging.getLogger("ferroflow")
    level = root.level
    yield
    root.setLevel(level)


# -- the formatter ---------------------------------------------------------------------


def test_design_doc_example_line():
    # 12:00:01.234 local time, as in DESIGN.md.
    created = time.mktime((2024, 1, 2, 12, 0, 1, 0, 0, -1)) + 0.234
    record = make_record(
        "Finished in state %s", Completed(), created=created, task_run_name="inc-0"
    )
    line = fflog.RunFormatter().format(record)
    assert line == "12:00:01.234 | INFO    | Task run 'inc-0' - Finished in state Completed()"


FAILED_TASK = exception_to_failed_state(ValueError("boom"))
FAILED_FLOW = exception_to_failed_state(KeyError("nope"), run_kind="Flow run")
TIMED_OUT = Failed(name="TimedOut", message="Task run exceeded timeout of 0.5 second(s)")
NOT_READY = NotReady("0190-abc")
CACHED = State(StateType.COMPLETED, name="Cached")
ALL_DONE = Completed(message="All states completed.")


@pytest.mark.parametrize(
    "level, fields, msg, args, tail",
    [
        (
            logging.INFO,
            {},
            "Starting temporary server on http://127.0.0.1:8661",
            (),
            "ferroflow - Starting temporary server on http://127.0.0.1:8661",
        ),
        (
            logging.INFO,
            {"flow_run_name": "hairy-hyena"},
            "Beginning flow run %r for flow %r",
            ("hairy-hyena", "returns-futures"),
            "Flow run 'hairy-hyena' - Beginning flow run 'hairy-hyena' for flow 'returns-futures'",
        ),
        (
            logging.INFO,
            {"task_run_name": "add-645"},
            "Finished in state %s",
            (Completed(),),
            "Task run 'add-645' - Finished in state Completed()",
        ),
        (
            logging.INFO,
            {"task_run_name": "cached-926"},
            "Finished in state %s",
            (CACHED,),
            "Task run 'cached-926' - Finished in state Cached(type=COMPLETED)",
        ),
        (
            logging.INFO,
            {"task_run_name": "flaky-735"},
            "Task run failed with exception: %r - Retry 1/2 will start immediately",
            (ValueError("boom"),),
            "Task run 'flaky-735' - Task run failed with exception: ValueError('boom')"
            " - Retry 1/2 will start immediately",
        ),
        (
            logging.ERROR,
            {"task_run_name": "flaky-735"},
            "Finished in state %s",
            (FAILED_TASK,),
            "Task run 'flaky-735' - Finished in state"
            " Failed('Task run encountered an exception ValueError: boom')",
        ),
        (
            logging.ERROR,
            {"task_run_name": "slow-474"},
            "Finished in state %s",
            (TIMED_OUT,),
            "Task run 'slow-474' - Finished in state"
            " TimedOut('Task run exceeded timeout of 0.5 second(s)', type=FAILED)",
        ),
        (
            logging.ERROR,
            {"task_run_name": "after-41b"},
            "Finished in state %s",
            (NOT_READY,),
            "Task run 'after-41b' - Finished in state NotReady(\"Upstream task run '0190-abc'"
            " did not reach a 'COMPLETED' state.\", type=PENDING)",
        ),
        (
            logging.INFO,
            {"flow_run_name": "micro-weasel"},
            "print from flow 2 3 [2, 3, 4]",
            (),
            "Flow run 'micro-weasel' - print from flow 2 3 [2, 3, 4]",
        ),
        (
            logging.INFO,
            {"flow_run_name": "celestial-rottweiler"},
            "Finished in state %s",
            (ALL_DONE,),
            "Flow run 'celestial-rottweiler' - Finished in state Completed('All states completed.')",
        ),
        (
            logging.INFO,
            {"flow_run_name": "cherry-peccary"},
            "Finished in state %s",
            (FAILED_FLOW,),
            "Flow run 'cherry-peccary' - Finished in state"
            " Failed(\"Flow run encountered an exception: KeyError: 'nope'\")",
        ),
    ],
)
def test_reference_lines(level, fields, msg, args, tail):
    record = make_record(msg, *args, level=level, created=time.time(), **fields)
    assert fflog.RunFormatter().format(record) == prefix(record) + tail


def test_task_run_name_wins_over_flow_run_name():
    record = make_record("m", task_run_name="t-1", flow_run_name="f")
    assert fflog.RunFormatter().format(record).endswith("| Task run 't-1' - m")


def test_standard_tail_uses_the_logger_name():
    record = make_record("m", name="ferroflow.task_runner.threadpool")
    assert fflog.RunFormatter().format(record).endswith("| ferroflow.task_runner.threadpool - m")


@pytest.mark.parametrize(
    "level, shown",
    [
        (logging.DEBUG, "DEBUG  "),
        (logging.INFO, "INFO   "),
        (logging.WARNING, "WARNING"),
        (logging.ERROR, "ERROR  "),
        (logging.CRITICAL, "CRITICAL"),
    ],
)
def test_level_column_is_padded_to_seven(level, shown):
    line = fflog.RunFormatter().format(make_record("m", level=level))
    assert line.split(" | ")[1] == shown


def test_traceback_is_appended():
    try:
        raise ValueError("attempt 1")
    except ValueError:
        record = make_record(
            "Encountered exception during execution: %r",
            ValueError("attempt 1"),
            level=logging.ERROR,
            flow_run_name="topaz-dachshund",
        )
        record.exc_info = sys.exc_info()
    text = fflog.RunFormatter().format(record)
    first, *rest = text.splitlines()
    assert first.endswith(
        "| ERROR   | Flow run 'topaz-dachshund' - Encountered exception during execution:"
        " ValueError('attempt 1')"
    )
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: attempt 1"


# -- logger configuration and the handler ----------------------------------------------


def test_ferroflow_logger_is_configured_once():
    root = logging.getLogger("ferroflow")
    fflog._configure()
    fflog._configure()
    consoles = [h for h in root.handlers if h.name == "ferroflow.console"]
    assert len(consoles) == 1
    assert isinstance(consoles[0], fflog.StderrHandler)
    assert isinstance(consoles[0].formatter, fflog.RunFormatter)
    assert root.propagate is False
    assert logging.getLogger("ferroflow.task_runs").parent is root
    assert logging.getLogger("ferroflow.flow_runs").parent is root


@pytest.mark.usefixtures("restore_logger_level")
@pytest.mark.parametrize(
    "value, level", [(None, logging.INFO), ("debug", logging.DEBUG), ("WARNING", 30), ("5", 5)]
)
def test_level_from_environment(monkeypatch, value, level):
    if value is None:
        monkeypatch.delenv("FERROFLOW_LOGGING_LEVEL", raising=False)
    else:
        monkeypatch.setenv("FERROFLOW_LOGGING_LEVEL", value)
    fflog._configure()
    assert logging.getLogger("ferroflow").level == level


@pytest.mark.usefixtures("restore_logger_level")
def test_bad_level_in_environment(monkeypatch):
    monkeypatch.setenv("FERROFLOW_LOGGING_LEVEL", "loud")
    with pytest.raises(ValueError, match="FERROFLOW_LOGGING_LEVEL='loud'"):
        fflog._configure()


def test_handler_writes_to_current_stderr(capfd):
    fflog.task_run_logger("inc-0").info("Finished in state %s", Completed())
    out, err = capfd.readouterr()
    assert out == ""
    match = LINE.match(err.rstrip("\n"))
    assert match, err
    assert match["level"] == "INFO   "
    assert match["tail"] == "Task run 'inc-0' - Finished in state Completed()"


def test_handler_follows_a_replaced_stderr(monkeypatch):
    replaced = io.StringIO()
    monkeypatch.setattr(sys, "stderr", replaced)
    fflog.flow_run_logger("hairy-hyena").warning("careful")
    assert replaced.getvalue().endswith("| WARNING | Flow run 'hairy-hyena' - careful\n")


def test_below_level_is_dropped(capfd):
    fflog.get_logger().debug("hidden")
    assert capfd.readouterr().err == ""


# -- loggers and adapters ----------------------------------------------------------------


def test_get_logger_names():
    assert fflog.get_logger().name == "ferroflow"
    assert fflog.get_logger("states").name == "ferroflow.states"
    assert fflog.get_logger("ferroflow.flows").name == "ferroflow.flows"


def test_task_run_logger_fields(records):
    task_run_id, flow_run_id = uuid.uuid4(), uuid.uuid4()
    logger = fflog.task_run_logger(
        "inc-0",
        task_name="inc",
        flow_run_name="hairy-hyena",
        flow_name="my-flow",
        task_run_id=task_run_id,
        flow_run_id=flow_run_id,
    )
    assert isinstance(logger, fflog.RunLoggerAdapter)
    assert logger.logger.name == "ferroflow.task_runs"
    logger.info("hello")
    (record,) = records
    assert record.name == "ferroflow.task_runs"
    assert (record.task_run_name, record.task_name) == ("inc-0", "inc")
    assert (record.flow_run_name, record.flow_name) == ("hairy-hyena", "my-flow")
    assert (record.task_run_id, record.flow_run_id) == (str(task_run_id), str(flow_run_id))


def test_run_loggers_fill_unknowns(records):
    fflog.task_run_logger("solo").info("x")
    fflog.flow_run_logger("lonely").info("y")
    task_record, flow_record = records
    assert task_record.task_name == task_record.flow_run_name == task_record.flow_name == "<unknown>"
    assert task_record.task_run_id is None and task_record.flow_run_id is None
    assert flow_record.name == "ferroflow.flow_runs"
    assert (flow_record.flow_run_name, flow_record.flow_name) == ("lonely", "<unknown>")


def test_adapter_merges_call_extra(records):
    logger = fflog.task_run_logger("inc-0", custom="adapter")
    logger.info("x", extra={"k": 1, "custom": "call"})
    logger.info("y")
    first, second = records
    assert (first.task_run_name, first.k, first.custom) == ("inc-0", 1, "call")
    assert second.custom == "adapter" and not hasattr(second, "k")


def test_adapter_child_keeps_run_fields(records, capfd):
    child = fflog.task_run_logger("inc-0").getChild("db", extra={"table": "t"})
    child.info("query")
    (record,) = records
    assert record.name == "ferroflow.task_runs.db"
    assert (record.task_run_name, record.table) == ("inc-0", "t")
    assert capfd.readouterr().err.rstrip().endswith("| Task run 'inc-0' - query")


# -- get_run_logger -----------------------------------------------------------------------


class FakeContext:
    current = None

    def __init__(self, **fields):
        self.__dict__.update(fields)

    @classmethod
    def get(cls):
        return cls.current


@pytest.fixture
def contexts(monkeypatch):
    """A stand-in `ferroflow.context` with the two context classes get_run_logger reads."""

    class TaskRunContext(FakeContext):
        current = None

    class FlowRunContext(FakeContext):
        current = None

    module = types.ModuleType("ferroflow.context")
    module.TaskRunContext = TaskRunContext
    module.FlowRunContext = FlowRunContext
    monkeypatch.setitem(sys.modules, "ferroflow.context", module)
    # ferroflow.logging imports its contexts at import (the package is layered: contexts
    # below logging), so the stand-ins replace its names too.
    monkeypatch.setattr(fflog, "TaskRunContext", TaskRunContext)
    monkeypatch.setattr(fflog, "FlowRunContext", FlowRunContext)
    return module


def ns(**fields):
    return types.SimpleNamespace(**fields)


def make_flow_ctx(contexts, name="hairy-hyena"):
    return contexts.FlowRunContext(
        flow_run=ns(name=name, id=uuid.uuid4()), flow=ns(name="my-flow")
    )


def make_task_ctx(contexts, flow_ctx=None, name="inc-0"):
    return contexts.TaskRunContext(
        task_run=ns(name=name, id=uuid.uuid4()),
        task=ns(name="inc"),
        flow_run=flow_ctx.flow_run if flow_ctx else None,
        flow=flow_ctx.flow if flow_ctx else None,
    )


def test_get_run_logger_outside_a_run(contexts):
    with pytest.raises(MissingContextError, match=r"^There is no active flow or task run context\.$"):
        fflog.get_run_logger()
    assert issubclass(MissingContextError, RuntimeError)


def test_get_run_logger_in_a_task(contexts, records, capfd):
    flow_ctx = make_flow_ctx(contexts)
    task_ctx = make_task_ctx(contexts, flow_ctx)
    contexts.FlowRunContext.current = flow_ctx
    contexts.TaskRunContext.current = task_ctx
    logger = fflog.get_run_logger()
    assert isinstance(logger, fflog.RunLoggerAdapter)
    logger.info("from task")
    (record,) = records
    assert record.name == "ferroflow.task_runs"
    assert record.task_run_name == "inc-0" and record.task_name == "inc"
    assert record.flow_run_name == "hairy-hyena" and record.flow_name == "my-flow"
    assert record.task_run_id == str(task_ctx.task_run.id)
    assert record.flow_run_id == str(flow_ctx.flow_run.id)
    assert capfd.readouterr().err.rstrip().endswith("| INFO    | Task run 'inc-0' - from task")


def test_get_run_logger_in_a_task_without_flow(contexts, records):
    contexts.TaskRunContext.current = make_task_ctx(contexts)
    fflog.get_run_logger().info("x")
    (record,) = records
    assert record.flow_run_name == "<unknown>" and record.flow_run_id is None


def test_get_run_logger_in_a_flow(contexts, records, capfd):
    flow_ctx = make_flow_ctx(contexts)
    contexts.FlowRunContext.current = flow_ctx
    fflog.get_run_logger().warning("from flow")
    (record,) = records
    assert record.name == "ferroflow.flow_runs"
    assert (record.flow_run_name, record.flow_name) == ("hairy-hyena", "my-flow")
    assert record.flow_run_id == str(flow_ctx.flow_run.id)
    assert not hasattr(record, "task_run_name")
    assert capfd.readouterr().err.rstrip().endswith("| WARNING | Flow run 'hairy-hyena' - from flow")


def test_get_run_logger_explicit_context(contexts, records):
    flow_ctx = make_flow_ctx(contexts, name="explicit-flow")
    contexts.TaskRunContext.current = make_task_ctx(contexts)
    fflog.get_run_logger(flow_ctx).info("x")
    fflog.get_run_logger(make_task_ctx(contexts, name="other-task")).info("y")
    flow_record, task_record = records
    assert flow_record.flow_run_name == "explicit-flow"
    assert not hasattr(flow_record, "task_run_name")
    assert task_record.task_run_name == "other-task"
    with pytest.raises(TypeError, match="unexpected type 'str' for context"):
        fflog.get_run_logger("not a context")


def test_get_run_logger_kwargs_become_fields(contexts, records):
    contexts.TaskRunContext.current = make_task_ctx(contexts)
    fflog.get_run_logger(request_id="r-1", task_name="renamed").info("x")
    (record,) = records
    assert record.request_id == "r-1"
    assert record.task_name == "renamed"


def test_disable_run_logger_outside_a_run(contexts, capfd):
    flow_runs = logging.getLogger("ferroflow.flow_runs")
    with fflog.disable_run_logger():
        logger = fflog.get_run_logger()
        logger.error("dropped")
        assert not logger.isEnabledFor(logging.CRITICAL)
    assert capfd.readouterr().err == ""
    assert flow_runs.disabled is False
    with pytest.raises(MissingContextError):
        fflog.get_run_logger()


def test_disable_run_logger_inside_a_run(contexts, records, capfd):
    contexts.TaskRunContext.current = make_task_ctx(contexts)
    with fflog.disable_run_logger():
        fflog.get_run_logger().info("dropped")
    fflog.get_run_logger().info("kept")
    assert [r.getMessage() for r in records] == ["kept"]
    assert "dropped" not in capfd.readouterr().err


def test_disable_run_logger_restores_previous_state():
    task_runs = logging.getLogger("ferroflow.task_runs")
    task_runs.disabled = True
    try:
        with fflog.disable_run_logger():
            pass
        assert task_runs.disabled is True
    finally:
        task_runs.disabled = False


# -- print capture ----------------------------------------------------------------------


@pytest.fixture
def restore_print(monkeypatch, interpreter_print):
    """The test starts from the interpreter's own print, as if nothing had swapped it yet
    (an earlier test may have installed capture, and Ray, imported by another test module,
    wraps print), and everything is put back after it. Returns that print."""
    real_print = interpreter_print
    monkeypatch.setattr(fflog, "_print_resolver", None)
    monkeypatch.setattr(fflog, "_original_print", real_print)
    monkeypatch.setattr(fflog, "_print_swapped", False)
    return real_print


@pytest.mark.usefixtures("restore_print")
def test_print_becomes_one_info_record(records, capfd):
    logger = fflog.flow_run_logger("micro-weasel")
    fflog.install_print_capture(lambda: logger)
    assert builtins.print is fflog.print_as_log
    print("print from flow", 2, 3, [2, 3, 4])
    out, err = capfd.readouterr()
    assert out == ""
    assert err.endswith("| INFO    | Flow run 'micro-weasel' - print from flow 2 3 [2, 3, 4]\n")
    (record,) = records
    assert record.levelno == logging.INFO
    if sys.version_info >= (3, 11):  # stacklevel through adapters is right from 3.11 on
        assert record.pathname == __file__ and record.funcName.startswith("test_print")


@pytest.mark.usefixtures("restore_print")
def test_print_arguments_are_honoured(records):
    fflog.install_print_capture(lambda: fflog.task_run_logger("t"))
    print("a", "b", sep="-", end="!\n")
    print("trailing\n\n")
    print("two\nlines", flush=True)
    print(file=sys.stderr)
    print("to stdout", file=sys.stdout)
    assert [r.getMessage() for r in records] == ["a-b!", "trailing", "two\nlines", "", "to stdout"]


@pytest.mark.usefixtures("restore_print")
def test_print_to_other_files_and_without_a_run_passes_through(records, capfd):
    run_logger = fflog.task_run_logger("t")
    current = {"logger": run_logger}
    fflog.install_print_capture(lambda: current["logger"])
    buffer = io.StringIO()
    print("to file", file=buffer)
    assert buffer.getvalue() == "to file\n"
    current["logger"] = None
    print("plain", "print", sep=",")
    assert records == []
    assert capfd.readouterr() == ("plain,print\n", "")


@pytest.mark.usefixtures("restore_print")
def test_print_as_log_without_capture_is_print(capfd):
    fflog._print_resolver = None
    fflog.print_as_log("x", 1)
    assert capfd.readouterr() == ("x 1\n", "")


def test_install_is_idempotent_and_keeps_the_real_print(restore_print, records):
    real_print = restore_print
    first, second = fflog.task_run_logger("first"), fflog.task_run_logger("second")
    fflog.install_print_capture(lambda: first)
    fflog.install_print_capture(lambda: second)
    assert builtins.print is fflog.print_as_log
    assert fflog._original_print is real_print
    print("hello")
    (record,) = records
    assert record.task_run_name == "second"


def test_a_print_wrapped_around_ours_is_left_in_place(restore_print, records, capfd):
    # Ray's progress bars wrap `builtins.print` when Ray is imported; an install after
    # that (a flow run's engine starting workers) must not take their wrapper, which
    # calls ours, as the real print: each would call the other until RecursionError.
    real_print = restore_print
    logger = fflog.task_run_logger("wrapped")
    fflog.install_print_capture(lambda: None)
    ours = builtins.print

    def wrapper(*args, **kwargs):
        return ours(*args, **kwargs)

    builtins.print = wrapper
    fflog.install_print_capture(lambda: logger)
    assert builtins.print is wrapper
    assert fflog._original_print is real_print
    print("through the wrapper")
    (record,) = records
    assert (record.task_run_name, record.getMessage()) == ("wrapped", "through the wrapper")
    fflog.install_print_capture(lambda: None)
    print("plain")
    assert capfd.readouterr().out == "plain\n"


def test_concurrent_installs_swap_once(restore_print):
    real_print = restore_print
    barrier = threading.Barrier(8)

    def install():
        barrier.wait()
        fflog.install_print_capture(lambda: None)

    threads = [threading.Thread(target=install) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builtins.print is fflog.print_as_log
    assert fflog._original_print is real_print


@pytest.mark.usefixtures("restore_print")
def test_concurrent_prints_stay_with_their_runs(records, capfd):
    local = threading.local()
    fflog.install_print_capture(lambda: getattr(local, "logger", None))
    count = 300
    barrier = threading.Barrier(2)

    def worker(tag):
        local.logger = fflog.task_run_logger(f"run-{tag}")
        barrier.wait()
        for i in range(count):
            print(tag, i)

    threads = [threading.Thread(target=worker, args=(tag,)) for tag in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print("main thread is not in a run")

    assert len(records) == 2 * count
    for tag in ("a", "b"):
        mine = [r.getMessage() for r in records if r.task_run_name == f"run-{tag}"]
        assert mine == [f"{tag} {i}" for i in range(count)]
    out, err = capfd.readouterr()
    assert out == "main thread is not in a run\n"
    lines = err.splitlines()
    assert len(lines) == 2 * count
    for line in lines:
        match = LINE.match(line)
        assert match, line
        tag = re.fullmatch(r"Task run 'run-(a|b)' - (a|b) \d+", match["tail"])
        assert tag and tag[1] == tag[2], line
