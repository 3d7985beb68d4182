"""The ``splice`` console script: the click group :data:`splice.cli.main`, with a lighter start
and end for ``splice driver``, which git starts once per conflicting file."""

from __future__ import annotations

import os
import sys


def main() -> None:
    """Run ``splice`` with ``sys.argv``."""
    driver = sys.argv[1:2] == ["driver"]
    if driver:
        # numpy (loaded by onnxruntime) starts OpenBLAS threads the driver never uses: about
        # 50 ms of start-up on a busy machine; onnxruntime has its own thread pool
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    from splice.cli import main as cli

    try:
        cli()
    except SystemExit as done:
        code = done.code
        if driver and (code is None or isinstance(code, int)):
            # the result file is written and closed: skip the interpreter's teardown (freeing
            # onnxruntime, numpy and every module one by one, about 30 ms on a busy machine)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code or 0)
        raise
