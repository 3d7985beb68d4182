#!/usr/bin/env bash
# Set up, then merge two conflicting branches of a fresh git repository with Splice's driver.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
splice demo "$@"
