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
# The order makes use of both cores: the test venvs get their dependencies in the
# background from the start (scripts/test_requirements.py lists them); the wheel is built
# first, and the pytest runs, which mostly wait, go on in the background while lint,
# engine, stubtest, the fresh venvs and the docs run (niced, so the tests' timings do not
# suffer); their output is printed after those, then the benchmarks run (their Ray and
# Dask must not meet the tests').
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
# While the pytest runs go on in the background, steps run at a lower priority
# ($niceness): the tests' timings must not suffer from a build beside them.
niceness=
step() {
  local name=$1 start=$SECONDS status=0
  shift
  banner "$name"
  ${niceness:+nice -n "$niceness"} "$@" || status=$?
  steps+=("$(step_line "$name" $((SECONDS - start)) "$status")")
  [ "$status" -eq 0 ] || failed=1
}

# step_line NAME SECONDS STATUS: the summary's line for a step.
step_line() {
  if [ "$3" -eq 0 ]; then
    printf 'ok    %4ds  %s' "$2" "$1"
  else
    printf 'FAIL  %4ds  %s  (exit %d)' "$2" "$1" "$3"
  fi
}

# --- the interpreters, and their test venvs prepared in the background ------------------
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
logs="$root/target/test-logs"
rm -rf "$logs" && mkdir -p "$logs"
requirements="$logs/requirements.txt"
"$dev_python" "$root/scripts/test_requirements.py" >"$requirements"

# prepare_venv MINOR PYTHON: .venvs/pyMINOR for that interpreter, with ferroflow's
# dependencies and its test extra (not ferroflow itself). Holds the venv's lock while it
# works, so a run that needs the venv waits for a preparation under way.
prepare_venv() {
  local minor=$1 python=$2 dir="$root/.venvs/py$1"
  (
    flock 9
    # Reused when it works, has pip (an interrupted creation may not) and was made from
    # this interpreter; made again otherwise.
    if [ -x "$dir/bin/python" ] && "$dir/bin/python" -m pip --version >/dev/null 2>&1 \
      && [ "$("$dir/bin/python" -c 'import sys, os; print(os.path.realpath(sys._base_executable))' 2>/dev/null)" = "$(readlink -f "$python")" ]; then
      :
    else
      rm -rf "$dir"
      "$python" -m venv "$dir" || exit
      "$dir/bin/python" -m pip install --quiet --upgrade pip || exit
    fi
    # pip skips what is already there.
    "$dir/bin/python" -m pip install --quiet --requirement "$requirements"
  ) 9>"$root/.venvs/py$minor.lock"
}

# A fresh clone spends about a minute per interpreter installing Dask, Ray and the rest:
# done now, while the wheel is built, in as many streams as pytest runs at once, in the
# order the runs start (so the first runs find their venvs ready). A failure here is not
# fatal: each pytest run prepares its venv again, and reports what fails then.
prepare_stream() {  # prepare_stream K: the venvs of the runs K, K + parallel, ...
  local index=0 minor python
  while IFS=$'\t' read -r minor python; do
    [ -n "$minor" ] || continue
    if [ $((index % parallel)) -eq "$1" ]; then
      prepare_venv "$minor" "$python" || echo "preparing the venv of CPython $minor failed; its run will try again"
    fi
    index=$((index + 1))
  done <<<"$pythons"
}
parallel=${FERROFLOW_TEST_PARALLEL:-2}
if ! [[ $parallel =~ ^[1-9][0-9]*$ ]]; then
  echo "FERROFLOW_TEST_PARALLEL=$parallel: it must be a whole number of at least 1" >&2
  exit 2
fi
for ((stream = 0; stream < parallel; stream++)); do
  prepare_stream "$stream" >"$logs/prepare-venvs-$stream.log" 2>&1 </dev/null &
done

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
run_pytest() {
  local minor=$1 python=$2 dir="$root/.venvs/py$1"
  shift 2  # the rest: the arguments given to test.sh, for pytest
  prepare_venv "$minor" "$python" || return
  [ -n "$wheel" ] || { echo "no wheel was built" >&2; return 1; }
  # This build of the wheel: its version does not change between builds.
  "$dir/bin/python" -m pip install --quiet --force-reinstall --no-deps "$wheel" || return
  "$dir/bin/python" "$root/scripts/pytest_installed.py" tests "$@"
}

# The interpreters' runs go two at a time (FERROFLOW_TEST_PARALLEL), in the background
# from here on, while the steps below use the rest of the machine: a run waits on
# subprocesses, clusters and sleeps most of its time (it keeps about 40% of one core
# busy). (All four at once took as long: their Ray tests take turns, and the load slows
# every run.) The next run starts as soon as either ends. Each run's output goes to a
# log, printed whole, with its result, after the other steps; tests that need a machine
# to themselves take a lock (tests/ray_cluster.py: one Ray at a time).
# run_all_pytest PYTEST_ARGS...: every interpreter's run; each leaves py3.X.log and its
# summary line, py3.X.step.
run_all_pytest() {
  declare -A running=()  # the pids of the runs going on, as keys
  finish_any() {  # waits for whichever run ends first (its .step file says how it went)
    local pid
    wait -n -p pid "${!running[@]}" || true
    unset "running[$pid]"
  }
  while IFS=$'\t' read -r -u 3 minor python; do
    [ -n "$minor" ] || continue
    if [ "${#running[@]}" -ge "$parallel" ]; then
      finish_any
    fi
    (
      start=$SECONDS
      status=0
      run_pytest "$minor" "$python" "$@" >"$logs/py$minor.log" 2>&1 </dev/null || status=$?
      step_line "pytest on CPython $minor" $((SECONDS - start)) "$status" >"$logs/py$minor.step"
    ) &
    running[$!]=1
  done 3<<<"$pythons"  # fd 3: the tests must not read the list from stdin
  while [ "${#running[@]}" -gt 0 ]; do
    finish_any
  done
}
banner "pytest on every interpreter: started in the background, the output follows the other steps"
run_all_pytest "$@" </dev/null &
pytest_runs=$!
niceness=10

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

# The wheel as a user installs it: plain pip, a new venv, nothing cached; the oldest and
# the newest interpreter found.
if [ -n "$pythons" ]; then
  oldest_newest=$(sed -n '1p;$p' <<<"$pythons" | cut -f 2)
  # shellcheck disable=SC2086
  step "fresh venv: README example and smoke flows" \
    "$dev_python" "$root/scripts/check_wheel.py" fresh-venv "$wheel" $oldest_newest
fi

# --- docs --------------------------------------------------------------------------------
step "docs: mkdocs build --strict" bash "$root/scripts/check_docs.sh"

# --- the pytest runs' output ---------------------------------------------------------------
wait "$pytest_runs" || true
niceness=
while IFS=$'\t' read -r minor _; do
  [ -n "$minor" ] || continue
  banner "pytest on CPython $minor"
  cat "$logs/py$minor.log" 2>/dev/null || true
  line=$(cat "$logs/py$minor.step" 2>/dev/null || printf 'FAIL     0s  pytest on CPython %s  (it did not run)' "$minor")
  steps+=("$line")
  [[ $line == ok* ]] || failed=1
done <<<"$pythons"

# --- benchmarks --------------------------------------------------------------------------
# After the pytest runs: its Ray and Dask instances must not meet theirs.
step "benchmarks (smoke)" "$dev_python" -m pytest benches --benchmark-disable -q

banner "summary"
printf '%s\n' "${steps[@]}"
printf 'total %ds\n' "$SECONDS"
exit "$failed"
