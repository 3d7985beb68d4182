"""``sce``: Select, Calculate, Erase (FuseLLM's SCE merge, arXiv 2408.07990).

Select: with ``select_topk < 1`` only the entries whose task vectors vary most across the models
are kept (the top ``int(select_topk * nonzero)`` of the per-entry variance; the rest are zeroed
in every task vector). Calculate: each model's weight is the mean square of its (selected) task
vector, normalized to sum to 1. Erase: TIES sign election drops the entries disagreeing with
the elected sign; the merged task vector is the weighted mean of the rest. No per-model weights.
Computed in the inputs' dtype.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.generalized import sign_consensus
from splice.models.merging.methods.aligned import aligned
from splice.models.merging.registry import MergeMethod, TensorInputs, register


def variance_mask(task_vectors: torch.Tensor, fraction: float) -> torch.Tensor:
    """0/1 mask (shape of one task vector) of the top ``fraction`` of per-entry variances.

    ``task_vectors``: [models, *shape]; the count is ``int(fraction * nonzero variances)``.
    """
    dtype = task_vectors.dtype
    if fraction <= 0:
        return torch.zeros_like(task_vectors[0])
    if fraction >= 1:
        return torch.ones_like(task_vectors[0])
    var = torch.var(task_vectors, dim=0, unbiased=False)
    k = int(torch.count_nonzero(var) * fraction)
    mask = torch.zeros_like(var, dtype=dtype)
    if k > 0:
        top = torch.topk(var.abs().view(-1), k=k, largest=True).indices
        mask.view(-1)[top] = 1
    return mask


def sce_weights(task_vectors: torch.Tensor) -> torch.Tensor:
    """Per-model weights: mean square of each task vector over their sum (equal if all ~0)."""
    energy = task_vectors.square().reshape(task_vectors.shape[0], -1).mean(dim=1)
    total = float(energy.sum().item())
    if abs(total) < 1e-6:
        return torch.ones_like(energy) / energy.shape[0]
    return energy / total


def sce(
    base: torch.Tensor, tensors: Sequence[torch.Tensor], *, select_topk: float = 1.0
) -> torch.Tensor:
    """SCE merge of ``tensors`` onto ``base`` (see the module docstring)."""
    xs, b = aligned(tensors, base)
    assert b is not None
    if not xs:
        return b
    tvs = torch.stack([x - b for x in xs], dim=0)  # [models, *shape]
    if select_topk < 1:
        tvs = tvs * variance_mask(tvs, select_topk).unsqueeze(0)
    keep = sign_consensus(tvs)
    w = sce_weights(tvs).view((-1,) + (1,) * (tvs.dim() - 1))
    kept = w * keep
    merged = (tvs * kept).sum(dim=0) / kept.sum(dim=0).clamp(min=1e-6)
    return b + merged


@register
class Sce(MergeMethod):
    """Variance-selected task vectors, energy weights and sign-elected mean (SCE)."""

    name = "sce"
    global_params = {"select_topk": 1.0, "int8_mask": False}
    requires_base = True
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError("sce needs a base model")
        topk = float(inputs.params["select_topk"])
        if not 0.0 <= topk <= 1.0:
            raise ValueError(f"sce: select_topk must be in [0, 1], got {topk}")
        return sce(inputs.base, inputs.tensors, select_topk=topk)
