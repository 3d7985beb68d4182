"""Splice's merging engine: model weights and LoRA adapters (streamed, mergekit-compatible),
and KV caches.

* :func:`merge` runs a mergekit YAML configuration (path, text or dict) into a model folder.
* :func:`merge_adapters` merges PEFT LoRA adapters in the space of their weight deltas.
* The per-tensor functions (:func:`linear`, :func:`ties`, :func:`slerp`, ...) work on plain
  tensors; :data:`REGISTRY` / :func:`get_method` give the method classes by name.
* :mod:`splice.models.merging.cache` compresses a language model's KV cache (numpy only).

The weight methods import torch, so the names above load on first use (PEP 562): importing
:mod:`splice.models.merging.cache` (serving does) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splice.models.merging.adapters import AdapterReport, merge_adapters
    from splice.models.merging.config import ConfigError, MergeConfig, parse_config
    from splice.models.merging.data_aware import collect_statistics
    from splice.models.merging.engine import MergeReport, merge
    from splice.models.merging.methods.arcee_fusion import arcee_fusion
    from splice.models.merging.methods.breadcrumbs import breadcrumbs
    from splice.models.merging.methods.dare import dare
    from splice.models.merging.methods.della import della
    from splice.models.merging.methods.fisher import fisher_merge
    from splice.models.merging.methods.karcher import karcher_mean
    from splice.models.merging.methods.linear import linear
    from splice.models.merging.methods.model_stock import model_stock
    from splice.models.merging.methods.multislerp import multislerp
    from splice.models.merging.methods.nearswap import nearswap
    from splice.models.merging.methods.nuslerp import nuslerp
    from splice.models.merging.methods.passthrough import passthrough
    from splice.models.merging.methods.r_tsvm import r_tsvm
    from splice.models.merging.methods.ram import ram
    from splice.models.merging.methods.regmean import regmean
    from splice.models.merging.methods.sce import sce
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

#: Each public name and the module that defines it.
_HOMES = {
    "AdapterReport": "adapters",
    "merge_adapters": "adapters",
    "ConfigError": "config",
    "MergeConfig": "config",
    "parse_config": "config",
    "collect_statistics": "data_aware",
    "fisher_merge": "methods.fisher",
    "regmean": "methods.regmean",
    "MergeReport": "engine",
    "merge": "engine",
    "arcee_fusion": "methods.arcee_fusion",
    "karcher_mean": "methods.karcher",
    "multislerp": "methods.multislerp",
    "nearswap": "methods.nearswap",
    "r_tsvm": "methods.r_tsvm",
    "ram": "methods.ram",
    "sce": "methods.sce",
    "breadcrumbs": "methods.breadcrumbs",
    "dare": "methods.dare",
    "della": "methods.della",
    "linear": "methods.linear",
    "model_stock": "methods.model_stock",
    "nuslerp": "methods.nuslerp",
    "passthrough": "methods.passthrough",
    "slerp": "methods.slerp",
    "task_arithmetic": "methods.task_arithmetic",
    "ties": "methods.ties",
    "tsv": "methods.tsv",
    "REGISTRY": "registry",
    "MergeMethod": "registry",
    "TensorInputs": "registry",
    "get_method": "registry",
    "method_names": "registry",
    "register": "registry",
}

__all__ = [
    "REGISTRY",
    "AdapterReport",
    "ConfigError",
    "MergeConfig",
    "MergeMethod",
    "MergeReport",
    "TensorInputs",
    "arcee_fusion",
    "collect_statistics",
    "fisher_merge",
    "karcher_mean",
    "multislerp",
    "nearswap",
    "r_tsvm",
    "ram",
    "regmean",
    "sce",
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


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if home == "registry":  # the eager package registered every built-in method on import
        importlib.import_module(f"{__name__}.methods")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
