#!/usr/bin/env bash
# The main job, in four parts. Sets everything up first.
#   1. examples/huge_map.py: a flow that maps a trivial task over N items (default 10^6),
#      timed in this process.
#   2. The same map in `ferroflow bench` at N, against the bare loop and
#      concurrent.futures' ThreadPoolExecutor().map: each run in a fresh interpreter,
#      medians of 3 rounds. Its row is where the README's 10^6 figures come from (time,
#      × bare, bytes per task, and × ferroflow for ThreadPoolExecutor).
#   3. `ferroflow bench --quick`: the standard workloads at their smaller sizes, side by
#      side with concurrent.futures and any other peer installed (about half a minute).
#   4. scripts/process_pool_speedup.py: a CPU-bound map of 2,000 tasks of about 2 ms on
#      ProcessPoolTaskRunner, and its speedup over the plain loop (fresh and warm workers).
# Usage: bash scripts/main.sh [N]   (N: a whole number of items, at least 1)
usage() {
  echo "usage: bash scripts/main.sh [N]   (N: a whole number of items, at least 1; default 1000000), got '$1'" >&2
  exit 2
}
n=${1:-1000000}
case $n in
  '' | *[!0-9]*) usage "$n" ;;
esac
n=$((10#$n))
[ "$n" -ge 1 ] || usage "$1"
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
python "$root/examples/huge_map.py" "$n"
python -m ferroflow bench --only trivial_map --sizes "$n" --peers concurrent.futures --import-repeats 0
python -m ferroflow bench --quick
python "$root/scripts/process_pool_speedup.py"
