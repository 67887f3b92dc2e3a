"""How the benchmarks time things: one call (`timed`), and two systems doing the same
work in alternating rounds (`interleaved`), so that a noisy machine weighs on both
alike and their ratio, not their absolute times, is what is read."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def timed(fn: Callable[..., Any], *args: Any) -> tuple[float, Any]:
    """(seconds, result) of `fn(*args)`."""
    started = time.perf_counter()
    result = fn(*args)
    return time.perf_counter() - started, result


def interleaved(
    benchmark: Any,
    ours: Callable[[int], Any],
    theirs: Callable[[int], Any],
    n: int,
    label: str,
    names: tuple[str, str],
    rounds: int = 5,
) -> float:
    """Runs `theirs(n)` and `ours(n)` alternately, `rounds` each after a warm-up of each
    (which also checks that both give the same result), prints the medians and their
    ratio, records them in the benchmark's extra info, and returns the ratio (ours over
    theirs: above 1, ours is slower)."""
    expected = theirs(n)
    assert ours(n) == expected
    ours_times: list[float] = []
    theirs_times: list[float] = []
    for _ in range(rounds):
        for fn, times in ((theirs, theirs_times), (ours, ours_times)):
            elapsed, result = timed(fn, n)
            assert result == expected
            times.append(elapsed)
    ratio = statistics.median(ours_times) / statistics.median(theirs_times)
    our_name, their_name = names
    print(
        f"\n{label}, n={n:,}: {our_name} median {statistics.median(ours_times):.3f} s, "
        f"{their_name} median {statistics.median(theirs_times):.3f} s, ratio {ratio:.2f}x "
        f"(rounds: ours {[round(t, 3) for t in ours_times]}, theirs {[round(t, 3) for t in theirs_times]})"
    )
    benchmark.extra_info.update(ratio=ratio, ours=ours_times, theirs=theirs_times)
    benchmark.pedantic(ours, args=(n,), rounds=1, iterations=1)
    return ratio
