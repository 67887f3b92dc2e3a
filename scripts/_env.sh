# Sourced by the scripts: a project virtualenv with ferroflow built in release mode.
# Idempotent: a second run reuses the venv and rebuilds only what changed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$root/.venv"
echo "ferroflow: setting up .venv and building the Rust extension in release mode (the first run takes about a minute)..." >&2
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
# shellcheck disable=SC1091
source "$venv/bin/activate"
python -m pip install --quiet --upgrade pip
# No "$@" here: this file is sourced, so "$@" would be the caller's arguments (main.sh's
# size, test.sh's pytest options), not packages.
python -m pip install --quiet "maturin>=1.9.4,<2"
# The extension is built by maturin's PEP 517 backend, which uses the release profile;
# the Python sources stay editable.
(cd "$root" && python -m pip install --quiet --no-build-isolation -e ".[test]")
