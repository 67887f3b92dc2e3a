"""Checks of the wheel that scripts/test.sh builds: the one that would ship.

    python scripts/check_wheel.py audit WHEEL
        A Linux wheel: `auditwheel show` on it (auditwheel from PyPI, installed into the
        running interpreter's environment); fails unless the wheel is an abi3 wheel for
        CPython >= 3.10 that auditwheel finds consistent with manylinux2014
        (manylinux_2_17: any glibc >= 2.17) or, for a musllinux wheel, musllinux_1_2.

    python scripts/check_wheel.py fresh-venv DIST PYTHON [PYTHON ...]
        For each interpreter: a new venv in a temporary directory (deleted afterwards),
        DIST (a wheel, or the sdist, which pip then builds) installed there with plain
        pip (its dependencies from the index, as a user gets them), then, from that
        directory, the README's first ```python block (read from README.md now: the
        README stays the one copy; the block asserts its own result) and
        scripts/smoke_wheel.py (a sync and an async flow).

Used by scripts/test.sh on the wheel it builds, and by the CI workflows (ci.yml,
wheels.yml) on every wheel they build. Exit status 0 when every check passed.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
AUDITWHEEL = "auditwheel>=6.1,<7"  # `show`'s wording, parsed below, is 6.x's
# The oldest C library each kind of Linux wheel must accept: glibc 2.17 (manylinux2014),
# musl 1.2 (musllinux_1_2).
OLDEST = {"manylinux": (2, 17), "musllinux": (1, 2)}


def fail(message: str) -> int:
    print(f"check_wheel: {message}", file=sys.stderr)
    return 1


def dist_path(arg: str, sdist: bool = False) -> Path | None:
    path = Path(arg) if arg else None
    suffixes = (".whl", ".tar.gz") if sdist else (".whl",)
    if path is None or not path.is_file() or not path.name.endswith(suffixes):
        return None
    return path.resolve()


def policy(tag: str) -> tuple[str, tuple[int, int]] | None:
    """("manylinux", (2, 17)) for manylinux_2_17_x86_64 or manylinux2014_x86_64, and so on."""
    tag = re.sub(r"^manylinux2014_", "manylinux_2_17_", tag)
    found = re.fullmatch(r"(manylinux|musllinux)_(\d+)_(\d+)_\w+", tag)
    return (found.group(1), (int(found.group(2)), int(found.group(3)))) if found else None


def audit(wheel: Path) -> int:
    # Python tag and ABI tag from the name: {dist}-{version}-{python}-{abi}-{platforms}.whl
    parts = wheel.name[: -len(".whl")].split("-")
    python_tag, abi_tag, platform_tags = parts[-3], parts[-2], parts[-1].split(".")
    if (python_tag, abi_tag) != ("cp310", "abi3"):
        return fail(f"{wheel.name}: expected an abi3 wheel for cp310 and later, got {python_tag}-{abi_tag}")

    policies = [p for p in map(policy, platform_tags) if p]
    if not policies:
        return fail(f"{wheel.name}: not a manylinux or musllinux wheel")
    kind = policies[0][0]
    oldest = OLDEST[kind]
    wanted = f"{kind}_{oldest[0]}_{oldest[1]}"
    if not any(p == (kind, oldest) for p in policies):
        return fail(f"{wheel.name}: the file name has no {wanted} platform tag")

    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", AUDITWHEEL], check=True)
    shown = subprocess.run(
        [sys.executable, "-m", "auditwheel", "show", str(wheel)], capture_output=True, text=True, check=False
    )
    print(shown.stdout, end="")
    print(shown.stderr, end="", file=sys.stderr)
    if shown.returncode != 0:
        return fail(f"auditwheel show exited {shown.returncode}")
    # auditwheel wraps its text: the tag is one word, but the sentence around it may be split.
    text = " ".join(shown.stdout.split())
    found = re.search(r'is consistent with the following platform tag: "([^"]+)"', text)
    if not found:
        return fail("auditwheel show did not name a platform tag")
    tag = found.group(1)
    audited = policy(tag)
    if not audited or audited[0] != kind or audited[1] > oldest:
        return fail(f"{wheel.name} is only {tag} to auditwheel, not {wanted}: it needs a newer C library")
    size = wheel.stat().st_size
    print(f"ok: {wheel.name} ({size / 1024:.0f} KiB): auditwheel finds {tag}, {wanted}-compatible")
    return 0


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"^```python[ \t]*\n(.*?)^```[ \t]*$", readme, re.DOTALL | re.MULTILINE)
    if not block:
        raise SystemExit("check_wheel: README.md has no ```python block")
    return block.group(1)


def fresh_venv(dist: Path, python: str) -> int:
    example = readme_example()
    # ignore_cleanup_errors: a file Windows still holds must not fail a check that passed.
    with tempfile.TemporaryDirectory(prefix="ferroflow-wheel-", ignore_cleanup_errors=True) as tmp:
        where = Path(tmp)
        venv = where / "venv"
        bindir = venv / ("Scripts" if os.name == "nt" else "bin")
        # A full path: Windows appends no .exe to it.
        venv_python = str(bindir / ("python.exe" if os.name == "nt" else "python"))
        # A clean environment: nothing from the development venv or the source tree.
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env["PATH"] = str(bindir) + os.pathsep + env.get("PATH", "")

        def run(*command: str) -> None:
            print("+", " ".join(command), flush=True)
            subprocess.run(command, cwd=where, env=env, check=True)

        try:
            run(python, "-m", "venv", str(venv))
            run(venv_python, "-m", "pip", "install", "--quiet", str(dist))
            (where / "readme_example.py").write_text(example, encoding="utf-8")
            run(venv_python, "readme_example.py")
            print("ok: the README example ran and its assert held", flush=True)
            run(venv_python, str(ROOT / "scripts" / "smoke_wheel.py"))
        except subprocess.CalledProcessError as error:
            return fail(f"{' '.join(error.cmd)} exited {error.returncode}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "audit":
        wheel = dist_path(argv[1])
        return audit(wheel) if wheel else fail(f"not a wheel file: {argv[1]!r} (was one built?)")
    if len(argv) >= 3 and argv[0] == "fresh-venv":
        dist = dist_path(argv[1], sdist=True)
        if not dist:
            return fail(f"not a wheel or sdist file: {argv[1]!r} (was one built?)")
        status = 0
        for python in dict.fromkeys(argv[2:]):
            print(f"--- fresh venv with {python}", flush=True)
            status |= fresh_venv(dist, python)
        return status
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
