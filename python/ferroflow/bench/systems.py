"""Who runs the workloads: the bare loop, ferroflow and its peers, with their settings.

A system's code lives in `implementations/`, behind a session: a context manager
that does the system's one-time start-up (a Dask cluster, `ray.init`, Prefect's
temporary server) outside the timing, and yields an object with one method per
workload, taking N. Whether a peer is installed is read from package metadata, so the
parent process never imports a peer (Ray's or Prefect's import takes seconds).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

_NO_FLOWS = {"many_flows": "n/a (no flows)"}


@dataclass(frozen=True)
class System:
    name: str
    #: `module:function` in `implementations/`: function(workers) -> the session.
    session: str
    #: How it is configured, shown under the table.
    setup: str
    #: The package whose installed version is reported; None for the standard library.
    distribution: str | None = None
    #: What `import` loads, for the import-time measurement; None to skip it.
    module: str | None = None
    #: Workloads it has no idiomatic version of, with what the table says instead.
    not_applicable: dict[str, str] = field(default_factory=dict)

    def version(self) -> str | None:
        """The installed version; None when it is not installed."""
        if self.distribution is None:
            return f"Python {platform.python_version()}"
        try:
            return importlib.metadata.version(self.distribution)
        except importlib.metadata.PackageNotFoundError:
            return None

    def open_session(self, workers: int | None) -> AbstractContextManager[Any]:
        module, function = self.session.split(":")
        implementation = importlib.import_module(f"{__package__}.implementations.{module}")
        session: AbstractContextManager[Any] = getattr(implementation, function)(workers)
        return session


_CPUS = os.cpu_count() or 1

BARE_LOOP = System(
    "bare loop",
    "bare_loop:session",
    "[inc(x) for x in range(N)], or the workload's other plain-Python equivalent: the floor",
    module=None,
    not_applicable={"sleep_fanout": "n/a (the ideal time is the reference)"},
)
FERROFLOW = System(
    "ferroflow",
    "flow_api:ferroflow_session",
    "@flow/@task code as Prefect users write it, default ThreadPoolTaskRunner (cpu_map: ProcessPoolTaskRunner())",
    distribution="ferroflow",
    module="ferroflow",
)
PEERS = (
    System(
        "concurrent.futures",
        "thread_pool:session",
        f"ThreadPoolExecutor(), default max_workers (min(32, cpus + 4) = {min(32, _CPUS + 4)} here), one pool per run; "
        "cpu_map: ProcessPoolExecutor().map, default chunksize",
        module="concurrent.futures",
        not_applicable=_NO_FLOWS,
    ),
    System(
        "dask",
        "dask_client:session",
        "dask.distributed Client(LocalCluster(processes=False, n_workers=1, "
        f"threads_per_worker={_CPUS})), client.map/submit/gather; cpu_map: a LocalCluster of {_CPUS} "
        "single-threaded worker processes, started inside the timing",
        distribution="distributed",
        module="dask.distributed",
        not_applicable=_NO_FLOWS,
    ),
    System(
        "ray",
        "ray_remote:session",
        f"ray.init(num_cpus={_CPUS}), @ray.remote tasks and ray.get (its worker processes start before the "
        "timing); peak RSS is the driver's alone",
        distribution="ray",
        module="ray",
        not_applicable=_NO_FLOWS,
    ),
    System(
        "prefect",
        "flow_api:prefect_session",
        "the same flow code, `from prefect import ...`; its temporary API server is started by a warm-up flow, "
        "outside the timing",
        distribution="prefect",
        module="prefect",
        # Issue 9 measured Prefect's process pool at 269 s for this map's 2,000 tasks.
        not_applicable={"cpu_map": "n/a (Prefect's process pool: 269 s at 2,000 in issue 9)"},
    ),
)

SYSTEMS: dict[str, System] = {s.name: s for s in (BARE_LOOP, FERROFLOW, *PEERS)}
