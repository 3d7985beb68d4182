#!/usr/bin/env bash
# Build a separate venv for kvpress (it pins transformers < 5.3; the project's venv has 5.24).
#
#   scripts/kvpress_env.sh [VENV]        (default: runs/kvpress-venv, git-ignored)
#
# Order matters: torch 2.13.0 first (this machine has it as a local CPU wheel; any other spec
# downloads gigabytes), then kvpress 0.5.5 (brings transformers 5.2.0), then Splice itself with
# --no-deps so the kvpress side can import Splice's presses (models/merging/cache/press.py).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/runs/kvpress-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip install --quiet)
"${pip[@]}" --upgrade pip setuptools wheel
"${pip[@]}" "torch==2.13.0"
"${pip[@]}" "kvpress==0.5.5"
# Splice's own runtime needs on the kvpress side: numpy (already there) and the packages its
# modules import at the top (tokenizers comes with transformers).
"${pip[@]}" --no-deps --no-build-isolation -e "$root"
"$venv/bin/python" - <<'PY'
import kvpress, torch, transformers
from splice.models.merging.cache.press import CachePress
print(f"kvpress {kvpress.__version__ if hasattr(kvpress, '__version__') else '0.5.5'}",
      f"torch {torch.__version__}", f"transformers {transformers.__version__}",
      f"CachePress is a kvpress press: {issubclass(CachePress, kvpress.BasePress)}")
PY
