#!/usr/bin/env bash
# Set up, then run the linters, the layer contracts and the whole test suite (real git, real data
# from ../shared), slow tests included. Neovim and Chromium are installed when possible
# (scripts/test_tools.sh); without them their two tests skip, with a note saying so.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/test_tools.sh
. .venv/bin/activate
ruff check .
ruff format --check .
bash scripts/check_layers.sh
python -m pytest -n 2 -q -m "slow or not slow" "$@"
