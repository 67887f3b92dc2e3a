"""Runs the sleeps of a test's subprocess on a faster clock: put on `PYTHONPATH` with
`FERROFLOW_TEST_TIME_SCALE` set (`run_example(time_scale=...)` does both), it multiplies
every `time.sleep` and `asyncio.sleep` by that factor in each Python process started so,
the worker processes a seed example's Dask cluster starts included, so that an example
that sleeps many seconds runs its code unchanged.

Only the module attributes are replaced: code that looks them up at call time
(`time.sleep(1)`, `await asyncio.sleep(1)`) is scaled, and `asyncio.sleep(0)` (a bare
yield to the loop) stays a bare yield.
"""

import os

_scale = os.environ.get("FERROFLOW_TEST_TIME_SCALE")
if _scale:
    import asyncio
    import time

    _factor = float(_scale)
    _real_sleep = time.sleep
    _real_async_sleep = asyncio.sleep

    def _scaled_sleep(seconds: float) -> None:
        _real_sleep(seconds * _factor)

    async def _scaled_async_sleep(delay: float, result: object = None) -> object:
        return await _real_async_sleep(delay * _factor, result)

    time.sleep = _scaled_sleep
    asyncio.sleep = _scaled_async_sleep  # type: ignore[assignment]
