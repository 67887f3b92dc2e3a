"""How results become bytes and back, at Prefect's path (`prefect.serializers`).

`result_serializer=` takes one of these objects or a name: `"pickle"` and
`"cloudpickle"` (cloudpickle, Prefect's default), `"json"`, `"compressed/pickle"`,
`"compressed/json"`. A record remembers the name of the serializer that wrote it and
is read back with it.

Reading a pickle runs code its writer chose: the result store reads only records its
own user wrote (see `ferroflow.results`).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import importlib
import json
import pathlib
import uuid
from collections.abc import Callable
from typing import Any, ClassVar, cast

__all__ = [
    "CompressedJSONSerializer",
    "CompressedPickleSerializer",
    "CompressedSerializer",
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    "prefect_json_object_decoder",
    "prefect_json_object_encoder",
    "resolve_serializer",
]


class Serializer:
    """Turns objects into bytes (`dumps`) and back (`loads`); `type` names it in records."""

    type: ClassVar[str]

    def dumps(self, obj: Any) -> bytes:
        raise NotImplementedError

    def loads(self, blob: bytes) -> Any:
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and vars(other) == vars(self)

    def __hash__(self) -> int:
        return hash(self.type)

    def __repr__(self) -> str:
        options = ", ".join(f"{name}={value!r}" for name, value in vars(self).items())
        return f"{type(self).__name__}({options})"


def _import_object(path: str) -> Any:
    """The object a dotted path names (`package.module.name`)."""
    module_name, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), name)


def _module_with(name: str, functions: tuple[str, str], option: str) -> Any:
    try:
        module = importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"{option}={name!r}: no module of that name can be imported") from exc
    missing = [function for function in functions if not callable(getattr(module, function, None))]
    if missing:
        raise ValueError(f"{option}={name!r}: the module has no {' or '.join(missing)} function")
    return module


class PickleSerializer(Serializer):
    """Pickles with `picklelib` (cloudpickle by default, which also pickles lambdas and
    classes defined in `__main__`)."""

    type = "pickle"

    def __init__(self, picklelib: str = "cloudpickle", picklelib_version: str | None = None) -> None:
        self.picklelib = picklelib
        self.picklelib_version = picklelib_version
        self._lib = _module_with(picklelib, ("dumps", "loads"), "picklelib")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PickleSerializer) and other.picklelib == self.picklelib

    def __hash__(self) -> int:
        return hash((self.type, self.picklelib))

    def __repr__(self) -> str:
        return f"PickleSerializer(picklelib={self.picklelib!r})"

    def dumps(self, obj: Any) -> bytes:
        return bytes(self._lib.dumps(obj))

    def loads(self, blob: bytes) -> Any:
        return self._lib.loads(blob)


# Types the JSON serializer writes as {"__class__": name, "data": text} and reads back.
_JSON_TYPES: dict[str, tuple[type[Any], Callable[[Any], Any], Callable[[Any], Any]]] = {
    "datetime.datetime": (datetime.datetime, datetime.datetime.isoformat, datetime.datetime.fromisoformat),
    "datetime.date": (datetime.date, datetime.date.isoformat, datetime.date.fromisoformat),
    "datetime.time": (datetime.time, datetime.time.isoformat, datetime.time.fromisoformat),
    "datetime.timedelta": (
        datetime.timedelta,
        datetime.timedelta.total_seconds,
        lambda seconds: datetime.timedelta(seconds=seconds),
    ),
    "uuid.UUID": (uuid.UUID, str, uuid.UUID),
    "decimal.Decimal": (decimal.Decimal, str, decimal.Decimal),
    "pathlib.Path": (pathlib.PurePath, str, pathlib.Path),
    "bytes": (bytes, lambda b: base64.b64encode(b).decode(), base64.b64decode),
    "set": (set, list, set),
    "frozenset": (frozenset, list, frozenset),
    "complex": (complex, lambda c: [c.real, c.imag], lambda pair: complex(*pair)),
}


def prefect_json_object_encoder(obj: Any) -> Any:
    """JSON for what `json` cannot encode by itself: dates and times, UUIDs, decimals,
    paths, bytes, sets, complex numbers, and pydantic models (as their class and fields).
    Anything else raises TypeError."""
    for name in _JSON_TYPES:
        # A datetime is also a date: the table lists the subclass first.
        kind, encode, _ = _JSON_TYPES[name]
        if isinstance(obj, kind):
            return {"__class__": name, "data": encode(obj)}
    model_dump = getattr(obj, "model_dump", None)
    cls = cast("type[Any]", obj.__class__)
    if callable(model_dump) and hasattr(cls, "model_validate"):
        return {"__class__": f"{cls.__module__}.{cls.__qualname__}", "data": model_dump(mode="json")}
    raise TypeError(f"Object of type {type(obj).__name__!r} is not JSON serializable")


def prefect_json_object_decoder(value: dict[str, Any]) -> Any:
    """The reverse of `prefect_json_object_encoder`, for each decoded JSON object."""
    if "__class__" not in value or "data" not in value or len(value) != 2:
        return value
    name = value["__class__"]
    if name in _JSON_TYPES:
        return _JSON_TYPES[name][2](value["data"])
    cls = _import_object(name)
    if not hasattr(cls, "model_validate"):
        raise TypeError(f"{name} is not a pydantic model; its JSON cannot be read back")
    return cls.model_validate(value["data"])


class JSONSerializer(Serializer):
    """JSON text; `object_encoder`/`object_decoder` (callables or dotted paths) handle
    the objects `json` does not know."""

    type = "json"

    def __init__(
        self,
        jsonlib: str = "json",
        object_encoder: str | Callable[[Any], Any] | None = prefect_json_object_encoder,
        object_decoder: str | Callable[[dict[str, Any]], Any] | None = prefect_json_object_decoder,
        dumps_kwargs: dict[str, Any] | None = None,
        loads_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.jsonlib = jsonlib
        self.object_encoder = object_encoder
        self.object_decoder = object_decoder
        self.dumps_kwargs = dict(dumps_kwargs or {})
        self.loads_kwargs = dict(loads_kwargs or {})
        for option in ("default", "object_hook"):
            if option in self.dumps_kwargs or option in self.loads_kwargs:
                raise ValueError(f"JSONSerializer: pass {option!r} as object_encoder/object_decoder instead")
        self._lib = json if jsonlib == "json" else _module_with(jsonlib, ("dumps", "loads"), "jsonlib")
        self._encode = _import_object(object_encoder) if isinstance(object_encoder, str) else object_encoder
        self._decode = _import_object(object_decoder) if isinstance(object_decoder, str) else object_decoder

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JSONSerializer) and (
            other.jsonlib,
            other.object_encoder,
            other.object_decoder,
            other.dumps_kwargs,
            other.loads_kwargs,
        ) == (self.jsonlib, self.object_encoder, self.object_decoder, self.dumps_kwargs, self.loads_kwargs)

    def __hash__(self) -> int:
        return hash((self.type, self.jsonlib))

    def __repr__(self) -> str:
        return f"JSONSerializer(jsonlib={self.jsonlib!r})"

    def dumps(self, obj: Any) -> bytes:
        text = self._lib.dumps(obj, default=self._encode, **self.dumps_kwargs)
        return text.encode() if isinstance(text, str) else bytes(text)

    def loads(self, blob: bytes) -> Any:
        return self._lib.loads(blob.decode(), object_hook=self._decode, **self.loads_kwargs)


class CompressedSerializer(Serializer):
    """Another serializer's bytes, compressed with `compressionlib` (lzma by default)."""

    type = "compressed"

    def __init__(self, serializer: Serializer | str = "pickle", compressionlib: str = "lzma") -> None:
        self.serializer = resolve_serializer(serializer)
        self.compressionlib = compressionlib
        self._lib = _module_with(compressionlib, ("compress", "decompress"), "compressionlib")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CompressedSerializer) and (other.serializer, other.compressionlib) == (
            self.serializer,
            self.compressionlib,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.compressionlib))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(serializer={self.serializer!r}, compressionlib={self.compressionlib!r})"

    def dumps(self, obj: Any) -> bytes:
        return bytes(self._lib.compress(self.serializer.dumps(obj)))

    def loads(self, blob: bytes) -> Any:
        return self.serializer.loads(self._lib.decompress(blob))


class CompressedPickleSerializer(CompressedSerializer):
    type = "compressed/pickle"

    def __init__(self, compressionlib: str = "lzma") -> None:
        super().__init__(PickleSerializer(), compressionlib)


class CompressedJSONSerializer(CompressedSerializer):
    type = "compressed/json"

    def __init__(self, compressionlib: str = "lzma") -> None:
        super().__init__(JSONSerializer(), compressionlib)


# The serializers `result_serializer="<name>"` gives; "cloudpickle" is ferroflow's
# spelling of Prefect's default.
_NAMED: dict[str, Callable[[], Serializer]] = {
    "pickle": PickleSerializer,
    "cloudpickle": PickleSerializer,
    "json": JSONSerializer,
    "compressed/pickle": CompressedPickleSerializer,
    "compressed/json": CompressedJSONSerializer,
}


def serializer_named(name: str) -> Serializer | None:
    """The built-in serializer whose `type` is `name` (what a record names), if any."""
    factory = _NAMED.get(name)
    return None if factory is None else factory()


def resolve_serializer(serializer: Serializer | str) -> Serializer:
    """A serializer object from an object or a name; a TypeError or ValueError names
    what was wrong."""
    if isinstance(serializer, Serializer):
        return serializer
    if isinstance(serializer, str):
        if serializer not in _NAMED:
            raise ValueError(
                f"Unknown serializer {serializer!r}: use one of {', '.join(map(repr, _NAMED))} or a Serializer object"
            )
        return _NAMED[serializer]()
    raise TypeError(
        "Result serializer must be one of the following types: 'Serializer', "
        f"'str'. Got unsupported type {type(serializer).__name__!r}."
    )
