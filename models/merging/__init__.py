"""Splice's weight-merging engine: model weights and LoRA adapters, streamed, mergekit-compatible.

* :func:`merge` runs a mergekit YAML configuration (path, text or dict) into a model folder.
* :func:`merge_adapters` merges PEFT LoRA adapters in the space of their weight deltas.
* The per-tensor functions (:func:`linear`, :func:`ties`, :func:`slerp`, ...) work on plain
  tensors; :data:`REGISTRY` / :func:`get_method` give the method classes by name.
"""

from splice.models.merging.adapters import AdapterReport, merge_adapters
from splice.models.merging.config import ConfigError, MergeConfig, parse_config
from splice.models.merging.engine import MergeReport, merge
from splice.models.merging.methods.breadcrumbs import breadcrumbs
from splice.models.merging.methods.dare import dare
from splice.models.merging.methods.della import della
from splice.models.merging.methods.linear import linear
from splice.models.merging.methods.model_stock import model_stock
from splice.models.merging.methods.nuslerp import nuslerp
from splice.models.merging.methods.passthrough import passthrough
from splice.models.merging.methods.slerp import slerp
from splice.models.merging.methods.task_arithmetic import task_arithmetic
from splice.models.merging.methods.ties import ties
from splice.models.merging.methods.tsv import tsv
from splice.models.merging.registry import (
    REGISTRY,
    MergeMethod,
    TensorInputs,
    get_method,
    method_names,
    register,
)

__all__ = [
    "REGISTRY",
    "AdapterReport",
    "ConfigError",
    "MergeConfig",
    "MergeMethod",
    "MergeReport",
    "TensorInputs",
    "breadcrumbs",
    "dare",
    "della",
    "get_method",
    "linear",
    "merge",
    "merge_adapters",
    "method_names",
    "model_stock",
    "nuslerp",
    "parse_config",
    "passthrough",
    "register",
    "slerp",
    "task_arithmetic",
    "ties",
    "tsv",
]
