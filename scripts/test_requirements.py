"""Print what the test venvs need besides ferroflow itself: the project's dependencies and
its `test` extra, one requirement a line, as pyproject.toml declares them.

scripts/test.sh installs these into each interpreter's venv in the background while the
lint, engine and wheel steps run, so that a fresh clone's pytest runs do not each start
with a minute of `pip install`.
Usage: python scripts/test_requirements.py
"""

from __future__ import annotations

import pathlib
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pytest and mypy, which the development venv holds, depend on tomli before 3.11
    import tomli as tomllib

project = tomllib.loads((pathlib.Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
print("\n".join([*project["dependencies"], *project["optional-dependencies"]["test"]]))
