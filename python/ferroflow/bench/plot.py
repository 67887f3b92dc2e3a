"""`--plot FILE.png`: per-task cost against N on log-log axes, one line per system, a
panel per workload measured at several sizes. matplotlib is optional
(`pip install 'ferroflow[plot]'`), so it is imported only here."""

# matplotlib is an optional peer, not installed where the package is type-checked: its
# imports do not resolve, and what they give is unknown to pyright.
# pyright: reportMissingImports=false, reportUnknownMemberType=false
# pyright: reportUnknownVariableType=false, reportUnknownArgumentType=false

from __future__ import annotations

import importlib

from .results import OK, Cell

MISSING = (
    "ferroflow bench: error: --plot needs matplotlib, which cannot be imported here: "
    "pip install matplotlib (or, from a checkout, pip install '.[plot]')"
)


def available() -> bool:
    """Whether matplotlib imports: asked before anything is measured, so that a run of
    minutes does not end without its plot."""
    try:
        importlib.import_module("matplotlib")  # imported, not just found, as `write` will
    except ImportError:
        return False
    return True


def _measured(cells: list[Cell]) -> list[Cell]:
    return [c for c in cells if c.status == OK and c.us_per_task is not None]


def plotted_workloads(cells: list[Cell]) -> list[str]:
    """The workloads that get a panel: every one with a cost measured at more than one
    size (by any system), in the order measured."""
    measured = _measured(cells)
    return [
        w for w in dict.fromkeys(c.workload for c in measured) if len({c.size for c in measured if c.workload == w}) > 1
    ]


def write(cells: list[Cell], path: str) -> str:
    """Writes the plot; returns what was done, in a sentence for the user."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt

    measured = _measured(cells)
    workloads = plotted_workloads(cells)
    if not workloads:
        return f"--plot: no workload was measured at several sizes; {path} not written"
    figure, axes = plt.subplots(1, len(workloads), figsize=(6 * len(workloads), 4.5), squeeze=False)
    for ax, workload in zip(axes[0], workloads, strict=True):
        mine = [c for c in measured if c.workload == workload]
        for system in dict.fromkeys(c.system for c in mine):
            points = sorted((c.size, c.us_per_task) for c in mine if c.system == system)
            ax.loglog(*zip(*points, strict=True), marker="o", label=system)
        ax.set_title(workload)
        ax.set_xlabel("N")
        ax.set_ylabel("µs per task run")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return f"plot written to {path}"
