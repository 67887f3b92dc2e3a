"""Flow result options (issue 8): `persist_result`, `result_storage`, `result_serializer`
and `cache_result_in_memory` are kept as Prefect keeps them, checked when the flow is
decorated, and a flow that persists writes its result to its storage (through
`ferroflow.results`); what needs Prefect's server (storage blocks, `.serve()`,
`.deploy()`) is refused, saying why.
"""

from __future__ import annotations

import asyncio
import os

import pytest

from ferroflow import flow, task
from ferroflow.filesystems import LocalFileSystem
from ferroflow.results import ResultStore


def job():
    return 1


def records(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


@pytest.fixture(autouse=True)
def _default_storage(tmp_path, monkeypatch):
    """The default storage in a fresh folder, and persistence off by default."""
    monkeypatch.setenv("FERROFLOW_RESULTS_LOCAL_STORAGE_PATH", str(tmp_path / "default"))
    for name in ("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "PREFECT_RESULTS_PERSIST_BY_DEFAULT"):
        monkeypatch.delenv(name, raising=False)


def test_the_options_are_kept_as_prefect_keeps_them(tmp_path):
    plain = flow(job)
    assert (plain.persist_result, plain.result_storage, plain.result_serializer) == (None, None, None)
    assert plain.cache_result_in_memory is True
    storage = LocalFileSystem(basepath=str(tmp_path))
    stored = flow(result_storage=storage, cache_result_in_memory=False)(job)
    assert stored.persist_result is True  # a storage turns persistence on, as in Prefect
    assert stored.result_storage is storage and stored.cache_result_in_memory is False
    assert flow(result_serializer="json")(job).persist_result is True
    assert flow(result_serializer="json", persist_result=False)(job).persist_result is False


def test_with_options_inherits_and_replaces_them(tmp_path):
    original = flow(persist_result=True, result_storage=str(tmp_path), result_serializer="json")(job)
    copy = original.with_options(name="copy")
    assert (copy.persist_result, copy.result_storage, copy.result_serializer) == (True, str(tmp_path), "json")
    assert original.with_options(persist_result=False).persist_result is False
    assert original.with_options(result_serializer=None).result_serializer is None  # None replaces, as in Prefect
    assert original.with_options(cache_result_in_memory=False).cache_result_in_memory is False


def test_a_flow_that_persists_writes_its_result_to_its_storage(tmp_path):
    @flow(result_storage=str(tmp_path))
    def report(n):
        return {"rows": n}

    assert report(3) == {"rows": 3}
    [key] = records(tmp_path)
    assert ResultStore(result_storage=str(tmp_path)).read(key).result == {"rows": 3}


def test_the_serializer_and_a_local_file_system_are_used(tmp_path):
    @flow(result_storage=LocalFileSystem(basepath=str(tmp_path)), result_serializer="json")
    def numbers():
        return [1, 2, 3]

    assert numbers() == [1, 2, 3]
    [key] = records(tmp_path)
    assert ResultStore(result_storage=str(tmp_path), serializer="json").read(key).result == [1, 2, 3]


def test_an_async_flow_and_a_subflow_persist_too(tmp_path):
    @flow(result_storage=str(tmp_path / "child"))
    def child():
        return "child result"

    @flow(result_storage=str(tmp_path / "parent"))
    async def parent():
        return child()

    assert asyncio.run(parent()) == "child result"
    assert len(records(tmp_path / "child")) == 1
    assert len(records(tmp_path / "parent")) == 1


def test_persist_by_default_setting_and_default_storage(tmp_path, monkeypatch):
    monkeypatch.setenv("FERROFLOW_RESULTS_PERSIST_BY_DEFAULT", "true")

    @flow
    def plain():
        return "kept"

    assert plain() == "kept"
    assert len(records(tmp_path / "default")) == 1
    assert flow(persist_result=False)(plain.fn)() == "kept"
    assert len(records(tmp_path / "default")) == 1  # its own `False` wins


def test_a_flow_that_does_not_persist_writes_nothing(tmp_path):
    @task
    def double(x):
        return 2 * x

    @flow
    def plain():
        return double.map([1, 2]).result()

    assert plain() == [2, 4]
    assert not (tmp_path / "default").exists()


def test_a_failed_flow_writes_nothing(tmp_path):
    @flow(result_storage=str(tmp_path))
    def broken():
        raise ValueError("no result")

    with pytest.raises(ValueError):
        broken()
    assert records(tmp_path) == []


def test_a_result_that_cannot_be_written_is_a_warning_and_the_run_completes(tmp_path, caplog, ferroflow_records):
    @flow(result_storage=str(tmp_path), result_serializer="json")
    def opaque():
        return object()

    state = opaque(return_state=True)
    assert state.is_completed()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1
    assert warnings[0].startswith("Encountered an error while persisting result: ")
    assert warnings[0].endswith("Execution will continue, but the result has not been persisted")


@pytest.mark.parametrize(
    ("options", "error", "words"),
    [
        ({"result_storage": "s3-bucket/results"}, NotImplementedError, "names a Prefect storage block"),
        ({"result_storage": "s3://bucket/results"}, NotImplementedError, "remote storage"),
        ({"result_storage": 3}, TypeError, "result_storage"),
        ({"result_serializer": "yaml"}, ValueError, "result_serializer: Unknown serializer 'yaml'"),
        ({"result_serializer": 3}, TypeError, "result_serializer"),
        ({"persist_result": "yes"}, TypeError, "persist_result must be True, False or None"),
        ({"cache_result_in_memory": None}, TypeError, "cache_result_in_memory must be True or False"),
    ],
)
def test_bad_result_options_are_refused_when_decorated_naming_the_flow(options, error, words):
    with pytest.raises(error, match=words) as raised:
        flow(**options)(job)
    assert str(raised.value).startswith("Flow 'job': ")


def test_an_unknown_keyword_is_a_type_error_naming_the_flow():
    with pytest.raises(TypeError, match="Flow 'job': @flow got an unexpected keyword argument 'tags'"):
        flow(tags=["etl"])(job)
    with pytest.raises(TypeError, match="Flow 'job': @flow got an unexpected keyword argument 'cache_policy'"):
        flow(job).with_options(cache_policy=None)


@pytest.mark.parametrize("method", ["serve", "deploy", "to_deployment"])
def test_running_a_flow_through_prefect_s_server_is_refused_saying_why(method):
    with pytest.raises(NotImplementedError, match=rf"Flow 'job': \.{method}\(\) needs a Prefect server"):
        getattr(flow(job), method)(name="nightly", cron="0 3 * * *")
    with pytest.raises(NotImplementedError, match=r"\.from_source\(\) needs a Prefect server"):
        flow(job).from_source(source="https://github.com/org/repo", entrypoint="flows.py:job")
