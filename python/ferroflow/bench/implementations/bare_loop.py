"""Each workload as plain Python, with no scheduler: the floor the systems approach."""

from __future__ import annotations

from contextlib import nullcontext

from ..workloads import crunch, inc, total


class BareLoop:
    @staticmethod
    def trivial_map(n: int) -> list[int]:
        return [inc(x) for x in range(n)]

    @staticmethod
    def two_stage_map(n: int) -> list[int]:
        return [inc(y) for y in [inc(x) for x in range(n)]]

    @staticmethod
    def chain(n: int) -> int:
        x = 0
        for _ in range(n):
            x = inc(x)
        return x

    @staticmethod
    def fan_in(n: int) -> int:
        return total([inc(x) for x in range(n)])

    @staticmethod
    def cpu_map(n: int) -> list[int]:
        return [crunch(x) for x in range(n)]

    # A submit loop and a flow of one direct task call are, without a scheduler, calls.
    submit_loop = trivial_map
    many_flows = trivial_map


def session(workers: int | None) -> nullcontext[type[BareLoop]]:
    return nullcontext(BareLoop)
