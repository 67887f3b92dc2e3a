"""Matchers for the log lines of flow and task runs, shared by the example tests."""

from __future__ import annotations

import re

#: A flow run's first line; groups: `ts` (its time), `flow` (the flow's name).
FLOW_BEGIN = re.compile(
    r"^(?P<ts>\d\d:\d\d:\d\d\.\d{3}) \| INFO    \| Flow run '[^']+' - "
    r"Beginning flow run '[^']+' for flow '(?P<flow>[^']+)'$",
    re.MULTILINE,
)


def task_done(run_name: str) -> re.Pattern[str]:
    """The line of task run `run_name` finishing Completed."""
    return re.compile(
        r"^\d\d:\d\d:\d\d\.\d{3} \| INFO    \| Task run "
        + re.escape(repr(run_name))
        + r" - Finished in state Completed\(\)$",
        re.MULTILINE,
    )
