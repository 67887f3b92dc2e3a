#!/usr/bin/env bash
# The documentation site: installs the `docs` extra into the development .venv, then
# builds the site with `mkdocs build --strict`, so a broken link or anchor, a page left
# out of the nav, an API reference entry that does not resolve, or a warning Griffe
# gives about a docstring fails it. The site goes to target/site (ignored by git); to
# read it, `.venv/bin/mkdocs serve` serves it at http://127.0.0.1:8000.
# Sets everything up first and is safe to run again.
#
# Usage: bash scripts/check_docs.sh [MKDOCS_BUILD_ARGS...]
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
cd "$root"

# The docs extra (pip skips what is already there). The package stays the editable
# release build _env.sh just made: nothing is rebuilt unless the sources changed.
python -m pip install --quiet --no-build-isolation -e ".[docs]"

# mkdocs-material prints a banner about its end of life and MkDocs 2 on every build;
# it is news, not a problem with these pages.
export NO_MKDOCS_2_WARNING=1
exec python -m mkdocs build --strict --site-dir "$root/target/site" "$@"
