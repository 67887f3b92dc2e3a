"""`DaskTaskRunner`: task runs on a Dask cluster (prefect-dask's runner, same arguments).

`from prefect_dask.task_runners import DaskTaskRunner` becomes
`from ferroflow.dask.task_runners import DaskTaskRunner`.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ferroflow._bridge import ClaimedRun, RunnerEngine
from ferroflow._core import PrefectConcurrentFuture
from ferroflow._task_runners import TaskRunner
from ferroflow.context import FlowRunContext

if TYPE_CHECKING:
    from ferroflow.dask._runs import DaskRuns

__all__ = ["DaskTaskRunner"]


def _from_qualified_name(name: str) -> Any:
    module, _, attribute = name.rpartition(".")
    if not module:
        raise ValueError(
            f"DaskTaskRunner: cluster_class {name!r} is not a dotted name such as 'distributed.LocalCluster'"
        )
    return getattr(importlib.import_module(module), attribute)


class DaskTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Runs tasks on a Dask cluster.

    By default a temporary `distributed.LocalCluster` (or `cluster_class(**cluster_kwargs)`,
    scaled with `cluster.adapt(**adapt_kwargs)` if given) starts with the flow run and
    closes with it. `cluster=` uses a running cluster object, `address=` connects to a
    running scheduler; inside a Dask worker the runner uses that worker's client.
    `client_kwargs` go to `distributed.Client`; `performance_report_path` writes Dask's
    performance report of the flow run there.

    The engine schedules every run in the flow's process (dependencies, states, retries,
    hooks, futures); each run's function executes on the cluster, and its value stays
    there: a run on the same cluster receives it as a Dask future, and it comes to the
    flow's process only when asked for (`.result()`, states, the flow's return value).
    """

    _executes_elsewhere = True

    def __init__(
        self,
        cluster: Any = None,
        address: str | None = None,
        cluster_class: str | Callable[..., Any] | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        adapt_kwargs: dict[str, Any] | None = None,
        client_kwargs: dict[str, Any] | None = None,
        performance_report_path: str | None = None,
    ) -> None:
        if address:
            if cluster or cluster_class or cluster_kwargs or adapt_kwargs:
                raise ValueError(
                    "Cannot specify `address` and `cluster`/`cluster_class`/`cluster_kwargs`/`adapt_kwargs`"
                )
        elif cluster:
            if cluster_class or cluster_kwargs:
                raise ValueError("Cannot specify `cluster` and `cluster_class`/`cluster_kwargs`")
        #: The class (a dotted name given is imported here, as in prefect-dask).
        self.cluster_class: Callable[..., Any] | None = (
            _from_qualified_name(cluster_class) if isinstance(cluster_class, str) else cluster_class
        )
        cluster_kwargs = dict(cluster_kwargs or {})
        adapt_kwargs = dict(adapt_kwargs or {})
        client_kwargs = dict(client_kwargs or {})
        client_kwargs.setdefault("set_as_default", False)
        # The runner drives the cluster from threads, with a synchronous client.
        if "asynchronous" in client_kwargs:
            raise ValueError("`client_kwargs` cannot set `asynchronous`. This option is managed by ferroflow.")
        if "asynchronous" in cluster_kwargs:
            raise ValueError("`cluster_kwargs` cannot set `asynchronous`. This option is managed by ferroflow.")
        self.address = address
        self.cluster_kwargs = cluster_kwargs
        self.adapt_kwargs = adapt_kwargs
        self.client_kwargs = client_kwargs
        self.performance_report_path = performance_report_path
        #: A running cluster the user gave (not closed by the runner).
        self._given_cluster = cluster
        super().__init__()

    _RUNNING_STATE: tuple[str, ...] = (*TaskRunner._RUNNING_STATE, "_client", "_cluster", "_runs", "_closing")

    def _init_running_state(self) -> None:
        super()._init_running_state()
        self._client: Any = None
        self._cluster: Any = None
        self._runs: DaskRuns | None = None
        #: What closes with the runner: the client and cluster it made, the report.
        self._closing = contextlib.ExitStack()

    @property
    def _worker_count(self) -> int:
        return 1  # one engine thread hands runs over; the cluster's workers execute them

    @property
    def client(self) -> Any:
        """The started runner's `distributed.Client` (None before it starts)."""
        return self._client

    @property
    def cluster(self) -> Any:
        """The cluster the runner uses: the one given, or the one it made (None with
        `address=`, or before it starts)."""
        return self._cluster if self._cluster is not None else self._given_cluster

    def duplicate(self) -> DaskTaskRunner:
        return type(self)(
            cluster=self._given_cluster,
            address=self.address,
            cluster_class=self.cluster_class,
            cluster_kwargs=self.cluster_kwargs,
            adapt_kwargs=self.adapt_kwargs,
            client_kwargs=self.client_kwargs,
            performance_report_path=self.performance_report_path,
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, DaskTaskRunner)
        return (
            self.address == other.address
            and self.cluster_class == other.cluster_class
            and self.cluster_kwargs == other.cluster_kwargs
            and self.adapt_kwargs == other.adapt_kwargs
            and self.client_kwargs == other.client_kwargs
            and self.performance_report_path == other.performance_report_path
        )

    def __hash__(self) -> int:
        return hash((type(self), self.address, self.performance_report_path))

    def __repr__(self) -> str:
        where = f"address={self.address!r}" if self.address else f"cluster_class={self.cluster_class!r}"
        return f"DaskTaskRunner({where})"

    def __getstate__(self) -> dict[str, Any]:
        """Pickles as its configuration; a running cluster object given to it stays behind
        (unpickled in a Dask worker, the runner uses that worker's client)."""
        state = super().__getstate__()
        state["_given_cluster"] = None
        return state

    # -- life -------------------------------------------------------------------------------

    def _start(self, context: FlowRunContext | None) -> RunnerEngine:
        from ferroflow.dask._runs import DaskRuns

        try:
            self._client = self._connect()
            self._runs = DaskRuns(
                self._client,
                None
                if context is None
                else (context.flow.name, context.flow_run.id, context.flow_run.name, bool(context.log_prints)),
            )
        except BaseException:
            self._close_cluster()
            raise
        return super()._start(context)

    def _connect(self) -> Any:
        """The client of this run: of the given cluster, of the scheduler at `address`, of
        the worker the runner starts in, or of a cluster made now (see `_runs.connect`)."""
        from ferroflow.dask._runs import connect

        client, self._cluster = connect(self, self._given_cluster, self._closing)
        if self.performance_report_path is not None:
            from ferroflow.dask._runs import write_performance_report

            write_performance_report(client, self.performance_report_path, self._closing)
        return client

    def _execute(self, runs: list[ClaimedRun]) -> None:
        """Every claimed run goes to the cluster."""
        dask_runs = self._runs
        if dask_runs is None:
            raise RuntimeError("the Dask task runner has been shut down and executes no more runs")
        dask_runs.submit(runs)

    def _stop(self) -> None:
        """Waits for every run (as on threads), then closes what the runner opened."""
        try:
            super()._stop()
        finally:
            self._close_cluster()

    def _close_cluster(self) -> None:
        dask_runs, self._runs = self._runs, None
        if dask_runs is not None:
            dask_runs.close()
        closing, self._closing = self._closing, contextlib.ExitStack()
        self._client = self._cluster = None
        closing.close()

    def _interrupt(self) -> int:
        cancelled = super()._interrupt()
        if self._runs is not None:
            self._runs.interrupt()
        return cancelled
