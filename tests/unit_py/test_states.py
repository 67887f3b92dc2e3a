"""ferroflow.states: Prefect's State model, names, messages, formats and helpers."""

import asyncio
import concurrent.futures
import pickle
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from ferroflow.exceptions import (
    CancelledRun,
    CrashedRun,
    FailedRun,
    PausedRun,
    TerminationSignal,
    UnfinishedRun,
)
from ferroflow.states import (
    TERMINAL_STATES,
    AwaitingConcurrencySlot,
    AwaitingRetry,
    Cancelled,
    Cancelling,
    Completed,
    Crashed,
    Failed,
    InfrastructurePending,
    Late,
    NotReady,
    Paused,
    Pending,
    Retrying,
    Running,
    Scheduled,
    State,
    StateDetails,
    StateGroup,
    StateType,
    Submitting,
    Suspended,
    exception_to_crashed_state,
    exception_to_failed_state,
    get_state_exception,
    is_state_iterable,
    raise_state_exception,
    return_value_to_state,
)
from ferroflow.utilities.annotations import quote, unmapped


def run_state(constructor, **kwargs):
    """A state as the engine makes it: carrying a run id, so it is not 'manual'."""
    return constructor(state_details=StateDetails(task_run_id=uuid.uuid4()), **kwargs)


# -- the model --------------------------------------------------------------------------


def test_state_types_and_terminal_set():
    assert [t.value for t in StateType] == [
        "SCHEDULED",
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "CRASHED",
        "PAUSED",
        "CANCELLING",
    ]
    assert TERMINAL_STATES == {
        StateType.COMPLETED,
        StateType.CANCELLED,
        StateType.FAILED,
        StateType.CRASHED,
    }
    assert StateType.COMPLETED == "COMPLETED"  # a str enum, as Prefect's
    assert repr(StateType.FAILED) == "StateType.FAILED"


@pytest.mark.parametrize("state_type", list(StateType))
def test_name_defaults_to_title_cased_type(state_type):
    state = State(state_type)
    assert state.name == state_type.value.capitalize()
    assert str(state) == f"{state.name}()"


def test_fields_and_defaults():
    before = datetime.now(timezone.utc)
    state = State(StateType.COMPLETED)
    assert state.type is StateType.COMPLETED
    assert state.message is None
    assert state.data is None
    assert before <= state.timestamp <= datetime.now(timezone.utc)
    assert state.timestamp.tzinfo is not None
    assert isinstance(state.id, uuid.UUID)
    assert state.id == state.id  # made once, then kept
    details = state.state_details
    assert isinstance(details, StateDetails)
    assert details.flow_run_id is None and details.task_run_id is None
    assert details.pause_reschedule is False


def test_type_given_as_string_and_bad_type():
    assert State("FAILED").type is StateType.FAILED
    with pytest.raises(ValueError):
        State("BROKEN")


def test_explicit_fields_are_kept():
    ts = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    state_id = uuid.uuid4()
    state = State(
        StateType.COMPLETED,
        name="Cached",
        message="m",
        data=7,
        timestamp=ts,
        state_details={"cache_key": "k"},
        id=state_id,
    )
    assert (state.name, state.message, state.data, state.timestamp, state.id) == (
        "Cached",
        "m",
        7,
        ts,
        state_id,
    )
    assert state.state_details.cache_key == "k"


def test_is_predicates_compare_on_type():
    cached = State(StateType.COMPLETED, name="Cached")
    timed_out = Failed(name="TimedOut")
    assert cached.is_completed() and cached.is_final()
    assert timed_out.is_failed() and timed_out.is_final()
    checks = {
        "is_scheduled": Scheduled(),
        "is_pending": NotReady("x"),
        "is_running": Retrying(),
        "is_completed": cached,
        "is_failed": timed_out,
        "is_crashed": Crashed(),
        "is_cancelled": Cancelled(),
        "is_cancelling": Cancelling(),
        "is_paused": Suspended(),
    }
    for predicate, state in checks.items():
        for other_predicate in checks:
            assert getattr(state, other_predicate)() is (other_predicate == predicate)
    assert [s.is_final() for s in (Pending(), Running(), Paused(), Cancelling())] == [False] * 4
    assert all(s.is_final() for s in (Completed(), Failed(), Crashed(), Cancelled()))


def test_subscriptable_for_type_hints():
    assert State[int] is not None


# -- str / repr, every example string in the reference -----------------------------------


@pytest.mark.parametrize(
    "state, expected",
    [
        (Completed(), "Completed()"),
        (State(StateType.COMPLETED, name="Cached"), "Cached(type=COMPLETED)"),
        (
            exception_to_failed_state(ValueError("boom")),
            "Failed('Task run encountered an exception ValueError: boom')",
        ),
        (
            exception_to_failed_state(KeyError("nope"), run_kind="Flow run"),
            "Failed(\"Flow run encountered an exception: KeyError: 'nope'\")",
        ),
        (
            Failed(name="TimedOut", message="Task run exceeded timeout of 0.5 second(s)"),
            "TimedOut('Task run exceeded timeout of 0.5 second(s)', type=FAILED)",
        ),
        (
            NotReady("0190-abc"),
            "NotReady(\"Upstream task run '0190-abc' did not reach a 'COMPLETED' state.\","
            " type=PENDING)",
        ),
        (Completed(message="All states completed."), "Completed('All states completed.')"),
        (Pending(), "Pending()"),
        (Running(), "Running()"),
        (Retrying(), "Retrying(type=RUNNING)"),
        (AwaitingRetry(), "AwaitingRetry(type=SCHEDULED)"),
        (Completed(name="Skipped"), "Skipped(type=COMPLETED)"),
    ],
)
def test_str_matches_prefect(state, expected):
    assert str(state) == expected


def test_str_hides_type_when_name_matches_it_case_insensitively():
    assert str(State(StateType.COMPLETED, name="COMPLETED")) == "COMPLETED()"


def test_repr_matches_prefect():
    assert repr(Completed(data=[1, 2])) == "Completed(message=None, type=COMPLETED, result=[1, 2])"
    err = ValueError("boom")
    assert repr(Failed(message="m", data=err)) == (
        "Failed(message='m', type=FAILED, result=ValueError('boom'))"
    )
    assert repr(State(StateType.COMPLETED, name="Cached", data="v")) == (
        "Cached(message=None, type=COMPLETED, result='v')"
    )


# -- constructors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "constructor, state_type, name",
    [
        (Scheduled, StateType.SCHEDULED, "Scheduled"),
        (Pending, StateType.PENDING, "Pending"),
        (Running, StateType.RUNNING, "Running"),
        (Completed, StateType.COMPLETED, "Completed"),
        (Failed, StateType.FAILED, "Failed"),
        (Crashed, StateType.CRASHED, "Crashed"),
        (Cancelling, StateType.CANCELLING, "Cancelling"),
        (Cancelled, StateType.CANCELLED, "Cancelled"),
        (Paused, StateType.PAUSED, "Paused"),
        (Suspended, StateType.PAUSED, "Suspended"),
        (AwaitingRetry, StateType.SCHEDULED, "AwaitingRetry"),
        (AwaitingConcurrencySlot, StateType.SCHEDULED, "AwaitingConcurrencySlot"),
        (Retrying, StateType.RUNNING, "Retrying"),
        (Late, StateType.SCHEDULED, "Late"),
        (Submitting, StateType.PENDING, "Submitting"),
        (InfrastructurePending, StateType.PENDING, "InfrastructurePending"),
    ],
)
def test_constructors(constructor, state_type, name):
    state = constructor(message="msg", data=1)
    assert (state.type, state.name, state.message, state.data) == (state_type, name, "msg", 1)


def test_constructors_take_cls_and_state_details():
    class MyState(State):
        __slots__ = ()

    state = Completed(cls=MyState, state_details={"task_run_id": "t"})
    assert type(state) is MyState
    assert state.state_details.task_run_id == "t"


def test_scheduled_times():
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert Scheduled(scheduled_time=at).state_details.scheduled_time == at
    assert AwaitingRetry(scheduled_time=at).state_details.scheduled_time == at
    assert Late().state_details.scheduled_time is not None
    assert State(StateType.SCHEDULED).state_details.scheduled_time is not None
    with pytest.raises(ValueError, match="extra scheduled_time"):
        Scheduled(scheduled_time=at, state_details=StateDetails(scheduled_time=at))


def test_paused_and_suspended():
    paused = Paused(timeout_seconds=60, pause_key="k")
    details = paused.state_details
    assert details.pause_key == "k"
    assert details.pause_reschedule is False
    assert timedelta(seconds=59) < details.pause_timeout - datetime.now(timezone.utc) <= timedelta(
        seconds=60
    )
    at = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert Paused(pause_expiration_time=at).state_details.pause_timeout == at
    assert Paused().state_details.pause_timeout is None
    assert Suspended().state_details.pause_reschedule is True
    with pytest.raises(ValueError, match="Cannot supply both"):
        Paused(timeout_seconds=1, pause_expiration_time=at)
    with pytest.raises(ValueError, match="extra pause timeout"):
        Paused(state_details=StateDetails(pause_timeout=at))


def test_not_ready_message_and_override():
    state = NotReady("abc")
    assert state.type is StateType.PENDING and state.name == "NotReady"
    assert state.message == "Upstream task run 'abc' did not reach a 'COMPLETED' state."
    assert NotReady("abc", message="custom").message == "custom"


# -- result() ------------------------------------------------------------------------------


@pytest.mark.parametrize("constructor", [Pending, Running, Scheduled, Cancelling, Retrying])
def test_result_of_unfinished_state_raises_unfinished_run(constructor):
    state = constructor()
    with pytest.raises(UnfinishedRun) as info:
        state.result()
    assert str(info.value) == (
        f"Run is in {state.type.value} state, its result is not available."
    )
    with pytest.raises(UnfinishedRun):
        state.result(raise_on_failure=False)


def test_result_of_not_ready_is_the_reference_message():
    with pytest.raises(UnfinishedRun, match=r"^Run is in PENDING state, its result is not avail"):
        NotReady("x").result(raise_on_failure=False)


def test_result_of_paused_state_raises_paused_run():
    state = Paused()
    with pytest.raises(PausedRun, match=r"Run is paused, its result is not available\.") as info:
        state.result(raise_on_failure=False)
    assert info.value.state is state


def test_result_of_completed_state_is_its_data():
    assert Completed(data=42).result() == 42
    assert State(StateType.COMPLETED, name="Cached", data="v").result() == "v"
    assert Completed().result() is None  # a task that returned None
    nested = [Completed(data=1)]
    assert Completed(data=nested).result() is nested


@pytest.mark.parametrize("constructor", [Failed, Crashed, Cancelled])
def test_result_of_failed_state_raises_or_returns_the_stored_exception(constructor):
    err = ValueError("boom")
    state = constructor(data=err)
    with pytest.raises(ValueError) as info:
        state.result()
    assert info.value is err
    assert state.result(raise_on_failure=False) is err


@pytest.mark.parametrize(
    "constructor, wrapper, default",
    [
        (Failed, FailedRun, "Run failed."),
        (Crashed, CrashedRun, "Run crashed."),
        (Cancelled, CancelledRun, "Run cancelled."),
    ],
)
def test_result_without_an_exception_builds_one(constructor, wrapper, default):
    with pytest.raises(wrapper, match="the message"):
        constructor(message="the message").result()
    returned = constructor(message="the message").result(raise_on_failure=False)
    assert type(returned) is wrapper and str(returned) == "the message"
    with pytest.raises(wrapper, match=default):
        constructor().result()
    with pytest.raises(wrapper, match="string data"):
        constructor(data="string data").result()


def test_result_of_aggregate_failed_state():
    err = KeyError("inner")
    inner = [run_state(Completed, data=1), run_state(Failed, data=err)]
    outer = return_value_to_state(inner)
    with pytest.raises(KeyError) as info:
        outer.result()
    assert info.value is err
    assert outer.result(raise_on_failure=False) is inner  # Prefect returns the data as is


def test_aresult():
    assert asyncio.run(Completed(data=3).aresult()) == 3


# -- exceptions to states --------------------------------------------------------------


def test_exception_to_failed_state():
    err = ValueError("boom")
    state = exception_to_failed_state(err)
    assert state.type is StateType.FAILED and state.name == "Failed"
    assert state.data is err
    assert state.message == "Task run encountered an exception ValueError: boom"
    assert state.state_details.retriable is False
    flow_state = exception_to_failed_state(KeyError("nope"), run_kind="Flow run")
    assert flow_state.message == "Flow run encountered an exception: KeyError: 'nope'"


def test_exception_to_failed_state_message_prefix_and_current_exception():
    assert exception_to_failed_state(ValueError("x"), message="Oops").message == "Oops ValueError: x"
    assert exception_to_failed_state(ValueError("x"), message="").message == "ValueError: x"
    current = RuntimeError("current")
    try:
        raise current
    except RuntimeError:
        state = exception_to_failed_state()
    assert state.data is current
    with pytest.raises(ValueError, match="no active exception"):
        exception_to_failed_state()
    with pytest.raises(ValueError, match="run_kind"):
        exception_to_failed_state(ValueError(), run_kind="Job run")


@pytest.mark.parametrize(
    "exc, message",
    [
        (KeyboardInterrupt(), "Execution was aborted by an interrupt signal."),
        (SystemExit(1), "Execution was aborted by Python system exit call."),
        (TerminationSignal(15), "Execution was aborted by a termination signal."),
        (asyncio.CancelledError(), "Execution was cancelled by the runtime environment."),
        (
            concurrent.futures.CancelledError("Task run cancelled by the task runner"),
            "Execution was interrupted by an unexpected exception: "
            "CancelledError: Task run cancelled by the task runner",
        ),
        (
            TypeError("bad"),
            "Execution was interrupted by an unexpected exception: TypeError: bad",
        ),
    ],
)
def test_exception_to_crashed_state(exc, message):
    state = exception_to_crashed_state(exc)
    assert state.type is StateType.CRASHED and state.name == "Crashed"
    assert state.message == message
    assert state.data is exc


def test_get_and_raise_state_exception():
    err = ValueError("x")
    assert get_state_exception(Failed(data=err)) is err
    assert get_state_exception(Failed(data=Crashed(data=err))) is err
    with pytest.raises(ValueError, match="Expected failed or crashed state"):
        get_state_exception(Completed())
    with pytest.raises(TypeError, match="cannot be resolved into an exception"):
        get_state_exception(Failed(data=123))
    with pytest.raises(ValueError, match="none were failed"):
        get_state_exception(Failed(data=[Completed()]))
    assert raise_state_exception(Completed()) is None
    assert raise_state_exception(Pending()) is None
    with pytest.raises(ValueError) as info:
        raise_state_exception(Failed(data=err))
    assert info.value is err
    with pytest.raises(CancelledRun):
        raise_state_exception(Cancelled())


# -- return values to states -----------------------------------------------------------


def test_manual_state_is_used_as_is():
    skipped = Completed(name="Skipped", message="nothing to do")
    assert return_value_to_state(skipped) is skipped
    failed = Failed(message="by hand")
    assert return_value_to_state(failed) is failed


def test_single_run_state_is_aggregated():
    completed = run_state(Completed, data=1)
    state = return_value_to_state(completed)
    assert str(state) == "Completed('All states completed.')"
    assert state.data is completed
    failed = run_state(Failed, data=ValueError())
    assert str(return_value_to_state(failed)) == "Failed('1/1 states failed.')"


def test_flow_run_id_also_marks_a_run_state():
    state = Completed(state_details=StateDetails(flow_run_id="f"))
    assert return_value_to_state(state) is not state


@pytest.mark.parametrize(
    "states, expected",
    [
        ([Completed(), Completed()], "Completed('All states completed.')"),
        ((Completed(), Failed()), "Failed('1/2 states failed.')"),
        ([Completed(), Failed(), Crashed()], "Failed('2/3 states failed.')"),
        ([Completed(), Failed(), Cancelled()], "Cancelled('1/3 states cancelled.')"),
        ([Completed(), Paused(), Failed()], "Paused('1/3 states paused.')"),
        ([Completed(), Pending()], "Failed('1/2 states are not final.')"),
        (
            [State(StateType.COMPLETED, name="Cached"), Completed()],
            "Completed('All states completed.')",
        ),
    ],
)
def test_iterables_of_states_are_aggregated(states, expected):
    state = return_value_to_state(states)
    assert str(state) == expected
    assert state.data is states


def test_set_of_states_is_aggregated():
    assert str(return_value_to_state({Completed(), Failed()})) == "Failed('1/2 states failed.')"


@pytest.mark.parametrize("value", [[], (), 5, None, "text", {"a": Completed()}, [Completed(), 1]])
def test_other_values_are_completed_data(value):
    state = return_value_to_state(value)
    assert str(state) == "Completed()"
    assert state.data is value


def test_generator_is_consumed_into_a_list():
    state = return_value_to_state(x for x in range(3))
    assert state.data == [0, 1, 2]


def test_quoted_states_are_data():
    wrapped = quote([Failed()])
    assert return_value_to_state(wrapped).data is wrapped
    assert not is_state_iterable(unmapped((Completed(),)))


def test_is_state_iterable():
    assert is_state_iterable([Completed()])
    assert is_state_iterable((Completed(), Failed()))
    assert is_state_iterable({Completed()})
    assert not is_state_iterable([])
    assert not is_state_iterable([Completed(), 1])
    assert not is_state_iterable(Completed())
    assert not is_state_iterable(iter([Completed()]))


def test_state_group():
    group = StateGroup([Completed(), Failed(), Crashed(), Cancelled(), Paused(), Pending()])
    assert group.total_count == 6
    assert group.fail_count == 2
    assert group.cancelled_count == 1 and group.paused_count == 1
    assert group.final_count == 4 and group.not_final_count == 2
    assert not group.all_completed() and not group.all_final()
    assert group.any_failed() and group.any_cancelled() and group.any_paused()
    assert repr(group) == (
        "StateGroup<total=6, not_final=2, 'COMPLETED'=1, 'FAILED'=1, 'CRASHED'=1,"
        " 'CANCELLED'=1, 'PAUSED'=1, 'PENDING'=1>"
    )
    done = StateGroup([Completed(), Completed()])
    assert done.all_completed() and done.all_final() and not done.any_failed()


# -- copies, equality, hashing, pickling ---------------------------------------------------


def test_model_copy_keeps_id_and_renews_timestamp():
    state = Completed(data=1, state_details=StateDetails(task_run_id="t"))
    copied = state.model_copy(update={"name": "Cached"})
    assert copied.id == state.id
    assert copied.name == "Cached" and state.name == "Completed"
    assert copied.data == 1
    assert copied.timestamp >= state.timestamp
    assert copied.state_details == state.state_details
    copied.state_details.task_run_id = "other"
    assert state.state_details.task_run_id == "t"  # details are not shared
    with pytest.raises(TypeError, match="no field 'bogus'"):
        state.model_copy(update={"bogus": 1})
    assert state.model_copy(update={"state_details": {"cache_key": "k"}}).state_details.cache_key


def test_fresh_copy_has_a_new_id():
    state = Failed(message="m")
    fresh = state.fresh_copy()
    assert fresh.id != state.id
    assert (fresh.type, fresh.name, fresh.message) == (state.type, state.name, state.message)


def test_equality_and_hash():
    state = Completed(data=1)
    assert state == state
    assert state != Completed(data=1)  # a different state (id, timestamp) with the same look
    assert state != "Completed()"
    same = pickle.loads(pickle.dumps(state))
    assert same == state and hash(same) == hash(state)
    details = StateDetails(flow_run_id="f", task_run_id="t")
    ts = datetime.now(timezone.utc)
    a = Completed(state_details=details, timestamp=ts)
    b = Completed(state_details=details.model_copy(), timestamp=ts, message="other")
    assert hash(a) == hash(b) and a != b
    assert len({Completed(), Completed()}) == 2


def test_pickle_keeps_id_details_and_data():
    state = Failed(message="m", data=ValueError("v"), state_details={"task_run_id": "t"})
    clone = pickle.loads(pickle.dumps(state))
    assert clone.id == state.id
    assert clone.state_details.task_run_id == "t"
    assert str(clone) == "Failed('m')"
    assert isinstance(clone.data, ValueError)
