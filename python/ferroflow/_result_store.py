"""Record folders: cached results on disk, one file per key, as Prefect lays them out.

Why one file per key (and not an embedded database): a hit is one `lstat`, one `open`,
one `read`; writers never wait for each other (each writes its own temporary file and
renames it over the record, which is atomic), a damaged record costs that record only,
and a record can be looked at or deleted by hand. docs/caching.md has the figures.

Safety:
- a record is written to a temporary file in the same folder and renamed into place:
  a reader sees the old record or the new one, never part of one, also when the writer
  is killed mid-write (its temporary file is left behind, never read);
- each record carries its length and a CRC-32 of its contents: a truncated or damaged
  record is a miss with a WARNING naming it, never an exception in the run;
- records are pickles, and reading a pickle runs code its writer chose. So a folder or a
  record that another user owns or can write is refused (a miss, with a WARNING), records
  are written owner-only (0600), new folders owner-only (0700), and a symlink in place of
  a record is never followed. (On Windows the folder's ACLs decide; these checks are
  POSIX.)

A folder keeps up to `MEMORY_RECORDS` decoded records in memory, each checked against the
file's identity (device, inode, mtime, size) before use, so a record rewritten or deleted
on disk is never served stale.
"""

from __future__ import annotations

import itertools
import math
import os
import stat
import struct
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ferroflow.exceptions import SerializationError
from ferroflow.serializers import Serializer, serializer_named

#: Decoded records a folder keeps in memory (Prefect's in-memory cache holds 1,000).
MEMORY_RECORDS = 1000

#: What `RecordFolder.read` returns for a key with no usable record.
MISS: Any = object()

# magic, format version, expiry (epoch seconds, NaN: never), CRC-32 of the payload, the
# payload's length, the length of the serializer's name; then that name, then the payload.
_HEADER = struct.Struct("<4sBdIQB")
_MAGIC = b"FFRC"
_VERSION = 1

_POSIX = os.name == "posix"
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_TEMP_PREFIX = ".ferroflow-tmp-"
_temp_numbers = itertools.count()

Warn = Callable[[str], None]


#: This process's user (read once: a hit must not pay a system call for it).
_UID = os.getuid() if _POSIX else -1


def _foreign(st: os.stat_result) -> str | None:
    """Why a file or folder may hold another user's code, or None if only we can write it."""
    if not _POSIX:
        return None
    if st.st_uid != _UID:
        return f"is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def record_key_path(folder: str, key: str) -> str:
    """The file of `key` in `folder`; a ValueError for a key that is not a relative path
    inside it (empty, absolute, with `..`, `.` or empty parts, or a NUL)."""
    if not isinstance(key, str):
        raise TypeError(f"a record key must be a string, got {type(key).__name__}: {key!r}")
    if key.isalnum():  # a hash: the common case
        return folder + os.sep + key
    parts = key.replace("\\", "/").split("/")
    drive = not _POSIX and ":" in parts[0]  # "C:x" is relative to a drive's folder on Windows
    if "\x00" in key or any(part in ("", ".", "..") for part in parts) or os.path.isabs(key) or drive:
        raise ValueError(f"record key {key!r} is not a relative path inside the storage folder")
    return os.path.join(folder, *parts)


#: How long a folder found safe is trusted before it is looked at again (seconds).
_FOLDER_CHECK_INTERVAL = 1.0


class RecordFolder:
    """One storage folder's records, shared by every task of the process that uses it.
    Records are named by their path, from `record_path(key)`."""

    __slots__ = ("path", "private_parent", "_memory", "_lock", "_warned", "_trusted_until")

    def __init__(self, path: str, private_parent: bool = False) -> None:
        self.path = path
        #: Whether the folder's parent is ferroflow's own (~/.ferroflow), made owner-only too.
        self.private_parent = private_parent
        self._memory: OrderedDict[str, tuple[tuple[int, int, int, int], float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._trusted_until = 0.0

    def __repr__(self) -> str:
        return f"RecordFolder({self.path!r})"

    def record_path(self, key: str) -> str:
        """The file of record `key` (TypeError or ValueError for a key that is not a
        relative path inside the folder)."""
        return record_key_path(self.path, key)

    # -- reading ---------------------------------------------------------------------

    def read(self, path: str, serializer: Serializer | None, use_memory: bool, warn: Warn) -> Any:
        """The value recorded at `path`, or MISS (none, expired, refused or unreadable:
        `warn` is told why for the last two)."""
        if not self._usable(path, warn, create=False):
            return MISS
        if use_memory and path in self._memory:
            remembered = self._remembered(path, warn)
            if remembered is not None:
                return MISS if _expired(remembered[1]) else remembered[2]
        try:
            identity, expires_at, value = self._load(path, serializer)
        except FileNotFoundError:
            return MISS
        except _Unusable as exc:
            warn(f"Cache record {path!r} {exc}; running the task instead.")
            return MISS
        if _expired(expires_at):
            return MISS
        if use_memory:
            self._remember(path, identity, expires_at, value)
        return value

    def _remembered(self, path: str, warn: Warn) -> tuple[tuple[int, int, int, int], float, Any] | None:
        """The decoded record kept in memory for `path`, if the file is still the one it
        was decoded from and still only ours (one `lstat`, instead of reading and decoding
        it again)."""
        try:
            st = os.lstat(path)
        except OSError:
            return None  # gone or unreadable: `_load` says which
        if not stat.S_ISREG(st.st_mode) or _foreign(st) is not None:
            return None  # `_load` refuses it, saying why
        with self._lock:
            remembered = self._memory.get(path)
            if remembered is None or remembered[0] != (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size):
                return None
            self._memory.move_to_end(path)
        return remembered

    def _load(self, path: str, serializer: Serializer | None) -> tuple[tuple[int, int, int, int], float, Any]:
        """Opens (never through a symlink), checks and decodes the record at `path`."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if os.path.islink(path):
                raise _Unusable("is a symlink, which is never followed") from exc
            raise _Unusable(f"could not be opened ({exc})") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Unusable("is not a regular file")
            problem = _foreign(st)
            if problem is not None:
                raise _Unusable(f"{problem}; it is not read, since reading it could run their code")
            data = _read_all(fd, st.st_size)
        except OSError as exc:
            raise _Unusable(f"could not be read ({exc})") from exc
        finally:
            os.close(fd)
        expires_at, kind, payload = _parse(data)
        decoder = serializer if serializer is not None and serializer.type == kind else _decoder(kind)
        if decoder is None:
            raise _Unusable(f"was written with serializer {kind!r}, which this task does not use")
        try:
            value = decoder.loads(payload)
        except Exception as exc:
            raise _Unusable(f"could not be deserialized ({type(exc).__name__}: {exc})") from exc
        return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size), expires_at, value

    # -- writing ---------------------------------------------------------------------

    def write(
        self,
        path: str,
        value: Any,
        serializer: Serializer,
        expires_at: float | None,
        warn: Warn,
    ) -> bool:
        """Records `value` at `path` (atomically); False if the folder is refused. Raises
        SerializationError for a value the serializer cannot write, OSError for a failed
        write (no record is then left half-written).

        The value itself is not kept in memory: the run that returned it goes on with it,
        and a later hit must not see what it did to it. Hits decode the record."""
        if not self._usable(path, warn, create=True):
            return False
        try:
            payload = serializer.dumps(value)
        except Exception as exc:
            raise SerializationError(
                f"Failed to serialize object of type {type(value).__name__!r} with serializer "
                f"{serializer.type!r}. You can try a different serializer (e.g. result_serializer=\"json\") "
                "or disabling persistence (persist_result=False) for this flow or task."
            ) from exc
        kind = serializer.type.encode()
        expiry = math.nan if expires_at is None else expires_at
        header = _HEADER.pack(_MAGIC, _VERSION, expiry, zlib.crc32(payload), len(payload), len(kind))
        _write_atomically(path, (header, kind, payload))
        with self._lock:
            self._memory.pop(path, None)
        return True

    # -- the folder ------------------------------------------------------------------

    def _usable(self, path: str, warn: Warn, create: bool) -> bool:
        """Whether records may be read from (and written to) the folder of `path`: it
        exists (or, to write, is made owner-only) and no other user owns or can write it
        or a folder between it and the record. A folder found safe is trusted for a
        second before it is looked at again."""
        in_folder = path.rfind(os.sep) == len(self.path)  # not in a subfolder
        if in_folder and time.monotonic() < self._trusted_until:
            return True
        folder = os.path.dirname(path)
        subfolders: list[str] = []
        while len(folder) > len(self.path):
            subfolders.append(folder)
            folder = os.path.dirname(folder)
        for folder in [self.path, *reversed(subfolders)]:  # outermost first
            try:
                st = os.stat(folder)
            except FileNotFoundError:
                if not create:
                    return False
                self._create(folder)
                st = os.stat(folder)
            problem = _foreign(st)
            if problem is not None:
                self._trusted_until = 0.0
                self._warn_once(
                    folder,
                    warn,
                    f"Result storage folder {folder!r} {problem}: ferroflow neither reads nor writes records "
                    "there, since reading a record someone else wrote could run their code. "
                    "Use a folder only you can write (chmod go-w).",
                )
                return False
        if in_folder:
            self._trusted_until = time.monotonic() + _FOLDER_CHECK_INTERVAL
        return True

    def _create(self, folder: str) -> None:
        if folder == self.path and self.private_parent:
            os.makedirs(os.path.dirname(folder), mode=0o700, exist_ok=True)
        os.makedirs(folder, mode=0o700, exist_ok=True)

    def _warn_once(self, subject: str, warn: Warn, message: str) -> None:
        with self._lock:
            if subject in self._warned:
                return
            self._warned.add(subject)
        warn(message)

    def _remember(self, path: str, identity: tuple[int, int, int, int], expires_at: float, value: Any) -> None:
        with self._lock:
            self._memory[path] = (identity, expires_at, value)
            self._memory.move_to_end(path)
            if len(self._memory) > MEMORY_RECORDS:
                self._memory.popitem(last=False)

    def forget(self) -> None:
        """Drops the records kept in memory (the files stay) and looks at the folder
        again on next use."""
        with self._lock:
            self._memory.clear()
            self._warned.clear()
        self._trusted_until = 0.0


class _Unusable(Exception):
    """A record that exists but cannot be used; the message says why."""


# The built-in serializers that read records whose writer named them, made once.
_decoders: dict[str, Serializer | None] = {}


def _decoder(kind: str) -> Serializer | None:
    if kind not in _decoders:
        _decoders[kind] = serializer_named(kind)
    return _decoders[kind]


def _expired(expires_at: float) -> bool:
    return expires_at == expires_at and expires_at <= time.time()  # NaN (never) != NaN


def _read_all(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse(data: bytes) -> tuple[float, str, bytes]:
    """(expiry, serializer name, payload) of a record's bytes; `_Unusable` if they are not
    a whole, intact record."""
    if len(data) < _HEADER.size:
        raise _Unusable(f"is truncated ({len(data)} bytes)")
    magic, version, expires_at, crc, length, name_length = _HEADER.unpack_from(data)
    if magic != _MAGIC:
        raise _Unusable("is not a ferroflow cache record")
    if version != _VERSION:
        raise _Unusable(f"has format version {version}, which this ferroflow does not read")
    start = _HEADER.size + name_length
    if len(data) != start + length:
        raise _Unusable(f"is truncated or damaged ({len(data)} bytes, {start + length} expected)")
    payload = data[start:]
    if zlib.crc32(payload) != crc:
        raise _Unusable("is damaged (its checksum does not match)")
    return expires_at, data[_HEADER.size : start].decode(errors="replace"), payload


def _write_atomically(path: str, pieces: tuple[bytes, ...]) -> None:
    """Writes `pieces` to `path` through a temporary file renamed into place."""
    folder, name = os.path.split(path)
    unique = f"{os.getpid()}-{threading.get_ident()}-{next(_temp_numbers)}"
    temporary = os.path.join(folder, f"{_TEMP_PREFIX}{name}-{unique}")
    fd = os.open(temporary, _WRITE_FLAGS, 0o600)
    try:
        try:
            for piece in pieces:
                _write_all(fd, piece)
        finally:
            os.close(fd)
        _replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _replace(source: str, target: str) -> None:
    """`os.replace`, retried a little on Windows, where it fails while another process
    has the target open (a reader of the old record)."""
    for attempt in range(50):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if _POSIX or attempt == 49:
                raise
            time.sleep(0.01)


_folders: dict[str, RecordFolder] = {}
_folders_lock = threading.Lock()


def folder_at(path: str, private_parent: bool = False) -> RecordFolder:
    """The process's one `RecordFolder` for the absolute folder `path`."""
    folder = _folders.get(path)
    if folder is None:
        with _folders_lock:
            folder = _folders.setdefault(path, RecordFolder(path, private_parent))
    return folder


def _after_fork_in_child() -> None:
    """A forked child gets fresh locks: one held by another thread of the parent at the
    fork would never be released in the child."""
    global _folders_lock
    _folders_lock = threading.Lock()
    for folder in _folders.values():
        folder._lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def write_file_atomically(path: str, content: bytes) -> None:
    """Writes `content` to `path` (owner-only) so that no reader sees it half-written."""
    _write_atomically(path, (content,))
