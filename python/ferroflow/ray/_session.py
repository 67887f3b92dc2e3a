"""This process's connection to Ray, shared by every started `RayTaskRunner` in it.

Ray allows one connection per process (`ray.init`). The first runner that needs Ray
starts it (a local instance) or connects (`address=`), and the connection ends with
the last runner using it. A Ray the user (or Ray itself, in a worker) initialized is
used as it is and never shut down by a runner.

`ray.init` runs in a thread of its own that lives as long as the connection: Ray starts
a local instance's processes (its GCS server, raylet) with a parent-death signal, which
Linux sends when the *thread* that started them ends, so a runner's engine thread (or a
subflow's) must not be the one that starts them.
"""

from __future__ import annotations

import importlib
import logging
import socket
import threading
from typing import Any

#: Ray, as Any: its annotations are partial, and this module and `_runs` are where
#: ferroflow meets it.
ray: Any = importlib.import_module("ray")

#: How long a cluster at `address=` may take to accept a connection before the flow run
#: fails, naming the address (Ray itself retries for a minute or more).
CONNECT_TIMEOUT = 10.0



class _Connection:
    """The connection a runner started, held by a thread until the last user releases it."""

    def __init__(self, address: str | None, init_kwargs: dict[str, Any]) -> None:
        self._address = address
        self._init_kwargs = init_kwargs
        self._ready = threading.Event()
        self._release = threading.Event()
        self.error: BaseException | None = None
        self.context: Any = None
        self.users = 0
        self._thread = threading.Thread(target=self._hold, name="ferroflow-ray-connection", daemon=True)

    def open(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self.error is not None:
            self._thread.join()
            raise self.error

    def close(self) -> None:
        self._release.set()
        self._thread.join()

    def _hold(self) -> None:
        # Ray sets its SIGTERM handler only from the main thread, and warns from any other:
        # not a concern of the user's (a SIGTERM ends the process either way).
        worker_logger = logging.getLogger("ray._private.worker")
        worker_logger.addFilter(_not_the_sigterm_warning)
        try:
            # As prefect-ray: "auto" is not passed, so Ray finds a cluster or starts one.
            address = () if self._address in (None, "", "auto") else (self._address,)
            self.context = ray.init(*address, **self._init_kwargs)
        except BaseException as exc:
            self.error = exc
            self._ready.set()
            return
        finally:
            worker_logger.removeFilter(_not_the_sigterm_warning)
        self._ready.set()
        self._release.wait()
        ray.shutdown()


def _not_the_sigterm_warning(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("SIGTERM handler is not set")


_lock = threading.Lock()
_connection: _Connection | None = None


def acquire(address: str | None, init_kwargs: dict[str, Any], logger: Any, *, local: bool) -> bool:
    """Makes sure this process is connected to Ray for a starting runner: the connection
    a runner made (shared), one made outside ferroflow (used as it is), else a new one to
    `address` (checked to be reachable first) or, when `local` (the address names no
    running cluster), a local instance. Returns whether the runner must `release()` it
    when it stops."""
    global _connection
    with _lock:
        if _connection is not None:
            logger.info("Local Ray instance is already initialized. Using existing local instance.")
            _connection.users += 1
            return True
        if ray.is_initialized():
            logger.info("Local Ray instance is already initialized. Using existing local instance.")
            return False
        if not local:
            logger.info(f"Connecting to an existing Ray instance at {address}")
            _check_reachable(address)
        else:
            logger.info("Creating a local Ray instance")
        connection = _Connection(address, init_kwargs)
        try:
            connection.open()
        except Exception as exc:
            if local:
                raise
            raise ConnectionError(f"RayTaskRunner could not connect to the Ray cluster at {address!r}: {exc}") from exc
        connection.users = 1
        _connection = connection
    living = [node for node in ray.nodes() if node.get("alive")]
    logger.info(f"Using Ray cluster with {len(living)} nodes.")
    dashboard_url = getattr(connection.context, "dashboard_url", None)
    if dashboard_url:
        logger.info(f"The Ray UI is available at {dashboard_url}")
    return True


def release() -> None:
    """A runner that acquired the connection stopped: the last one shuts Ray down."""
    global _connection
    with _lock:
        connection = _connection
        if connection is None:
            return
        connection.users -= 1
        if connection.users > 0:
            return
        _connection = None
    connection.close()


def _check_reachable(address: Any) -> None:
    """Fails at once, naming `address`, if nothing accepts a connection there (`host:port`
    or `ray://host:port`; an address of another form is left to Ray)."""
    host, _, port = str(address).removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        with socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"RayTaskRunner could not connect to the Ray cluster at {address!r} within {CONNECT_TIMEOUT} s: {exc}"
        ) from exc


def place() -> tuple[str, str]:
    """The identity of the cluster this process is connected to (its GCS address)."""
    return ("ray", str(ray.get_runtime_context().gcs_address))
