"""Statistics from calibration text for the data-aware merge methods (``fisher``, ``regmean``).

For each model being merged, a local Hugging Face causal LM runs over calibration text (files, a
folder or a list of strings; the first ``tokens`` tokens, cut into chunks; deterministic) and
collects, saved as one safetensors file per model so that it can be reused:

* ``fisher``: the diagonal empirical Fisher of every parameter tensor, the mean over chunks of
  the squared gradient of the chunk's LM loss (keys: the parameter names);
* ``regmean``: for every ``nn.Linear``, the Gram matrix ``X^T X`` of its inputs summed over the
  tokens (keys: ``<module>.weight``; the token count in the file's metadata).

:func:`prepare` fills each model's ``statistics`` parameter of a configuration (computing the
files into a cache folder when needed, from ``parameters.calibration`` and ``parameters.tokens``);
:func:`merge` is :func:`prepare` followed by the engine's ``merge``. The methods read the files
through :class:`StatisticsStore`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from splice.models.merging.calibration import (
    DEFAULT_SEQ_LEN,
    DEFAULT_TOKENS,
    Calibration,
    load_causal_lm,
    load_texts,
    model_chunks,
    run_chunks,
)
from splice.models.merging.config import ConfigError, MergeConfig, parse_config
from splice.models.merging.registry import MergeMethod, TensorInputs

#: The methods that read statistics, and the kind of statistics each reads.
KINDS = {"fisher": "fisher", "regmean": "regmean"}
#: Bumped when the files' content changes (part of the cache key).
FORMAT_VERSION = "1"


def fisher_statistics(model: torch.nn.Module, chunks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher: the mean over chunks of the squared gradient of the LM loss."""
    device = next(model.parameters()).device
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    fisher = {n: torch.zeros_like(p, dtype=torch.float32) for n, p in params.items()}
    for row in chunks:
        ids = row.unsqueeze(0).to(device)  # (1, seq)
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        for name, p in params.items():
            if p.grad is not None:
                fisher[name].add_(p.grad.float().square())
    model.zero_grad(set_to_none=True)
    return {n: f.div_(len(chunks)).cpu() for n, f in fisher.items()}


def gram_statistics(
    model: torch.nn.Module, chunks: torch.Tensor
) -> tuple[dict[str, torch.Tensor], int]:
    """``X^T X`` of every ``nn.Linear``'s inputs (summed over tokens), keyed ``<module>.weight``,
    and the number of tokens."""
    device = next(model.parameters()).device
    grams: dict[str, torch.Tensor] = {}
    hooks = []

    def hook_for(key: str, features: int):
        grams[key] = torch.zeros(features, features, dtype=torch.float32, device=device)

        def hook(_module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            x = args[0].detach().reshape(-1, features).float()  # (tokens, in)
            grams[key].addmm_(x.T, x)  # (in, in)

        return hook

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            hooks.append(
                module.register_forward_pre_hook(hook_for(f"{name}.weight", module.in_features))
            )
    try:
        run_chunks(model, chunks)
    finally:
        for h in hooks:
            h.remove()
    return {k: g.cpu() for k, g in grams.items()}, int(chunks.numel())


def collect_statistics(
    model_dir: str | Path,
    calibration: Calibration,
    kind: str,
    out_file: str | Path | None = None,
    *,
    device: str = "cpu",
) -> dict[str, torch.Tensor]:
    """Run the model in ``model_dir`` over the calibration text and return (and, with
    ``out_file``, save as safetensors) its ``kind`` statistics (``fisher`` or ``regmean``)."""
    if kind not in ("fisher", "regmean"):
        raise ValueError(f"statistics kind {kind!r}: expected fisher or regmean")
    model, tokenizer = load_causal_lm(model_dir, device)
    chunks = model_chunks(model, tokenizer, calibration)
    torch.manual_seed(0)
    if kind == "fisher":
        stats, count = fisher_statistics(model, chunks), int(chunks.numel())
    else:
        stats, count = gram_statistics(model, chunks)
    if out_file is not None:
        from safetensors.torch import save_file

        out = Path(out_file)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        meta = {"kind": kind, "count": str(count), "version": FORMAT_VERSION}
        save_file({k: v.contiguous() for k, v in stats.items()}, str(tmp), metadata=meta)
        os.replace(tmp, out)
    return stats


class StatisticsStore:
    """Lazily opened statistics files, by path: one tensor at a time, and each file's count."""

    def __init__(self) -> None:
        self._files: dict[str, Any] = {}

    def _open(self, path: str) -> Any:
        if path not in self._files:
            from safetensors import safe_open

            if not Path(path).is_file():
                raise ValueError(f"statistics file {path} does not exist")
            self._files[path] = safe_open(path, framework="pt")
        return self._files[path]

    def get(self, path: str, name: str) -> torch.Tensor | None:
        """The statistics of tensor ``name`` in ``path`` (None when it has none)."""
        handle = self._open(path)
        return handle.get_tensor(name) if name in handle.keys() else None  # noqa: SIM118

    def count(self, path: str) -> int:
        """The number of calibration tokens behind ``path`` (1 when not recorded)."""
        meta = self._open(path).metadata() or {}
        return max(1, int(meta.get("count", 1)))

    def kind(self, path: str) -> str | None:
        """``fisher`` or ``regmean`` (from the file's metadata)."""
        return (self._open(path).metadata() or {}).get("kind")


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/splice/merging-statistics`` (``~/.cache`` by default)."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "splice" / "merging-statistics"


def _model_fingerprint(model_dir: Path) -> dict[str, Any]:
    files = sorted(p for p in model_dir.iterdir() if p.suffix in (".safetensors", ".bin", ".json"))
    return {
        "path": str(model_dir.resolve()),
        "files": [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files],
    }


def prepare(
    config: str | Path | Mapping[str, Any] | MergeConfig,
    *,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    seq_len: int = DEFAULT_SEQ_LEN,
) -> MergeConfig:
    """A copy of the configuration whose models all have a ``statistics`` file (absolute
    paths): given ones are kept; the others are computed (or found in ``cache_dir``) from the
    top-level ``parameters.calibration`` (a file or folder) and ``parameters.tokens``."""
    cfg = copy.deepcopy(parse_config(config))
    kind = KINDS.get(cfg.merge_method)
    if kind is None:
        return cfg
    if cfg.models is None:
        raise ConfigError(f"slices: merge_method {cfg.merge_method} supports models: only")
    calib: Calibration | None = None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    for i, entry in enumerate(cfg.models):
        given = entry.parameters.get("statistics")
        if isinstance(given, str) and given:
            entry.parameters["statistics"] = str(cfg.resolve_path(given).resolve())
            continue
        if calib is None:
            source = cfg.parameters.get("calibration")
            if not isinstance(source, str):
                raise ConfigError(
                    f"parameters.calibration: merge_method {cfg.merge_method} needs calibration "
                    f"text (a file or folder) or models[{i}].parameters.statistics"
                )
            tokens = cfg.parameters.get("tokens", DEFAULT_TOKENS)
            if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 2:
                raise ConfigError("parameters.tokens: expected an integer of at least 2")
            try:
                texts = load_texts(cfg.resolve_path(source))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"parameters.calibration: {exc}") from None
            calib = Calibration(texts, tokens, seq_len)
        model_dir = cfg.resolve_path(entry.model)
        key = json.dumps(
            [FORMAT_VERSION, kind, _model_fingerprint(model_dir), calib.digest()], sort_keys=True
        )
        out = cache / f"{kind}-{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"
        if not out.exists():
            collect_statistics(model_dir, calib, kind, out, device=device)
        entry.parameters["statistics"] = str(out.resolve())
    return cfg


def merge(
    config: str | Path | Mapping[str, Any] | MergeConfig,
    out_dir: str | Path,
    *,
    cache_dir: str | Path | None = None,
    statistics_device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """:func:`prepare` the statistics, then run the engine's ``merge`` (same keywords)."""
    from splice.models.merging.engine import merge as engine_merge

    cfg = prepare(config, cache_dir=cache_dir, device=statistics_device)
    return engine_merge(cfg, out_dir, **kwargs)


class DataAwareMethod(MergeMethod):
    """Base of the methods that read per-model statistics files (``statistics`` parameter)."""

    model_params: ClassVar[Mapping[str, Any]] = {"weight": 1.0, "statistics": ""}
    requires_base = False

    def __init__(self) -> None:
        self.store = StatisticsStore()
        self._warned = False

    def statistics(self, inputs: TensorInputs) -> list[torch.Tensor] | None:
        """Every model's statistics of this tensor, on the tensors' device; None when a model
        has none for it (the caller averages). A model without any file is an error when
        ``calibration`` is set (the configuration was not :func:`prepare`-d), else a warning."""
        paths = [p.get("statistics") for p in inputs.model_params]
        if not all(isinstance(p, str) and p for p in paths):
            if inputs.params.get("calibration"):
                raise ValueError(
                    f"{self.name}: models without statistics; run the configuration with "
                    "splice.models.merging.data_aware.merge (it computes them from "
                    "parameters.calibration)"
                )
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f"{self.name}: no statistics for some model; averaging instead", stacklevel=2
                )
            return None
        found = [self.store.get(str(p), inputs.name) for p in paths]
        if any(f is None for f in found):
            return None
        device = inputs.tensors[0].device
        return [f.to(device) for f in found]  # type: ignore[union-attr]
