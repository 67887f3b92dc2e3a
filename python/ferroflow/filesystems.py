"""`LocalFileSystem`, at Prefect's path (`prefect.filesystems`), as far as result storage
needs it: a folder that `result_storage=` names, and its `read_path`/`write_path`.

Prefect's other file systems (remote, S3, GCS, Azure, SMB) are storage blocks kept by its
server; ferroflow stores results in local folders only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["LocalFileSystem", "WritableFileSystem"]


class WritableFileSystem:
    """What result storage reads and writes through (Prefect's block interface)."""

    def read_path(self, path: str) -> bytes:
        raise NotImplementedError

    def write_path(self, path: str, content: bytes) -> str:
        raise NotImplementedError


class LocalFileSystem(WritableFileSystem):
    """A folder on this machine; relative paths are inside `basepath` (default: the
    current directory when a path is resolved)."""

    def __init__(self, basepath: str | os.PathLike[str] | None = None, **options: Any) -> None:
        if options:
            raise TypeError(f"LocalFileSystem() got an unexpected keyword argument {next(iter(options))!r}")
        if basepath is not None and not isinstance(basepath, (str, os.PathLike)):
            raise TypeError(f"LocalFileSystem: basepath must be a path, got {type(basepath).__name__}: {basepath!r}")
        self.basepath = None if basepath is None else os.fspath(basepath)

    def __repr__(self) -> str:
        return f"LocalFileSystem(basepath={self.basepath!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LocalFileSystem) and other.basepath == self.basepath

    def __hash__(self) -> int:
        return hash(self.basepath)

    def folder(self) -> str:
        """The absolute folder this file system stands for."""
        return os.path.abspath(os.path.expanduser(self.basepath or "."))

    def _resolve_path(self, path: str | os.PathLike[str]) -> str:
        """The absolute path of `path` (relative to the folder); a ValueError if it
        leads outside the folder."""
        base = Path(self.folder()).resolve()
        resolved = (base / os.fspath(path)).expanduser().resolve()
        if resolved != base and base not in resolved.parents:
            raise ValueError(f"Provided path {path} is outside of the base path {base}.")
        return str(resolved)

    def read_path(self, path: str) -> bytes:
        resolved = self._resolve_path(path)
        if not os.path.exists(resolved):
            raise ValueError(f"Path {resolved} does not exist.")
        if not os.path.isfile(resolved):
            raise ValueError(f"Path {resolved} is not a file.")
        with open(resolved, "rb") as file:
            return file.read()

    def write_path(self, path: str, content: bytes) -> str:
        """Writes `content` (owner-only, atomically: no reader sees it half-written);
        returns the absolute path written."""
        from ferroflow._result_store import write_file_atomically

        resolved = self._resolve_path(path)
        os.makedirs(os.path.dirname(resolved), mode=0o700, exist_ok=True)
        write_file_atomically(resolved, content)
        return resolved

    def save(self, name: str | None = None, overwrite: bool = False) -> Any:
        raise NotImplementedError(
            "LocalFileSystem.save: blocks are kept by Prefect's server, which ferroflow does not use; "
            "pass the LocalFileSystem object itself as result_storage"
        )

    @classmethod
    def load(cls, name: str) -> LocalFileSystem:
        raise NotImplementedError(
            f"LocalFileSystem.load({name!r}): blocks are kept by Prefect's server, which ferroflow does not use; "
            "make the LocalFileSystem(basepath=...) in your code instead"
        )
