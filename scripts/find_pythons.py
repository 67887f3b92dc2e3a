"""List the CPythons from 3.10 to 3.13 on this machine that the test command runs on.

Looks in PATH and in ~/.pyenv/versions/*/bin (and $PYENV_ROOT), asks each candidate
what it is, and keeps one interpreter per minor version (the first found: PATH before
pyenv). Skipped: virtualenvs (their base interpreter is found directly), free-threaded
builds (the abi3 wheel cannot load there), interpreters without venv/ensurepip, and
pyenv shims that resolve to no installed version.

stdout: one line per chosen interpreter, "3.X<TAB>/path/to/python3.X", oldest first.
stderr: what was found and why anything was skipped.
Usage: python scripts/find_pythons.py [3.X ...]   (restricts to those versions)
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys

VERSIONS = ("3.10", "3.11", "3.12", "3.13")

PROBE = r"""
import os, platform, sys, sysconfig
try:
    import ensurepip, venv
    has_venv = True
except ImportError:
    has_venv = False
print(platform.python_implementation(), "%d.%d" % sys.version_info[:2], platform.python_version(),
      int(sys.prefix != sys.base_prefix), int(bool(sysconfig.get_config_var("Py_GIL_DISABLED"))),
      int(has_venv), os.path.realpath(sys.executable), sep="\t")
"""


def candidates() -> list[str]:
    found: list[str] = []
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        for version in VERSIONS:
            found.append(os.path.join(directory or ".", f"python{version}"))
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    for bindir in sorted(glob.glob(os.path.join(pyenv_root, "versions", "*", "bin"))):
        for version in VERSIONS:
            found.append(os.path.join(bindir, f"python{version}"))
    return [path for path in dict.fromkeys(found) if os.path.isfile(path) and os.access(path, os.X_OK)]


def main(argv: list[str]) -> int:
    wanted = tuple(argv) or VERSIONS
    unknown = [v for v in wanted if v not in VERSIONS]
    if unknown:
        print(
            f"find_pythons: not a supported version: {' '.join(unknown)} (supported: {' '.join(VERSIONS)})",
            file=sys.stderr,
        )
        return 2
    chosen: dict[str, str] = {}
    seen: set[str] = set()
    for path in candidates():
        try:
            probe = subprocess.run([path, "-c", PROBE], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode != 0:
            continue  # e.g. a pyenv shim for a version that is not selected
        impl, minor, full, in_venv, free_threaded, has_venv, real = probe.stdout.strip().split("\t")
        if in_venv == "1" or real in seen:
            continue
        seen.add(real)
        if impl != "CPython" or minor not in VERSIONS:
            continue
        if free_threaded == "1":
            note = "skipped: free-threaded build (no abi3)"
        elif has_venv != "1":
            note = "skipped: no venv/ensurepip module"
        elif minor not in wanted:
            note = "skipped: not asked for"
        elif minor in chosen:
            note = f"skipped: {minor} already tested with {chosen[minor]}"
        else:
            chosen[minor] = real
            note = "tested"
        print(f"  found CPython {full:<8} {real}  ({note})", file=sys.stderr)
    missing = [v for v in wanted if v not in chosen]
    if missing:
        print(f"  not found: CPython {', '.join(missing)}", file=sys.stderr)
    for minor in VERSIONS:
        if minor in chosen:
            print(f"{minor}\t{chosen[minor]}")
    return 0 if chosen else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
