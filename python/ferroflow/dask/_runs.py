"""The flow's side of a started `DaskTaskRunner`: claimed runs go to the Dask cluster in
batches (`client.map` for a map's runs, with their run names as Dask keys), and each
future's done-callback ends its run (see `ferroflow._remote`). Values stay in the
cluster; a run on the same scheduler receives its upstream's future, which Dask
resolves in the worker.

The one module that calls `distributed` for the runner: its partial types stop here.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import threading
import uuid
from typing import Any

from ferroflow._remote import Attempt, ClusterRuns, PreparedRun, TaskDefinition
from ferroflow._worker_runs import FlowRunIdentity, emit_records
from ferroflow.dask._worker import ReturnedState, run_task, task_definition

#: Dask's `distributed`, as Any: its annotations are partial (strict checkers would see
#: its calls partly unknown), and this module is where ferroflow meets it.
distributed: Any = importlib.import_module("distributed")

#: How long connecting to a scheduler at `address` may take before the flow run fails,
#: when `client_kwargs` gives no `timeout` (Dask's default is 30 s).
CONNECT_TIMEOUT = 10.0


def connect(runner: Any, given_cluster: Any, closing: contextlib.ExitStack) -> tuple[Any, Any]:
    """(the client, the cluster made for it or None) of a starting `DaskTaskRunner`: of
    the cluster given, of the scheduler at `runner.address`, of the Dask worker this code
    runs in, or of a new `runner.cluster_class(**runner.cluster_kwargs)`. What it opens
    closes with `closing`."""
    logger = runner.logger
    if given_cluster is not None:
        logger.info(f"Connecting to existing Dask cluster {given_cluster}")
        if runner.adapt_kwargs:
            given_cluster.adapt(**runner.adapt_kwargs)
        return closing.enter_context(distributed.Client(given_cluster, **runner.client_kwargs)), None
    if runner.address:
        logger.info(f"Connecting to an existing Dask cluster at {runner.address}")
        return closing.enter_context(_client_at(runner.address, runner.client_kwargs)), None
    if in_dask_worker():
        return worker_client(), None  # the worker's own: it outlives the runner
    cluster_class = runner.cluster_class or distributed.LocalCluster
    logger.info(f"Creating a new Dask cluster with `{cluster_class.__module__}.{cluster_class.__qualname__}`")
    cluster = closing.enter_context(cluster_class(**runner.cluster_kwargs))
    if runner.adapt_kwargs:
        cluster.adapt(**runner.adapt_kwargs)
    client = closing.enter_context(distributed.Client(cluster, **runner.client_kwargs))
    if client.dashboard_link:
        logger.info(f"The Dask dashboard is available at {client.dashboard_link}")
    return client, cluster


def _client_at(address: str, client_kwargs: dict[str, Any]) -> Any:
    """A client of the scheduler at `address`; one that cannot be reached within the
    connection timeout fails the flow run, naming the address."""
    kwargs = dict(client_kwargs)
    timeout = kwargs.setdefault("timeout", CONNECT_TIMEOUT)
    try:
        return distributed.Client(address, **kwargs)
    except (OSError, TimeoutError) as exc:
        raise ConnectionError(
            f"DaskTaskRunner could not connect to the Dask scheduler at {address!r} within {timeout} s: {exc}"
        ) from exc


def write_performance_report(client: Any, path: str, closing: contextlib.ExitStack) -> None:
    """Dask's performance report of what `client` runs until `closing` closes, at `path`."""
    # The report reads the current client: this one, while it is open.
    closing.enter_context(client.as_current())
    closing.enter_context(distributed.performance_report(filename=path))


def in_dask_worker() -> bool:
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def worker_client() -> Any:
    """The client of the Dask worker this code runs in."""
    return distributed.get_client()


def scheduler_address(client: Any) -> str:
    address: str = client.scheduler.address
    return address


def new_client(**kwargs: Any) -> Any:
    return distributed.Client(**kwargs)


def fetch(futures: list[Any]) -> list[Any]:
    """Brings values kept on the cluster to this process, in one call (`RemoteResult`'s
    `fetch`)."""
    values: list[Any] = futures[0].client.gather(futures)
    return values


def _emit_event(event: Any) -> None:
    """A worker's log records for the flow's console (`run_task`): (time, pickled records)."""
    _, message = event
    emit_records(pickle.loads(message))


class DaskRuns(ClusterRuns):
    """The runs of one started `DaskTaskRunner` on its client's cluster."""

    # A run under a time limit tells when it starts (an event on `_starts_topic`).
    reports_starts = True

    def __init__(self, client: Any, flow_run: FlowRunIdentity | None) -> None:
        address = scheduler_address(client)
        # Two runners on the same scheduler share their runs' values (Dask resolves a
        # future of one client in another's task by its key).
        super().__init__(("dask", address), fetch)
        self._client = client
        self._flow_run = flow_run
        self._flow_pid = os.getpid()
        #: The tasks on the cluster: definition key -> future of `(key, cloudpickled task)`,
        #: a Dask task computed once (each worker fetches its result once, then keeps it).
        self._shipped: dict[str, Any] = {}
        self._shipping = threading.Lock()
        token = uuid.uuid4().hex
        self._topic = f"ferroflow-logs-{token}"
        self._starts_topic = f"ferroflow-starts-{token}"
        client.subscribe_topic(self._topic, _emit_event)
        client.subscribe_topic(self._starts_topic, self._on_started)

    def close(self) -> None:
        """Stops listening for log records and forgets the shipped tasks."""
        try:
            self._client.unsubscribe_topic(self._topic)
            self._client.unsubscribe_topic(self._starts_topic)
        except Exception:
            pass  # the client is closing already
        self._shipped.clear()

    def _launch(self, prepared: list[PreparedRun]) -> None:
        # One Dask call per task in the batch: the runs of a `.map` go in one `client.map`.
        groups: dict[str, list[PreparedRun]] = {}
        for item in prepared:
            groups.setdefault(item.definition.key, []).append(item)
        for group in groups.values():
            options: dict[str, Any] = {
                "definition": self._ship(group[0].definition),
                "flow_run": self._flow_run,
                "flow_pid": self._flow_pid,
                "topic": self._topic,
                "starts_topic": None if group[0].definition.time_limit is None else self._starts_topic,
            }
            keys = [self.task_key(item) for item in group]
            if len(group) == 1:
                (item,) = group
                futures = [
                    self._client.submit(
                        run_task, item.identity, item.args, item.kwargs, key=keys[0], pure=False, **options
                    )
                ]
            else:
                futures = self._client.map(
                    run_task,
                    [item.identity for item in group],
                    [item.args for item in group],
                    [item.kwargs for item in group],
                    key=keys,
                    pure=False,
                    **options,
                )
            for item, future in zip(group, futures, strict=True):
                self._track(Attempt(item, future), future.key)
                future.add_done_callback(self._on_done)

    def _ship(self, definition: TaskDefinition) -> Any:
        with self._shipping:
            shipped = self._shipped.get(definition.key)
            if shipped is None:
                shipped = self._client.submit(
                    task_definition, definition.key, definition.blob, key=definition.key, pure=False
                )
                self._shipped[definition.key] = shipped
            return shipped

    def _on_started(self, event: Any) -> None:
        """A run under a time limit started in a worker: (time, its key)."""
        self.started(event[1])

    def _on_done(self, future: Any) -> None:
        """A future's done-callback (on Dask's callback thread): ends its attempt."""
        key = future.key
        status: str = future.status
        if status == "finished":
            self.completed_remote(key)
            return
        if status != "error":
            # Cancelled or lost: by this runner (the attempt has ended already) or by the cluster.
            self.crashed(key, RuntimeError(f"Dask task {key!r} ended {status} before it returned"))
            return
        try:
            exception = future.exception()
            trace = future.traceback()
        except BaseException as exc:
            self.crashed(key, exc)
            return
        if isinstance(exception, ReturnedState):
            self.returned_here(key, exception.state)
        elif isinstance(exception, distributed.KilledWorker):
            self.crashed(key, RuntimeError(f"Dask task {key!r}: its worker died ({exception})"))
        else:
            self.raised(key, exception.with_traceback(trace) if trace is not None else exception)

    def _cancel_remote(self, handles: list[Any]) -> None:
        try:
            self._client.cancel(handles, force=True)
        except Exception:
            pass  # the cluster is gone: nothing runs there any more
