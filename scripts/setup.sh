#!/usr/bin/env bash
# Create .venv (if missing) and install Splice with its development and training tools.
# PyTorch first, pinned to the local CPU build (any other spec downloads several GB).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
. .venv/bin/activate
quiet() { "$@" 2>&1 | { grep -v '^WARNING: Location' || true; }; }
quiet python -m pip install -q --upgrade pip
quiet python -m pip install -q torch==2.13.0
quiet python -m pip install -q -e '.[dev,train,merge]'
python -c "import splice.resolver.pipeline, tree_sitter_python, onnxruntime, tokenizers, transformers"
