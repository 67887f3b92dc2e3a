"""A Griffe extension for the API reference (loaded by mkdocstrings, see mkdocs.yml).

With `filters: public`, a module lists what its `__all__` names, and a class lists its
members without a leading underscore plus every special method (`__eq__`, `__hash__`,
`__repr__`, `__slots__`, ...), which would bury the API under protocol plumbing. This
hides a class's special members except the ones a user reaches through syntax the page
has to explain: calling a task or flow (`__call__`) and awaiting a future (`__await__`).
`__init__` is kept so that `merge_init_into_class` shows the constructor's signature.
"""

from __future__ import annotations

from typing import Any

import griffe

KEPT = frozenset({"__init__", "__call__", "__await__"})


def _is_hidden(name: str) -> bool:
    return name.startswith("__") and name.endswith("__") and name not in KEPT


def _hide_in_class(cls: griffe.Class | griffe.Alias) -> None:
    for name, member in cls.members.items():
        if member.inherited:
            continue  # its visibility is the base class member's
        if _is_hidden(name):
            member.public = False
        elif member.is_class:
            _hide_in_class(member)  # type: ignore[arg-type]


def _hide_in_module(module: griffe.Module) -> None:
    for member in module.members.values():
        try:
            if member.is_module and not member.is_alias:
                _hide_in_module(member)  # type: ignore[arg-type]
            elif member.is_class:
                # Also through an alias: a class re-exported from another module (the
                # futures implemented in `_core`) is rendered through its alias, whose
                # members are aliases with a visibility of their own.
                _hide_in_class(member)  # type: ignore[arg-type]
        except griffe.AliasResolutionError:
            continue  # an import from outside the package: not documented here


class HideSpecialMembers(griffe.Extension):
    """Marks the special members of every class in the package as not public."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        _hide_in_module(pkg)
