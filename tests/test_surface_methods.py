"""Issue 7, items 14, 18 and 19: tasks on methods, classmethods and staticmethods;
`Task` objects that look like their function; type hints that work at runtime."""
from __future__ import annotations

import functools
import inspect
import typing

import pytest

from ferroflow import State, Task, flow, task
from ferroflow.futures import (
    DoneAndNotDoneFutures,
    PrefectFuture,
    PrefectTaskRunFuture,
    PrefectWrappedFuture,
)


class Calculator:
    factor = 10

    def __init__(self, offset: int) -> None:
        self.offset = offset

    @task
    def add(self, x: int) -> int:
        return x + self.offset

    @task
    @classmethod
    def scale(cls, x: int) -> int:
        """Multiplies by the class's factor."""
        return x * cls.factor

    @task
    @staticmethod
    def square(x: int) -> int:
        return x * x


class Sub(Calculator):
    factor = 100


# item 14: classmethods (and their neighbours) ------------------------------------------


def test_classmethod_task_called_on_the_class():
    assert Calculator.scale(3) == 30


def test_classmethod_task_called_on_an_instance_binds_the_class():
    assert Calculator(1).scale(3) == 30
    assert Sub(1).scale(3) == 300
    assert Sub.scale(3) == 300


def test_classmethod_task_submit_and_map_in_a_flow():
    @flow
    def f():
        return Calculator.scale.submit(2).result(), Sub.scale.map([1, 2]).result()

    assert f() == (20, [100, 200])


def test_classmethod_task_outside_a_flow_submit():
    assert Calculator.scale.submit(4).result() == 40


def test_classmethod_task_is_a_task_with_the_function_s_name():
    assert isinstance(Calculator.scale, Task)
    assert Calculator.scale.name == "scale"
    assert Calculator.scale.description == "Multiplies by the class's factor."


def test_classmethod_task_signature_hides_cls():
    with pytest.raises(TypeError):
        Calculator.scale(1, 2)
    assert list(Calculator.scale.bind_parameters((5,), {})) == ["x"]


def test_classmethod_task_fn_is_the_function():
    fn = Calculator.__dict__["scale"].fn
    assert inspect.isfunction(fn)
    assert fn(Calculator, 2) == 20


def test_staticmethod_task():
    assert Calculator.square(3) == 9
    assert Calculator(0).square(4) == 16

    @flow
    def f():
        return Calculator.square.map([1, 2, 3]).result()

    assert f() == [1, 4, 9]


def test_instance_method_task():
    calc = Calculator(5)
    assert calc.add(1) == 6

    @flow
    def f():
        return calc.add.submit(2).result(), calc.add.map([1, 2]).result()

    assert f() == (7, [6, 7])


def test_method_task_accessed_on_the_class_is_the_task():
    assert isinstance(Calculator.add, Task)
    assert Calculator.add(Calculator(2), 1) == 3


def test_classmethod_task_with_options_stays_a_classmethod():
    class C:
        base = 7

        @task(retries=1)
        @classmethod
        def get(cls):
            return cls.base

        get_named = get.with_options(name="named")

    assert C.get() == 7
    assert C.get_named() == 7
    assert C.get_named.name == "named"


def test_async_classmethod_task():
    import asyncio

    class C:
        @task
        @classmethod
        async def get(cls, x):
            await asyncio.sleep(0)
            return (cls.__name__, x)

    assert asyncio.run(C.get(1)) == ("C", 1)


# item 18: a Task looks like its function ------------------------------------------------


def documented(x: int, y: int = 2) -> int:
    """Adds two numbers."""
    return x + y


def test_task_has_the_function_s_metadata():
    t = task(documented)
    assert t.__name__ == "documented"
    assert t.__qualname__ == documented.__qualname__
    assert t.__doc__ == "Adds two numbers."
    assert t.__module__ == __name__
    assert t.__wrapped__ is documented
    assert inspect.signature(t) == inspect.signature(documented)


def test_named_task_keeps_the_function_s_dunder_name():
    t = task(name="custom")(documented)
    assert t.name == "custom"
    assert t.__name__ == "documented"


def test_task_metadata_of_a_classmethod():
    t = Calculator.__dict__["scale"]
    assert t.__name__ == "scale"
    assert t.__qualname__ == "Calculator.scale"
    assert t.__doc__ == "Multiplies by the class's factor."


def test_with_options_keeps_the_metadata():
    t = task(documented).with_options(name="other")
    assert (t.__name__, t.__doc__, t.__wrapped__) == ("documented", "Adds two numbers.", documented)


def test_functools_wraps_over_a_task_works():
    t = task(documented)

    @functools.wraps(t)
    def wrapper(*args, **kwargs):
        return t(*args, **kwargs)

    assert wrapper.__name__ == "documented"
    assert wrapper(1) == 3


# item 19: type hints port unchanged ----------------------------------------------------


def test_task_is_generic_over_parameters_and_return_type():
    assert Task[[int], int] is not None
    assert Task[..., str] is not None
    params = typing.get_args(Task[[int, str], float])
    assert params == ((int, str), float)


def test_state_and_abstract_futures_are_generic():
    for alias in (
        State[int],
        PrefectFuture[int],
        PrefectTaskRunFuture[int],
        PrefectWrappedFuture[int, object],
        DoneAndNotDoneFutures[int],
    ):
        assert typing.get_args(alias)[0] is int


def test_hints_in_annotations_evaluate():
    def uses_hints(t: Task[[int], int], s: State[int], f: PrefectFuture[int]) -> None: ...

    hints = typing.get_type_hints(uses_hints)
    assert typing.get_origin(hints["t"]) is Task
    assert typing.get_origin(hints["s"]) is State
    assert typing.get_origin(hints["f"]) is PrefectFuture


def test_rust_futures_are_generic():
    # PrefectConcurrentFuture and PrefectFutureList are compiled classes: the bindings
    # give them __class_getitem__ (issue 7, item 19).
    from ferroflow.futures import PrefectConcurrentFuture, PrefectFutureList

    assert PrefectConcurrentFuture[int] is not None
    assert PrefectFutureList[int] is not None
