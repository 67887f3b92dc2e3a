"""One measurement, in a fresh interpreter started by `measure`: a system runs a
workload once at size N.

The system's start-up happens first, outside the timing; the timing covers the
workload end to end (building the work and collecting its results). The peak RSS is
read from /proc's VmHWM right after the run (before the answer is checked, since the
expected list takes memory too): `getrusage`'s `ru_maxrss` would survive exec and report
the parent's peak. A sampler thread records the most live OS threads seen meanwhile.
The result is one JSON line after `RESULT_MARKER`, which tells it apart from whatever
the system itself prints.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any, cast, final

from .systems import SYSTEMS
from .workloads import WORKLOADS

RESULT_MARKER = "ferroflow-bench-result "

_STATUS = "/proc/self/status"


def _status_field(name: str) -> int | None:
    """An integer field of /proc/self/status (None where there is no /proc)."""
    try:
        with open(_STATUS) as status:
            for line in status:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int | None:
    kib = _status_field("VmHWM")
    return None if kib is None else kib * 1024


@final
class ThreadSampler:
    """Records the most live OS threads of this process (native ones included) while
    in its `with` block, sampling every 10 ms; it does not count itself."""

    INTERVAL = 0.01

    def __init__(self) -> None:
        self.max: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, name="thread-sampler", daemon=True)

    def _sample(self) -> None:
        count = _status_field("Threads")
        if count is not None:
            self.max = max(self.max or 0, count - 1)

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            self._sample()

    def __enter__(self) -> ThreadSampler:
        self._thread.start()
        self._sample()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._sample()
        self._stop.set()
        self._thread.join()


def wrong_result(got: Any, expected: Any) -> str | None:
    """What is wrong with `got`, in a few words; None when it is right."""
    if got == expected:
        return None
    if isinstance(got, list) and isinstance(expected, list):
        # The casts: isinstance leaves the items' type Unknown to pyright; they are any objects.
        got_items, expected_items = cast("list[object]", got), cast("list[object]", expected)
        if len(got_items) != len(expected_items):
            return f"wrong result: {len(got_items)} items instead of {len(expected_items)}"
        index = next(i for i, (g, e) in enumerate(zip(got_items, expected_items, strict=True)) if g != e)
        return f"wrong result: item {index} is {got_items[index]!r:.40}, expected {expected_items[index]!r:.40}"
    return f"wrong result: {got!r:.60}, expected {expected!r:.60}"


def measure(system_name: str, workload_name: str, size: int) -> dict[str, Any]:
    workload = WORKLOADS[workload_name]
    with SYSTEMS[system_name].open_session(workload.workers) as session:
        run = getattr(session, workload.name)
        with ThreadSampler() as threads:
            started = time.perf_counter()
            result = run(size)
            seconds = time.perf_counter() - started
        peak = peak_rss_bytes()
    return {
        "seconds": seconds,
        "peak_rss_bytes": peak,
        "max_threads": threads.max,
        "error": wrong_result(result, workload.expected(size)),
    }


def main(argv: list[str]) -> None:
    system_name, workload_name, size = argv
    outcome = measure(system_name, workload_name, int(size))
    print(RESULT_MARKER + json.dumps(outcome), flush=True)
