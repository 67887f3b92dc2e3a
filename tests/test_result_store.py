"""The result store is safe and private (issue 8, item 1):

- writes are atomic: a writer killed mid-write leaves no torn record, and the record it
  was replacing stays readable;
- writers in several processes and threads never corrupt it;
- a corrupt, truncated or unreadable record is a miss with a WARNING naming it, never a
  crash, and the run that follows writes a good record;
- records are pickles, so a folder or record another user owns or can write is refused
  (a miss, with a WARNING), and records and new folders are owner-only.

Tests use the public `ResultStore` and tasks with `result_storage=` under `tmp_path`.
"""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from ferroflow import flow, task
from ferroflow.cache_policies import INPUTS
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import ResultStore
from ferroflow.serializers import (
    CompressedSerializer,
    JSONSerializer,
    PickleSerializer,
    Serializer,
    resolve_serializer,
)

posix_only = pytest.mark.skipif(os.name != "posix", reason="owners and modes are POSIX")
not_root = pytest.mark.skipif(os.name == "posix" and os.getuid() == 0, reason="root reads files whatever their mode")


@pytest.fixture
def warnings_logged(ferroflow_records):
    """The WARNING (and worse) messages of ferroflow's loggers; call it to read them."""
    return lambda: [record.getMessage() for record in ferroflow_records() if record.levelno >= logging.WARNING]


def cached_task(folder: pathlib.Path, calls: list[int]):
    """A task caching by inputs in `folder` that records its calls, and a flow calling it
    once with 1, returning (state name, result)."""

    @task(cache_policy=INPUTS, result_storage=folder)
    def step(x):
        calls.append(x)
        return {"x": x, "payload": "p" * 100}

    @flow
    def run():
        state = step(1, return_state=True)
        return state.name, state.result()

    return run


class Custom(Serializer):
    """A serializer of the user's own, which other tasks do not know."""

    type = "custom"

    def dumps(self, obj: object) -> bytes:
        return repr(obj).encode()

    def loads(self, blob: bytes) -> object:
        return blob.decode()


class NotAPickle(Serializer):
    """Claims to be pickle and writes something else."""

    type = "pickle"

    def dumps(self, obj: object) -> bytes:
        return b"this is not a pickle"


def only_record(folder: pathlib.Path) -> pathlib.Path:
    (path,) = [p for p in folder.iterdir() if not p.name.startswith(".")]
    return path


# damaged records -------------------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["empty", "truncated", "garbage", "flipped byte", "longer", "unknown serializer", "undecodable payload"],
)
def test_a_damaged_record_is_a_miss_with_a_warning_and_is_rewritten(tmp_path, damage, warnings_logged):
    calls: list[int] = []
    run = cached_task(tmp_path / "store", calls)
    assert run()[0] == "Completed"
    path = only_record(tmp_path / "store")
    data = path.read_bytes()
    if damage in ("unknown serializer", "undecodable payload"):
        # Whole records: one written by a serializer this task does not know, one whose
        # payload its serializer cannot read.
        writer = Custom() if damage == "unknown serializer" else NotAPickle()
        store = ResultStore(result_storage=tmp_path / "store", serializer=writer, cache_result_in_memory=False)
        store.write("value", key=path.name)
    else:
        path.write_bytes(
            {
                "empty": b"",
                "truncated": data[: len(data) // 2],
                "garbage": b"\x80\x04not a record at all" * 3,
                "flipped byte": data[:-1] + bytes([data[-1] ^ 0xFF]),
                "longer": data + b"extra",
            }[damage]
        )

    state, value = run()
    assert state == "Completed" and value["x"] == 1  # a miss: the function ran again
    assert calls == [1, 1]
    warned = [message for message in warnings_logged() if message.startswith("Cache record")]
    assert len(warned) == 1 and str(path) in warned[0] and "running the task instead" in warned[0]
    assert run()[0] == "Cached"  # the rewritten record is good


def test_a_record_written_by_a_kill_mid_write_is_never_half_read(tmp_path):
    """A child process writes a large record through a slow disk (each write is a small
    piece, with a pause) and is killed in the middle: the record it replaces is intact,
    its temporary file is never read, and the next run reads the old record."""
    folder = tmp_path / "store"
    old = ResultStore(result_storage=folder)
    old.write({"version": "old"}, key="report")
    child = textwrap.dedent(
        f"""
        import os, sys, time
        real_write = os.write

        def slow_write(fd, data):  # a slow disk: a small piece at a time
            time.sleep(0.002)
            return real_write(fd, bytes(data[:4096]))

        os.write = slow_write
        from ferroflow.results import ResultStore

        print("writing", flush=True)
        ResultStore(result_storage={str(folder)!r}).write({{"version": "new", "blob": b"x" * 4_000_000}}, key="report")
        print("written", flush=True)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        temporary = None
        while time.monotonic() < deadline:
            partial = [p for p in folder.iterdir() if p.name.startswith(".ferroflow-tmp-")]
            if partial and partial[0].stat().st_size > 100_000:
                temporary = partial[0]
                break
            time.sleep(0.005)
        assert temporary is not None, "the child never got to write"
        proc.send_signal(signal.SIGKILL if hasattr(signal, "SIGKILL") else signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert b"written" not in out
    assert ResultStore(result_storage=folder).read("report").result == {"version": "old"}
    assert temporary.exists()  # left behind, never read
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["report"]


CONCURRENT_WRITER = """
import os, sys, threading, zlib
from ferroflow.results import ResultStore

folder, writer = sys.argv[1], int(sys.argv[2])
store = ResultStore(result_storage=folder)
problems = []

def work(thread):
    for round in range(60):
        for key in ("k0", "k1", "k2", "k3"):
            blob = os.urandom(50_000 + 97 * round)
            store.write((writer, thread, round, zlib.crc32(blob), blob), key=key)
            try:
                found = store.read(key).result
            except ValueError as exc:  # absent or unusable: the store said why
                problems.append(f"unreadable: {exc}")
                continue
            w, t, r, crc, data = found
            if zlib.crc32(data) != crc:
                problems.append(f"torn record from writer {w}")

threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
for t in threads: t.start()
for t in threads: t.join()
print("problems", len(problems), problems[:3], flush=True)
"""


@pytest.mark.slow
def test_writers_in_several_processes_and_threads_never_corrupt_records(tmp_path, warnings_logged):
    folder = tmp_path / "store"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", CONCURRENT_WRITER, str(folder), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for n in range(3)
    ]
    outputs = [writer.communicate(timeout=120) for writer in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err.decode()
        assert b"problems 0 []" in out, out.decode() + err.decode()
    store = ResultStore(result_storage=folder)
    for key in ("k0", "k1", "k2", "k3"):
        _, _, _, crc, data = store.read(key).result
        import zlib

        assert zlib.crc32(data) == crc
    assert warnings_logged() == []


# privacy ---------------------------------------------------------------------------


@posix_only
def test_records_are_owner_only_whatever_the_umask(tmp_path):
    previous = os.umask(0)
    try:
        store = ResultStore(result_storage=tmp_path / "new" / "store")
        store.write("value", key="a")
        store.write("value", key="nested/deeper/b")
    finally:
        os.umask(previous)
    folder = tmp_path / "new" / "store"
    assert folder.stat().st_mode & 0o777 == 0o700
    assert (folder / "a").stat().st_mode & 0o777 == 0o600
    assert (folder / "nested").stat().st_mode & 0o777 == 0o700
    assert (folder / "nested" / "deeper" / "b").stat().st_mode & 0o777 == 0o600


@posix_only
@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_folder_others_can_write_is_refused_with_one_warning(tmp_path, mode, warnings_logged):
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, mode)
    calls: list[int] = []
    run = cached_task(folder, calls)
    assert run()[0] == "Completed"
    assert run()[0] == "Completed"  # never cached
    assert calls == [1, 1]
    assert list(folder.iterdir()) == []  # nothing written there
    refused = [m for m in warnings_logged() if m.startswith("Result storage folder")]
    assert len(refused) == 1
    assert f"is writable by other users (mode {mode:04o})" in refused[0]
    assert "reading a record someone else wrote could run their code" in refused[0]


@posix_only
def test_a_record_others_can_write_is_refused_and_replaced(tmp_path, warnings_logged):
    calls: list[int] = []
    run = cached_task(tmp_path / "store", calls)
    run()
    record = only_record(tmp_path / "store")
    os.chmod(record, 0o666)
    assert run()[0] == "Completed"  # refused: a miss
    warned = [m for m in warnings_logged() if m.startswith("Cache record")]
    assert len(warned) == 1 and "is writable by other users (mode 0666)" in warned[0]
    assert record.stat().st_mode & 0o777 == 0o600  # the run wrote its own record
    assert run()[0] == "Cached"


@posix_only
@pytest.mark.skipif(os.name != "posix" or os.getuid() != 0, reason="only root can give a file away")
def test_a_record_owned_by_another_user_is_refused(tmp_path, warnings_logged):
    calls: list[int] = []
    run = cached_task(tmp_path / "store", calls)
    run()
    record = only_record(tmp_path / "store")
    os.chown(record, 65534, 65534)
    assert run()[0] == "Completed"
    assert any("is owned by another user (uid 65534)" in m for m in warnings_logged())


@posix_only
def test_a_symlink_in_place_of_a_record_is_never_followed(tmp_path, warnings_logged):
    calls: list[int] = []
    run = cached_task(tmp_path / "store", calls)
    run()
    record = only_record(tmp_path / "store")
    elsewhere = tmp_path / "elsewhere"
    record.rename(elsewhere)
    record.symlink_to(elsewhere)
    assert run()[0] == "Completed"
    assert any("is a symlink, which is never followed" in m for m in warnings_logged())
    assert not record.is_symlink()  # the run replaced the link with its own record
    assert run()[0] == "Cached"


@posix_only
@not_root
def test_an_unreadable_record_is_a_miss_with_a_warning(tmp_path, warnings_logged):
    calls: list[int] = []
    run = cached_task(tmp_path / "store", calls)
    run()
    record = only_record(tmp_path / "store")
    os.chmod(record, 0o000)
    assert run()[0] == "Completed"
    assert any("could not be opened" in m for m in warnings_logged())


# the file system and serializers ---------------------------------------------------


def test_local_file_system_reads_and_writes_inside_its_folder(tmp_path):
    fs = LocalFileSystem(basepath=str(tmp_path / "base"))
    written = fs.write_path("a/b.bin", b"content")
    assert pathlib.Path(written) == (tmp_path / "base" / "a" / "b.bin").resolve()
    assert fs.read_path("a/b.bin") == b"content"
    with pytest.raises(ValueError, match="is outside of the base path"):
        fs.write_path("../escape", b"x")
    with pytest.raises(ValueError, match="does not exist"):
        fs.read_path("missing")
    with pytest.raises(NotImplementedError, match="blocks are kept by Prefect's server"):
        LocalFileSystem.load("my-block")


def test_serializers_round_trip_what_they_promise():
    import datetime
    import decimal
    import uuid

    value = {
        "when": datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
        "day": datetime.date(2024, 5, 6),
        "span": datetime.timedelta(hours=2),
        "id": uuid.UUID(int=7),
        "price": decimal.Decimal("1.10"),
        "path": pathlib.Path("a/b"),
        "blob": b"\x00\xff",
        "tags": {"x", "y"},
        "z": complex(1, 2),
    }
    for serializer in (
        JSONSerializer(),
        PickleSerializer(),
        CompressedSerializer("json", "zlib"),
        resolve_serializer("compressed/pickle"),
    ):
        assert serializer.loads(serializer.dumps(value)) == value
    square = PickleSerializer().loads(PickleSerializer().dumps(lambda x: x * x))
    assert square(4) == 16
    with pytest.raises(TypeError, match="'object' is not JSON serializable"):
        JSONSerializer().dumps(object())
    with pytest.raises(ValueError, match="picklelib='no_such_module'"):
        PickleSerializer(picklelib="no_such_module")


def test_a_pydantic_model_round_trips_through_json():
    pydantic = pytest.importorskip("pydantic")

    class Point(pydantic.BaseModel):
        x: int
        y: int

    globals()["Point"] = Point  # importable by its qualified name, as a module-level model is
    Point.__qualname__ = "Point"
    serializer = JSONSerializer()
    assert serializer.loads(serializer.dumps(Point(x=1, y=2))) == Point(x=1, y=2)


def test_a_folder_in_place_of_a_record_is_a_miss_with_a_warning(tmp_path, warnings_logged):
    calls: list[int] = []
    run = cached_task(tmp_path / "store", calls)
    run()
    record = only_record(tmp_path / "store")
    record.unlink()
    record.mkdir()
    assert run() == ("Completed", {"x": 1, "payload": "p" * 100})
    assert any(str(record) in m for m in warnings_logged() if m.startswith("Cache record"))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_reads_and_writes_records(tmp_path):
    store = ResultStore(result_storage=tmp_path / "store")
    store.write("from the parent", key="parent")
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if the store works there
        try:
            child = ResultStore(result_storage=tmp_path / "store")
            child.write("from the child", key="child")
            os._exit(0 if child.read("parent").result == "from the parent" else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.read("child").result == "from the child"


@posix_only  # Windows file names cannot hold a colon
def test_keys_with_colons_and_subfolders_are_names_in_the_folder(tmp_path):
    store = ResultStore(result_storage=tmp_path / "store")
    store.write(1, key="2024-05-06T07:08:09")
    store.write(2, key="daily/report:eu")
    assert store.read("2024-05-06T07:08:09").result == 1 and store.read("daily/report:eu").result == 2
    for escaping in ("../x", "/abs", "a/../../x", "", "a//b", "./a"):
        with pytest.raises(ValueError, match="is not a relative path inside the storage folder"):
            store.write(0, key=escaping)
