"""``linear``: the weighted average of the models (model soups, Wortsman et al. 2022)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.registry import MergeMethod, TensorInputs, register, weights_of


def linear(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    normalize: bool = True,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """``sum(w_i * t_i)`` (divided by ``sum(w_i)`` when ``normalize``), computed in float32.

    ``inplace``: the tensors are the caller's to overwrite (the result may be the first one).
    """
    if not tensors:
        raise ValueError("linear needs at least one tensor")
    weights = [1.0] * len(tensors) if weights is None else list(weights)
    if len(weights) != len(tensors):
        raise ValueError(f"{len(tensors)} tensors but {len(weights)} weights")
    # A fused multiply-add chain in float32 (the accumulation order mergekit's results have).
    first = tensors[0]
    owned = inplace and first.dtype == torch.float32 and first.is_contiguous()
    if owned and any(t.data_ptr() == first.data_ptr() for t in tensors[1:]):
        owned = False
    result = first.mul_(float(weights[0])) if owned else first.float() * float(weights[0])
    for tensor, weight in zip(tensors[1:], weights[1:], strict=True):
        result.add_(tensor.float(), alpha=float(weight))
    if normalize:
        total = torch.tensor(weights, dtype=torch.float32).sum()
        if abs(float(total)) < 1e-8:
            raise ValueError("linear: the weights sum to zero, cannot normalize")
        result.div_(total.to(result.device))
    return result


@register
class Linear(MergeMethod):
    """Weighted average of the models' tensors (model soups)."""

    name = "linear"
    model_params = {"weight": 1.0}
    global_params = {"normalize": True}
    requires_base = None

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        return linear(
            inputs.tensors,
            weights_of(inputs),
            bool(inputs.params["normalize"]),
            inplace=inputs.owned,
        )
