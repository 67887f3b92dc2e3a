#!/usr/bin/env bash
# All the tests: the engine's (cargo test) and the user-level ones (pytest), plus one
# smoke pass of the benchmarks. Sets everything up first.
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$root"
cargo test --workspace --release
python -m mypy.stubtest ferroflow._core   # the hand-written _core.pyi matches the binary
python -m pytest tests
python -m pytest benches --benchmark-disable -q
