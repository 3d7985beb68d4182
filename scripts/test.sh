#!/usr/bin/env bash
# Set up, then run the linter and the whole test suite (real git, real data from ../shared).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
ruff check .
ruff format --check .
python -m pytest -n 2 -q "$@"
