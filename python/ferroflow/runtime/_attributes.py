"""What `ferroflow.runtime`'s modules share: Prefect's module `__getattr__`, which reads an
attribute's value when asked and lets an environment variable mock it."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

#: How a mock (a string) becomes the type of the value it stands for, as Prefect casts it.
_CASTS: dict[type[Any], Callable[[str], Any]] = {
    bool: lambda text: text.lower() == "true",
    int: int,
    float: float,
    str: str,
    type(None): str,  # an attribute that is None when not mocked
}


def _utc_datetime(text: str) -> Any:
    from datetime import datetime, timezone

    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=timezone.utc) if parsed.tzinfo is None else parsed.astimezone(timezone.utc)


def runtime_attribute(module: str, kind: str, fields: Mapping[str, Callable[[], Any]], name: str) -> Any:
    """The value of `name` in `ferroflow.runtime.<kind>` (`fields` computes each), or its
    mock from `FERROFLOW__RUNTIME__<KIND>__<NAME>` (else Prefect's `PREFECT__RUNTIME__...`)
    cast to the type of the real value. A name that is no field is an AttributeError,
    unless such a variable is set (Prefect's rules)."""
    mock = _mock(kind, name)
    field = fields.get(name)
    if field is None:
        if mock is not None:
            return mock
        raise AttributeError(f"{module} has no attribute {name!r}")
    value = field()
    if mock is None:
        return value
    from datetime import datetime

    cast = _utc_datetime if isinstance(value, datetime) else _CASTS.get(value.__class__)
    if cast is None:
        raise ValueError(
            f"{module}.{name} cannot be mocked using an environment variable "
            f"(its value is a {type(value).__name__}). Please use monkeypatch instead."
        )
    return cast(mock)


def _mock(kind: str, name: str) -> str | None:
    for prefix in ("FERROFLOW", "PREFECT"):
        mocked = os.environ.get(f"{prefix}__RUNTIME__{kind.upper()}__{name.upper()}")
        if mocked is not None:
            return mocked
    return None


def flow_run_id_from_environment() -> str | None:
    """The flow run id a worker process was started for (Prefect's `PREFECT__FLOW_RUN_ID`),
    read where no flow run is current."""
    return os.environ.get("FERROFLOW__FLOW_RUN_ID", os.environ.get("PREFECT__FLOW_RUN_ID"))
