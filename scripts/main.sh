#!/usr/bin/env bash
# The main job: a flow that maps a task over 10^6 items, timed; then `ferroflow bench
# --quick`, the standard workloads side by side with concurrent.futures and any other
# peer installed (about half a minute). Sets everything up first.
# Usage: bash scripts/main.sh [N]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
python "$root/examples/huge_map.py" "${1:-1000000}"
python -m ferroflow bench --quick
