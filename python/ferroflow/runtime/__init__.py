"""`prefect.runtime`, in-process: attributes of the current flow run and task run, read
when asked (`from ferroflow.runtime import flow_run, task_run`, then `task_run.name`).

Outside a run every attribute has Prefect's empty value (None, `[]`, `{}`, 0), and each
can be mocked for tests through an environment variable, as in Prefect:
`FERROFLOW__RUNTIME__TASK_RUN__NAME` (or Prefect's `PREFECT__RUNTIME__TASK_RUN__NAME`).
Nothing here is loaded by `import ferroflow`.
"""

from ferroflow.runtime import deployment, flow_run, task_run

__all__ = ["deployment", "flow_run", "task_run"]
