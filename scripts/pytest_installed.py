"""Run pytest against the *installed* ferroflow (the wheel in this interpreter's
site-packages), never the source tree under python/.

Run as a script (``.venvs/py3.X/bin/python scripts/pytest_installed.py tests ...``):
sys.path[0] is then this directory, which holds no ``ferroflow`` (``python -m pytest``
would put the current directory first). A plugin checks, before the tests and again at
the end, that ``ferroflow`` and ``ferroflow._core`` were imported from site-packages,
and shows where in the report header; any other location is a usage error.
"""

from __future__ import annotations

import os
import sys
import sysconfig

import pytest


def _site_dirs() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    return tuple(dict.fromkeys(os.path.realpath(paths[key]) + os.sep for key in ("purelib", "platlib")))


def _where() -> str:
    import ferroflow
    import ferroflow._core

    sites = _site_dirs()
    for module in (ferroflow, ferroflow._core):
        location = os.path.realpath(module.__file__ or "?")
        if not location.startswith(sites):
            raise pytest.UsageError(
                f"{module.__name__} was imported from {location}, not from this interpreter's "
                f"site-packages ({', '.join(sites)}): the tests must run against the installed wheel"
            )
    return os.path.dirname(os.path.realpath(ferroflow.__file__ or "?"))


class InstalledFerroflow:
    def pytest_configure(self, config: pytest.Config) -> None:
        self.location = _where()

    def pytest_report_header(self, config: pytest.Config) -> str:
        import ferroflow

        return f"ferroflow {ferroflow.__version__} (installed wheel): {self.location}"

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        # The tests did not swap it for another copy along the way.
        location = _where()
        if location != self.location:
            raise pytest.UsageError(f"ferroflow moved during the session: {self.location} -> {location}")


if __name__ == "__main__":
    sys.exit(pytest.main(sys.argv[1:], plugins=[InstalledFerroflow()]))
