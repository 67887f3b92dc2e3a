"""Flow parameters validated as Prefect's `validate_parameters=True` does: each value is
checked against its parameter's type hint and coerced by pydantic v2 (`"5"` becomes `5`
for `x: int`), defaults included (they are bound before validation); a failure raises
`ParameterTypeError` with Prefect's message.

Cost: pydantic is imported only when a flow with annotated parameters is first called,
and the validator is built once per flow (per signature). A flow without annotations, or
a process without pydantic, gets the binding check alone (done before this, in
`_arguments.Signature`).

Not validated, as values: `*args` and `**kwargs` (Prefect types them `Any`), parameters
whose hint cannot be resolved (a string naming something the function's module does not
define), and values that are States or hold futures or annotations (`quote`, ...):
ferroflow does not resolve those before a flow starts (a subflow's futures are resolved
to their results first, as in Prefect, and then validated).

This module sits with `states`, below the run layers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ferroflow._core import contains_futures
from ferroflow.exceptions import ParameterTypeError
from ferroflow.states import State
from ferroflow.utilities.annotations import BaseAnnotation

if TYPE_CHECKING:
    import inspect
    from collections.abc import Callable

__all__ = ["ParameterValidator", "check_validatable"]

#: Names Prefect's validation model keeps for itself: a flow with such a parameter cannot
#: be validated (Prefect refuses it when the flow is decorated).
RESERVED_NAMES = ("v__args", "v__kwargs", "v__positional_only", "v__duplicate_kwargs")

#: Levels of quoting a string hint is unwrapped through before it counts as unresolvable.
_MOST_QUOTES = 3


def check_validatable(owner: str, signature: inspect.Signature) -> None:
    """Prefect's ValueError for a function validation cannot handle, raised where the flow
    is decorated (pydantic is not needed to tell)."""
    reserved = [name for name in RESERVED_NAMES if name in signature.parameters]
    if reserved:
        raise ValueError(
            "Flow function is not compatible with `validate_parameters`. Disable validation or change the "
            f"argument names. ({owner}: {', '.join(map(repr, reserved))} are reserved by the validation)"
        )


def _is_unresolved(value: Any) -> bool:
    """A value validation does not look at: a State, an annotation, or anything with a future in it."""
    return isinstance(value, (State, BaseAnnotation)) or contains_futures(value)


class ParameterValidator:
    """Validates one flow's parameters; pydantic and the validator are set up on first use."""

    __slots__ = ("_fn", "_hints", "_adapters", "_pydantic")

    def __init__(self, fn: Callable[..., Any], signature: inspect.Signature) -> None:
        self._fn = fn
        #: The annotated named parameters and their hints as written (maybe strings).
        self._hints = {
            name: parameter.annotation
            for name, parameter in signature.parameters.items()
            if parameter.annotation is not parameter.empty
            and parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        }
        #: A TypeAdapter per set of parameters left unvalidated (almost always the empty one).
        self._adapters: dict[frozenset[str], Any] = {}
        self._pydantic: Any = None  # the module, once imported; False when it is missing

    def validate(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """`parameters` (bound, defaults applied) with each annotated one validated and
        coerced; raises ParameterTypeError naming every parameter that failed."""
        if not self._hints or not self._import_pydantic():
            return parameters
        skipped = frozenset(name for name in self._hints if _is_unresolved(parameters.get(name)))
        adapter = self._adapters.get(skipped)
        if adapter is None:
            adapter = self._adapters[skipped] = self._adapter(skipped)
        checked = {name: parameters[name] for name in self._hints if name in parameters}
        try:
            validated: dict[str, Any] = adapter.validate_python(checked)
        except self._pydantic.ValidationError as exc:
            raise ParameterTypeError.from_validation_error(exc) from None
        return {**parameters, **validated}

    def _import_pydantic(self) -> bool:
        if self._pydantic is None:
            try:
                import pydantic  # here, on first use: it takes ~100 ms to import
            except ImportError:
                self._pydantic = False
            else:
                self._pydantic = pydantic
        return self._pydantic is not False

    def _adapter(self, skipped: frozenset[str]) -> Any:
        """A pydantic TypeAdapter of a TypedDict with one key per annotated parameter (a
        TypedDict, not a model, so a parameter may be named `json` or `model_config`)."""
        from typing_extensions import TypedDict  # pydantic's dependency; pydantic needs it before 3.12

        pydantic = self._pydantic
        fields = {name: Any if name in skipped else self._resolved(hint) for name, hint in self._hints.items()}
        parameters_type = TypedDict(f"{getattr(self._fn, '__name__', 'flow')}_parameters", fields)  # type: ignore[misc]  # pyright: ignore[reportArgumentType]
        configured = pydantic.with_config(pydantic.ConfigDict(arbitrary_types_allowed=True))(parameters_type)
        return pydantic.TypeAdapter(configured)

    def _resolved(self, hint: Any) -> Any:
        """A hint written as a string (`from __future__ import annotations`) evaluated in
        the function's module, as `typing.get_type_hints` does; `Any` if it names nothing
        defined there (a class local to a function, or one not defined yet)."""
        namespace = getattr(self._fn, "__globals__", {})
        for _ in range(_MOST_QUOTES):  # `x: "int"` under `from __future__ import annotations` is "'int'"
            if not isinstance(hint, str):
                return hint
            try:
                hint = eval(hint, namespace)  # the user's own annotation, evaluated as typing.get_type_hints does
            except Exception:
                return Any
        return Any
