"""Flow parameters validated like Prefect's (issue 8, item 6): with `validate_parameters=True`
(the default) and pydantic installed, values are coerced by their type hints (`"5"` → `5`),
defaults included; a failure is Prefect's `ParameterTypeError`, and the flow run ends
Failed without calling the function. pydantic is imported only when a flow with annotated
parameters is first called. Without pydantic, only the binding check applies.
"""

from __future__ import annotations

import asyncio
import datetime
import sys
import textwrap
from typing import Any

import pydantic
import pytest

from ferroflow import flow, task
from ferroflow.context import FlowRunContext
from ferroflow.exceptions import ParameterBindError, ParameterTypeError
from ferroflow.states import Completed


class Point(pydantic.BaseModel):
    x: int
    y: int


INT_PARSING = "Input should be a valid integer, unable to parse string as an integer"


@flow
def typed(n: int, when: datetime.date, point: Point, limit: int = "10"):  # type: ignore[assignment]
    return n, when, point, limit


# -- coercion -----------------------------------------------------------------------------


def test_values_are_coerced_by_their_type_hints_defaults_included():
    n, when, point, limit = typed("5", "2024-01-02", {"x": "1", "y": 2})
    assert n == 5
    assert when == datetime.date(2024, 1, 2)
    assert point == Point(x=1, y=2)
    assert limit == 10  # the default, validated too


def test_the_run_context_and_the_run_name_see_the_coerced_values():
    seen: list[Any] = []

    @flow(flow_run_name="batch-{size}")
    def batch(size: int):
        context = FlowRunContext.get()
        seen.append((context.flow_run.name, context.parameters, context.flow_run.parameters))
        return size

    assert batch("3") == 3
    assert seen == [("batch-3", {"size": 3}, {"size": 3})]


def test_an_async_flow_validates_its_parameters():
    @flow
    async def job(n: int, ratio: float = 1):
        return n, ratio

    assert asyncio.run(job("7")) == (7, 1.0)
    with pytest.raises(ParameterTypeError, match=f"n: {INT_PARSING}"):
        asyncio.run(job("seven"))


def test_a_subflow_s_futures_are_resolved_then_their_values_validated():
    @task
    def produce():
        return "5"

    @flow
    def child(n: int):
        return n

    @flow
    def parent():
        return child(produce.submit())

    assert parent() == 5


def test_varargs_and_kwargs_pass_unvalidated_named_parameters_coerced():
    @flow
    def job(first: int, *rest: int, flag: bool = False, **extra: int):
        return first, rest, flag, extra

    assert job("1", "2", "3", flag="true", other="4") == (1, ("2", "3"), True, {"other": "4"})


def test_parameters_named_like_pydantic_s_own_attributes_work():
    @flow
    def job(json: int, model_config: str, copy: list[int]):
        return json, model_config, copy

    assert job("1", "x", ["2"]) == (1, "x", [2])


def test_a_method_flow_validates_its_parameters_without_self():
    class Pipeline:
        @flow
        def run(self, n: int):
            return self, n

        @classmethod
        @flow
        def build(cls, n: int):
            return cls, n

    pipeline = Pipeline()
    assert pipeline.run("4") == (pipeline, 4)
    assert Pipeline().run("5")[1] == 5
    assert Pipeline.build("6") == (Pipeline, 6)
    with pytest.raises(ParameterTypeError, match=f"n: {INT_PARSING}"):
        pipeline.run("four")


def test_unannotated_parameters_and_unresolvable_hints_are_not_validated():
    @flow
    def job(a, b: NotDefinedAnywhere, c: int):  # noqa: F821  # a hint naming nothing: left unvalidated
        return a, b, c

    assert job("x", "y", "3") == ("x", "y", 3)


def test_a_quoted_hint_is_resolved_as_well():
    @flow
    def job(n: "int"):  # noqa: UP037  # quoted on purpose: a string inside this module's string hints
        return n

    assert job("3") == 3


def test_futures_and_states_given_to_a_flow_are_not_validated_as_values():
    @task
    def produce():
        return "not a number"

    received: list[Any] = []

    @flow
    def job(n: int, state: int):
        received.extend([n, state])

    future = produce.submit()  # outside flows: on the process-wide runner
    given_state = Completed(data="also not a number")
    job(future, given_state)
    assert received[0] is future and received[1] is given_state


# -- failures ------------------------------------------------------------------------------


def test_invalid_parameters_raise_prefect_s_parameter_type_error():
    with pytest.raises(ParameterTypeError) as raised:
        typed("five", "soon", {"x": 1})
    assert str(raised.value) == textwrap.dedent(
        f"""\
        Flow run received invalid parameters:
         - n: {INT_PARSING}
         - when: Input should be a valid date or datetime, input is too short
         - point.y: Field required"""
    )


def test_invalid_parameters_fail_the_run_without_calling_the_function_or_retrying(caplog, ferroflow_records):
    calls: list[int] = []
    failures: list[str] = []

    @flow(retries=2, flow_run_name="never-{n}", on_failure=[lambda f, r, s: failures.append(s.message)])
    def job(n: int):
        calls.append(n)

    state = job("x", return_state=True)
    expected = (
        "Validation of flow parameters failed with error: ParameterTypeError: "
        f"Flow run received invalid parameters:\n - n: {INT_PARSING}"
    )
    assert state.is_failed() and state.name == "Failed" and state.message == expected
    assert isinstance(state.result(raise_on_failure=False), ParameterTypeError)
    assert calls == []
    assert failures == [expected]
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "ferroflow.flow_runs"]
    run_name = caplog.records[0].flow_run_name
    assert not run_name.startswith("never-")  # refused parameters do not name the run
    assert lines[0] == ("INFO", f"Beginning flow run {run_name!r} for flow 'job'")
    assert (
        "ERROR",
        f"Validation of flow parameters failed with error: Flow run received invalid parameters:\n - n: {INT_PARSING}",
    ) in lines
    assert lines[-1] == ("INFO", f"Finished in state Failed({expected!r})")
    assert not any("will attempt to run again" in message for _, message in lines)


def test_an_invalid_default_fails_every_call_that_uses_it():
    @flow
    def job(n: int = "many"):  # type: ignore[assignment]
        return n

    with pytest.raises(ParameterTypeError, match=f"n: {INT_PARSING}"):
        job()
    assert job(2) == 2


def test_a_subflow_with_invalid_parameters_fails_and_the_parent_sees_the_error():
    @flow
    def child(n: int):
        return n

    @flow
    def parent():
        state = child("x", return_state=True)
        return state.is_failed(), type(state.result(raise_on_failure=False)).__name__

    assert parent() == (True, "ParameterTypeError")


def test_binding_errors_still_come_first_and_start_no_run():
    with pytest.raises(ParameterBindError, match="missing a required argument: 'point'"):
        typed(1, "2024-01-02")


def test_flow_validate_parameters_is_public_as_in_prefect():
    assert typed.validate_parameters({"n": "1", "when": "2024-01-02", "point": {"x": 1, "y": "2"}}) == {
        "n": 1,
        "when": datetime.date(2024, 1, 2),
        "point": Point(x=1, y=2),
        "limit": 10,
    }
    with pytest.raises(ParameterTypeError):
        typed.validate_parameters({"n": "x", "when": "2024-01-02", "point": {"x": 1, "y": 2}})


# -- turning it off; without pydantic -----------------------------------------------------------


def test_validate_parameters_false_passes_values_as_given():
    @flow(validate_parameters=False)
    def job(n: int):
        return n

    assert job("5") == "5"
    assert job.with_options(validate_parameters=True)("5") == 5
    assert typed.with_options(validate_parameters=False)("5", "d", "p") == ("5", "d", "p", "10")


def test_without_pydantic_only_the_binding_is_checked(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydantic", None)  # `import pydantic` raises ImportError

    @flow
    def job(n: int, limit: int = "10"):  # type: ignore[assignment]
        return n, limit

    assert job("5") == ("5", "10")
    with pytest.raises(ParameterBindError):
        job()


def test_names_validation_keeps_for_itself_are_refused_when_decorated():
    def job(v__args: int):
        return v__args

    with pytest.raises(ValueError, match=r"not compatible with `validate_parameters`.*Flow 'job': 'v__args'"):
        flow(job)
    assert flow(validate_parameters=False)(job)(1) == 1


# -- cost: pydantic imported late, validator built once -------------------------------------------


def test_import_ferroflow_does_not_import_pydantic_nor_does_a_flow_without_hints(run_script):
    proc = run_script(
        """
        import sys
        import ferroflow
        assert "pydantic" not in sys.modules, "import ferroflow"

        @ferroflow.flow
        def plain(x, y=2):
            return x + y

        assert plain(1) == 3
        assert "pydantic" not in sys.modules, "a flow without annotations"

        @ferroflow.flow
        def typed(x: int):
            return x

        assert "pydantic" not in sys.modules, "decorating an annotated flow"
        assert typed("4") == 4
        assert "pydantic" in sys.modules, "calling it"
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_the_validator_is_built_once_per_flow(monkeypatch):
    built: list[object] = []
    real = pydantic.TypeAdapter

    def counting(*args: Any, **kwargs: Any) -> Any:
        built.append(args[0])
        return real(*args, **kwargs)

    monkeypatch.setattr(pydantic, "TypeAdapter", counting)

    @flow
    def job(n: int):
        return n

    assert [job(str(i)) for i in range(5)] == [0, 1, 2, 3, 4]
    assert len(built) == 1
