"""Result storage, at Prefect's path (`prefect.results`): where persisted results and
cache records live, and how they are read and written.

Storage is a local folder: `result_storage=` takes a path or a
`ferroflow.filesystems.LocalFileSystem`; without one, results go to
`FERROFLOW_RESULTS_LOCAL_STORAGE_PATH` (or Prefect's `PREFECT_RESULTS_LOCAL_STORAGE_PATH`),
by default `~/.ferroflow/storage`. Prefect's remote storage blocks (S3, GCS, ...) are
kept by its server and are not supported.

A record is a pickle unless the task chose the JSON serializer, and reading a pickle runs
code: a storage folder must be yours alone. Folders and records that another user owns
or can write are refused with a WARNING (see `ferroflow._result_store`).
"""

from __future__ import annotations

import datetime
import logging
import os
import uuid
from typing import Any, Generic, TypeVar, Union

from ferroflow import _cache_settings
from ferroflow._result_store import MISS, RecordFolder, folder_at
from ferroflow.filesystems import LocalFileSystem, WritableFileSystem
from ferroflow.serializers import Serializer, resolve_serializer

__all__ = [
    "ResultRecord",
    "ResultRecordMetadata",
    "ResultSerializer",
    "ResultStorage",
    "ResultStore",
    "get_default_persist_setting",
    "get_default_result_storage",
    "resolve_result_storage",
    "resolve_serializer",
]

R = TypeVar("R")

#: What `result_storage=` takes: a path or a LocalFileSystem.
ResultStorage = Union[WritableFileSystem, str, "os.PathLike[str]"]
#: What `result_serializer=` takes: a Serializer or its name.
ResultSerializer = Union[Serializer, str]  # noqa: UP007  # a runtime alias: `|` of classes needs 3.10's types

_logger = logging.getLogger("ferroflow.results")

# The slugs of Prefect's storage block types: "s3-bucket/my-results" names a block kept
# by Prefect's server, not a folder.
_BLOCK_TYPES = frozenset(
    {
        "local-file-system",
        "remote-file-system",
        "s3-bucket",
        "s3",
        "gcs-bucket",
        "gcs",
        "azure-blob-storage",
        "azure",
        "smb",
        "github",
        "gitlab-repository",
        "bitbucket-repository",
    }
)


def get_default_result_storage() -> LocalFileSystem:
    """The folder results go to when nothing else is named (the settings, else
    `~/.ferroflow/storage`)."""
    path, _ = _cache_settings.storage_path()
    return LocalFileSystem(basepath=path)


def get_default_persist_setting() -> bool:
    """Whether results are persisted when neither task nor flow says
    (`FERROFLOW_RESULTS_PERSIST_BY_DEFAULT`, or Prefect's name; false by default)."""
    return _cache_settings.flag(_cache_settings.PERSIST_BY_DEFAULT)


def resolve_result_storage(result_storage: Any) -> LocalFileSystem:
    """A `LocalFileSystem` from what `result_storage=` was given. Names of Prefect's
    storage blocks and remote URLs raise NotImplementedError; other types TypeError."""
    if result_storage is None:
        return get_default_result_storage()
    if isinstance(result_storage, LocalFileSystem):
        return result_storage
    if isinstance(result_storage, os.PathLike):
        return LocalFileSystem(basepath=os.fspath(result_storage))  # pyright: ignore[reportUnknownArgumentType]
    if isinstance(result_storage, str):
        if "://" in result_storage:
            raise NotImplementedError(
                f"result_storage={result_storage!r}: remote storage needs Prefect's storage blocks; "
                "ferroflow stores results in local folders (pass a path or LocalFileSystem(basepath=...))"
            )
        block_type, slash, _ = result_storage.partition("/")
        if slash and block_type in _BLOCK_TYPES:
            raise NotImplementedError(
                f"result_storage={result_storage!r} names a Prefect storage block, which Prefect's server keeps; "
                "ferroflow stores results in local folders (pass a path or LocalFileSystem(basepath=...))"
            )
        return LocalFileSystem(basepath=result_storage)
    raise TypeError(
        "Result storage must be a path (str or os.PathLike) or a LocalFileSystem, "
        f"got {type(result_storage).__name__}: {result_storage!r}"
    )


def record_folder(storage: LocalFileSystem | None) -> RecordFolder:
    """The process's record folder for `storage` (None: the default folder)."""
    if storage is None:
        path, ours = _cache_settings.storage_path()
        return folder_at(path, private_parent=ours)
    return folder_at(storage.folder())


class ResultRecordMetadata:
    """What is known of a record besides its value."""

    __slots__ = ("storage_key", "expiration", "serializer")

    def __init__(
        self,
        storage_key: str | None = None,
        expiration: datetime.datetime | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        self.storage_key = storage_key
        self.expiration = expiration
        self.serializer = serializer if serializer is not None else resolve_serializer("pickle")

    def __repr__(self) -> str:
        return f"ResultRecordMetadata(storage_key={self.storage_key!r}, expiration={self.expiration!r})"


class ResultRecord(Generic[R]):
    """A stored result and its metadata."""

    __slots__ = ("metadata", "result")

    def __init__(self, result: R, metadata: ResultRecordMetadata) -> None:
        self.result = result
        self.metadata = metadata

    @property
    def expiration(self) -> datetime.datetime | None:
        return self.metadata.expiration

    @property
    def serializer(self) -> Serializer:
        return self.metadata.serializer

    def __repr__(self) -> str:
        return f"ResultRecord(result={self.result!r}, metadata={self.metadata!r})"


def _epoch(expiration: datetime.datetime | None) -> float | None:
    if expiration is None:
        return None
    if expiration.tzinfo is None:
        raise ValueError(f"expiration {expiration!r} has no time zone; give an aware datetime")
    return expiration.timestamp()


class ResultStore:
    """Reads and writes records in one storage folder with one serializer.

    `read`/`write`/`exists` are Prefect's (and `aread`/`awrite`/`aexists`). A record that
    cannot be used (damaged, refused, expired) is absent: `exists` is False and `read`
    raises ValueError.
    """

    def __init__(
        self,
        result_storage: ResultStorage | None = None,
        serializer: ResultSerializer | None = None,
        cache_result_in_memory: bool = True,
        persist_result: bool | None = None,
    ) -> None:
        self.result_storage = resolve_result_storage(result_storage)
        self.serializer = resolve_serializer(
            serializer if serializer is not None else _cache_settings.default_serializer()
        )
        self.cache_result_in_memory = cache_result_in_memory
        self.persist_result = get_default_persist_setting() if persist_result is None else persist_result
        self._folder = record_folder(None if result_storage is None else self.result_storage)

    def __repr__(self) -> str:
        return f"ResultStore(result_storage={self.result_storage!r}, serializer={self.serializer!r})"

    def _read_value(self, key: str) -> Any:
        path = self._folder.record_path(key)
        return self._folder.read(path, self.serializer, self.cache_result_in_memory, _logger.warning)

    def exists(self, key: str) -> bool:
        """Whether a usable, unexpired record exists for `key`."""
        return self._read_value(key) is not MISS

    def read(self, key: str) -> ResultRecord[Any]:
        """The record of `key`; ValueError if there is none usable."""
        value = self._read_value(key)
        if value is MISS:
            raise ValueError(f"No usable result record for key {key!r} in {self._folder.path}")
        return ResultRecord(value, ResultRecordMetadata(storage_key=key, serializer=self.serializer))

    def write(
        self, obj: Any, key: str | None = None, expiration: datetime.datetime | None = None
    ) -> ResultRecord[Any]:
        """Records `obj` under `key` (a fresh uuid4 hex if None) and returns the record.
        Raises SerializationError if the serializer cannot write it, OSError if the disk
        refuses, PermissionError if the folder is one another user can write."""
        key = key if key is not None else uuid.uuid4().hex
        folder = self._folder
        path = folder.record_path(key)
        expires_at = _epoch(expiration)
        written = folder.write(path, obj, self.serializer, expires_at, _logger.warning)
        if not written:
            raise PermissionError(f"Result storage folder {folder.path!r} is refused: another user can write it")
        metadata = ResultRecordMetadata(storage_key=key, expiration=expiration, serializer=self.serializer)
        return ResultRecord(obj, metadata)

    async def aexists(self, key: str) -> bool:
        return self.exists(key)

    async def aread(self, key: str) -> ResultRecord[Any]:
        return self.read(key)

    async def awrite(
        self, obj: Any, key: str | None = None, expiration: datetime.datetime | None = None
    ) -> ResultRecord[Any]:
        return self.write(obj, key, expiration)
