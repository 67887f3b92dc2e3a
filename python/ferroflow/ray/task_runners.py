"""`RayTaskRunner`: task runs on Ray (prefect-ray's runner, same arguments).

`from prefect_ray.task_runners import RayTaskRunner` becomes
`from ferroflow.ray.task_runners import RayTaskRunner`. Importing this module does not
import Ray: a runner imports it when it starts.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ferroflow._bridge import ClaimedRun, RunnerEngine
from ferroflow._core import PrefectConcurrentFuture
from ferroflow._task_runners import TaskRunner
from ferroflow.context import FlowRunContext

if TYPE_CHECKING:
    from ferroflow._worker_runs import FlowRunIdentity
    from ferroflow.ray._runs import RayRuns

__all__ = ["RayTaskRunner"]

#: Addresses that name no running cluster: the runner starts (or finds) a local Ray when
#: its first run is handed over, not when the flow starts.
LOCAL_ADDRESSES = (None, "", "auto", "local")



class RayTaskRunner(TaskRunner[PrefectConcurrentFuture[Any]]):
    """Runs tasks on Ray.

    By default a local Ray instance starts when the flow run hands over its first run
    (`ray.init(**init_kwargs)`: Ray connects to a cluster `RAY_ADDRESS` names, else
    starts one) and shuts down with the flow run. `address=` connects to a running
    cluster when the flow run starts (`"ray://host:port"` for Ray Client, `"host:port"`
    for its GCS); an address that cannot be reached fails the flow run at once, naming
    it. A Ray this process was already connected to is used as it is, and left running.
    `init_kwargs` go to `ray.init` (`namespace` is `"prefect"` unless given).
    `ferroflow.ray.context.remote_options(...)` gives Ray options to the runs submitted
    in its block.

    The engine schedules every run in the flow's process (dependencies, states, retries,
    hooks, futures); each run's function executes on a Ray worker, and its value stays
    there: a run on the same cluster receives it as an ObjectRef, and it comes to the
    flow's process only when asked for (`.result()`, states, the flow's return value).
    """

    _executes_elsewhere = True

    def __init__(self, address: str | None = None, init_kwargs: dict[str, Any] | None = None) -> None:
        self.address = address
        self.init_kwargs: dict[str, Any] = dict(init_kwargs or {})
        self.init_kwargs.setdefault("namespace", "prefect")
        super().__init__()

    _RUNNING_STATE: tuple[str, ...] = (
        *TaskRunner._RUNNING_STATE,
        "_runs",
        "_runs_lock",
        "_connected",
        "_flow_run",
    )

    def _init_running_state(self) -> None:
        super()._init_running_state()
        self._runs: RayRuns | None = None
        self._runs_lock = threading.Lock()
        #: Whether this runner holds the process's Ray connection (released when it stops).
        self._connected = False
        self._flow_run: FlowRunIdentity | None = None

    @property
    def _worker_count(self) -> int:
        return 1  # one engine thread hands runs over; Ray's workers execute them

    def duplicate(self) -> RayTaskRunner:
        return type(self)(address=self.address, init_kwargs=self.init_kwargs)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RayTaskRunner):
            return False
        return self.address == other.address and self.init_kwargs == other.init_kwargs

    def __hash__(self) -> int:
        return hash((type(self), self.address))

    def __repr__(self) -> str:
        return f"RayTaskRunner(address={self.address!r}, init_kwargs={self.init_kwargs!r})"

    # -- life -------------------------------------------------------------------------------

    def _start(self, context: FlowRunContext | None) -> RunnerEngine:
        self._flow_run = (
            None
            if context is None
            else (context.flow.name, context.flow_run.id, context.flow_run.name, bool(context.log_prints))
        )
        if self.address not in LOCAL_ADDRESSES:
            self._connect()  # a cluster that cannot be reached fails the flow run now
        return super()._start(context)

    def _connect(self) -> None:
        from ferroflow.ray._session import acquire

        self._connected = acquire(self.address, self.init_kwargs, self.logger, local=self.address in LOCAL_ADDRESSES)

    def _execute(self, runs: list[ClaimedRun]) -> None:
        """Every claimed run goes to Ray (a local Ray starts with the first)."""
        ray_runs = self._runs or self._start_runs()
        ray_runs.submit(runs)

    def _start_runs(self) -> RayRuns:
        with self._runs_lock:
            if self._runs is None:
                if not self._started:
                    raise RuntimeError("the Ray task runner has been shut down and executes no more runs")
                from ferroflow.ray._runs import RayRuns

                if not self._connected:
                    self._connect()
                self._runs = RayRuns(self._flow_run)
            return self._runs

    def _stop(self) -> None:
        """Waits for every run (as on threads), then lets go of Ray (shut down by the
        last runner that used a connection a runner made)."""
        try:
            super()._stop()
        finally:
            with self._runs_lock:
                self._runs = None
                connected, self._connected = self._connected, False
            if connected:
                from ferroflow.ray._session import release

                release()

    def _interrupt(self) -> int:
        cancelled = super()._interrupt()
        if self._runs is not None:
            self._runs.interrupt()
        return cancelled
