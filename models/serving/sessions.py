"""onnxruntime sessions for serving: which providers, and the options every served model uses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: onnxruntime threads per session.
INTRA_OP_THREADS = 2


def providers() -> list[str]:
    """CUDA when this onnxruntime build has it, then CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in wanted if p in available] or ["CPUExecutionProvider"]


def open_session(path: str | Path) -> Any:
    """An ``onnxruntime.InferenceSession`` of the graph at ``path``."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = INTRA_OP_THREADS
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # idle workers sleep instead of spinning: on a busy machine the spinning worker took the CPU
    # from the main thread (session creation and the first run took about twice as long, 60-90
    # ms more per driver process); the outputs are identical
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # "extended" loads in ~45 ms; "all" adds layout passes that cost ~30 ms more per load (the
    # driver loads the model once per file) for no measurable gain at the classifier's size
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(str(path), opts, providers=providers())
