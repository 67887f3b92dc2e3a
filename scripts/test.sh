#!/usr/bin/env bash
# All the tests. Sets everything up first and is safe to run again.
#
#   lint        ruff check; mypy and basedpyright, both strict, on the package and on
#               tests/typing (what a user's checker infers from the API, and the errors it
#               must report); cargo fmt --check; cargo clippy (workspace lints, pedantic,
#               -D warnings)
#   docs        the documentation site, mkdocs build --strict (scripts/check_docs.sh)
#   engine      cargo test, in the debug profile: the state machine's checks are live, and
#               it builds in a third of the time fat LTO takes
#   stubtest    the hand-written _core.pyi matches the binary
#   wheel       one abi3 wheel, release profile (fat LTO): it serves every interpreter. It is
#               the wheel that would ship: linked by zig (ziglang from PyPI) against glibc
#               2.17's symbols, tagged manylinux2014; `auditwheel show` must agree
#               (scripts/check_wheel.py), and it is installed with plain pip in a fresh venv
#               (a temporary directory) on the oldest and newest CPython found, where the
#               README's first example and scripts/smoke_wheel.py (a sync and an async flow) run
#   pytest      the whole suite on EVERY CPython 3.10-3.13 found (PATH, ~/.pyenv/versions),
#               each in its own venv cached under .venvs/py3.X with the wheel installed,
#               against that installed package (scripts/pytest_installed.py checks it);
#               two interpreters at a time (FERROFLOW_TEST_PARALLEL=1: one at a time)
#   benchmarks  one smoke pass (--benchmark-disable), in the development .venv
#
# Every step runs even when an earlier one failed; the summary at the end lists each
# step with its time, and the exit status is 1 if any failed.
#
# Usage: bash scripts/test.sh [PYTEST_ARGS...]   (passed to every pytest run)
# FERROFLOW_TEST_PYTHONS="3.10 3.13" restricts the interpreters (for development; the
# default, and what CI runs, is all of them).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$root"

dev_python="$venv/bin/python"
steps=()
failed=0

banner() {
  printf '\n\033[1m==================== %s ====================\033[0m\n' "$*"
}

# step NAME COMMAND...: run it, record pass/fail and seconds; never stops the script.
step() {
  local name=$1 start=$SECONDS status=0
  shift
  banner "$name"
  "$@" || status=$?
  local took=$((SECONDS - start))
  if [ "$status" -eq 0 ]; then
    steps+=("$(printf 'ok    %4ds  %s' "$took" "$name")")
  else
    steps+=("$(printf 'FAIL  %4ds  %s  (exit %d)' "$took" "$name" "$status")")
    failed=1
  fi
}

# --- lint ------------------------------------------------------------------------------
step "ruff check" "$dev_python" -m ruff check .
step "mypy (strict: the package, tests/typing)" "$dev_python" -m mypy
# --project: this pyproject.toml's settings, never a pyrightconfig.json found above the tree.
step "basedpyright (strict: the package, tests/typing)" "$venv/bin/basedpyright" --project "$root"
step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy" cargo clippy --workspace --all-targets -- -D warnings

# --- engine and stubs --------------------------------------------------------------------
step "cargo test" cargo test --workspace
step "stubtest ferroflow._core" "$dev_python" -m mypy.stubtest ferroflow._core

# --- the wheel ---------------------------------------------------------------------------
wheel_dir="$root/target/test-wheel"
build_wheel() {
  rm -rf "$wheel_dir"
  # maturin runs `python3 -m ziglang` when no `zig` is on PATH: python3 is the dev venv's
  # (_env.sh activated it), so ziglang goes there.
  "$dev_python" -m pip install --quiet "ziglang>=0.17" || return
  local zig_version
  zig_version=$(python3 -m ziglang version) || { echo "python3 -m ziglang does not run" >&2; return 1; }
  echo "zig $zig_version (python3 -m ziglang, $(command -v python3))"
  "$venv/bin/maturin" build --release --zig --compatibility manylinux2014 \
    --interpreter "$dev_python" --out "$wheel_dir"
}
step "maturin build --release --zig (manylinux2014 abi3 wheel)" build_wheel
wheel=$(ls "$wheel_dir"/ferroflow-*.whl 2>/dev/null | head -n 1 || true)
step "auditwheel show: manylinux2014" "$dev_python" "$root/scripts/check_wheel.py" audit "$wheel"

# --- pytest on every interpreter --------------------------------------------------------
banner "interpreters"
# shellcheck disable=SC2086
pythons=$("$dev_python" "$root/scripts/find_pythons.py" ${FERROFLOW_TEST_PYTHONS:-}) || true
if [ -z "$pythons" ]; then
  steps+=("FAIL     0s  no CPython 3.10-3.13 found")
  failed=1
fi

mkdir -p "$root/.venvs"
# The cache of test venvs is not part of the repository.
[ -f "$root/.venvs/.gitignore" ] || printf '*\n' >"$root/.venvs/.gitignore"

# make_venv MINOR PYTHON: .venvs/pyMINOR for that interpreter, with the wheel and the test
# extra installed.
make_venv() {
  local minor=$1 python=$2 dir="$root/.venvs/py$1"
  # Reused when it works, has pip (an interrupted creation may not) and was made from
  # this interpreter; made again otherwise.
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -m pip --version >/dev/null 2>&1 \
    && [ "$("$dir/bin/python" -c 'import sys, os; print(os.path.realpath(sys._base_executable))' 2>/dev/null)" = "$(readlink -f "$python")" ]; then
    :
  else
    rm -rf "$dir"
    "$python" -m venv "$dir" || return
    "$dir/bin/python" -m pip install --quiet --upgrade pip || return
  fi
  [ -n "$wheel" ] || { echo "no wheel was built" >&2; return 1; }
  # The dependencies and the test extra (pip skips what is already there), then this
  # build of the wheel itself: its version does not change between builds.
  "$dir/bin/python" -m pip install --quiet "${wheel}[test]" || return
  "$dir/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel"
}

run_pytest() {
  local minor=$1 python=$2 dir="$root/.venvs/py$1"
  shift 2  # the rest: the arguments given to test.sh, for pytest
  make_venv "$minor" "$python" || return
  "$dir/bin/python" "$root/scripts/pytest_installed.py" tests "$@"
}

# The wheel as a user installs it: plain pip, a new venv, nothing cached; the oldest and
# the newest interpreter found.
if [ -n "$pythons" ]; then
  oldest_newest=$(sed -n '1p;$p' <<<"$pythons" | cut -f 2)
  # shellcheck disable=SC2086
  step "fresh venv: README example and smoke flows" \
    "$dev_python" "$root/scripts/check_wheel.py" fresh-venv "$wheel" $oldest_newest
fi

# The interpreters' runs go two at a time (FERROFLOW_TEST_PARALLEL): a run waits on
# subprocesses, clusters and sleeps most of its time (it keeps about 40% of one core
# busy), so two share the machine's two cores. (All four at once took as long: their Ray
# tests take turns, and the load slows every run.) Each run's output goes to a log, printed
# whole when the run ends; tests that need a machine to themselves take a lock
# (tests/ray_cluster.py: one Ray at a time).
logs="$root/target/test-logs"
rm -rf "$logs" && mkdir -p "$logs"
parallel=${FERROFLOW_TEST_PARALLEL:-2}
runs=()
# finish_run MINOR PID: waits for a run started by start_run, prints its log, records it.
finish_run() {
  local minor=$1 pid=$2 status=0
  wait "$pid" || status=$?
  banner "pytest on CPython $minor"
  cat "$logs/py$minor.log" || true
  local took
  took=$(cat "$logs/py$minor.seconds" 2>/dev/null || echo 0)
  if [ "$status" -eq 0 ]; then
    steps+=("$(printf 'ok    %4ds  %s' "$took" "pytest on CPython $minor")")
  else
    steps+=("$(printf 'FAIL  %4ds  %s  (exit %d)' "$took" "pytest on CPython $minor" "$status")")
    failed=1
  fi
}
while IFS=$'\t' read -r -u 3 minor python; do
  [ -n "$minor" ] || continue
  if [ "${#runs[@]}" -ge "$parallel" ]; then
    finish_run ${runs[0]}
    runs=("${runs[@]:1}")
  fi
  echo "pytest on CPython $minor ($python): started, its output follows when it ends"
  (
    start=$SECONDS
    status=0
    run_pytest "$minor" "$python" "$@" >"$logs/py$minor.log" 2>&1 </dev/null || status=$?
    echo $((SECONDS - start)) >"$logs/py$minor.seconds"
    exit "$status"
  ) &
  runs+=("$minor $!")
done 3<<<"$pythons"  # fd 3: the tests must not read the list from stdin
for run in "${runs[@]}"; do
  # shellcheck disable=SC2086
  finish_run $run
done

# --- docs --------------------------------------------------------------------------------
step "docs: mkdocs build --strict" bash "$root/scripts/check_docs.sh"

# --- benchmarks --------------------------------------------------------------------------
step "benchmarks (smoke)" "$dev_python" -m pytest benches --benchmark-disable -q

banner "summary"
printf '%s\n' "${steps[@]}"
printf 'total %ds\n' "$SECONDS"
exit "$failed"
