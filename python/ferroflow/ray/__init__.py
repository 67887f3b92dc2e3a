"""Ray for ferroflow (prefect-ray's `prefect_ray`): `RayTaskRunner` runs a flow's tasks
on Ray; `ferroflow.ray.context.remote_options` gives them Ray options. Importing this
package does not import Ray (`pip install "ferroflow[ray]"` brings it)."""

from ferroflow.ray.task_runners import RayTaskRunner

__all__ = ["RayTaskRunner"]
