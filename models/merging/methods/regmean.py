"""``regmean``: regression mean of linear layers (Jin et al. 2023, "Dataless knowledge fusion").

For an ``nn.Linear`` weight ``W_i`` (out, in), which computes ``x W_i^T``, the merged weight
minimises ``sum_i w_i ||X_i W^T - X_i W_i^T||^2``: ``W^T = (sum_i w_i G_i)^-1 sum_i w_i G_i W_i^T``
with ``G_i = X_i^T X_i`` (in, in), here each divided by its token count and its off-diagonal
entries scaled by ``alpha``. Every other tensor is averaged with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.data_aware import DataAwareMethod
from splice.models.merging.methods.linear import linear
from splice.models.merging.registry import TensorInputs, check_same_shapes, register, weights_of


def regmean(
    tensors: Sequence[torch.Tensor],
    grams: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    alpha: float = 0.9,
) -> torch.Tensor:
    """The RegMean merge of linear weights ``tensors`` (each (out, in)) from their input Gram
    matrices ``grams`` (each (in, in)); solved in float64, returned in float32."""
    if not tensors or len(grams) != len(tensors):
        raise ValueError(f"regmean: {len(tensors)} tensors but {len(grams)} Gram matrices")
    check_same_shapes(tensors, "regmean: tensors")
    if tensors[0].ndim != 2:
        raise ValueError(
            f"regmean: expected linear weights (out, in), got {list(tensors[0].shape)}"
        )
    features = tensors[0].shape[1]
    if any(tuple(g.shape) != (features, features) for g in grams):
        raise ValueError(f"regmean: Gram matrices must be ({features}, {features})")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"regmean: alpha must lie in [0, 1], got {alpha}")
    weights = [1.0] * len(tensors) if weights is None else list(weights)
    lhs = torch.zeros(features, features, dtype=torch.float64, device=tensors[0].device)
    rhs = torch.zeros(features, tensors[0].shape[0], dtype=torch.float64, device=lhs.device)
    for w_i, g, weight in zip(tensors, grams, weights, strict=True):
        g = g.double()
        g = alpha * g + (1.0 - alpha) * torch.diag(torch.diagonal(g))  # off-diagonals * alpha
        lhs.add_(g, alpha=float(weight))
        rhs.addmm_(g, w_i.double().T, alpha=float(weight))  # (in, in) @ (in, out)
    try:
        solution = torch.linalg.solve(lhs, rhs)  # W^T: (in, out)
    except RuntimeError:  # singular (inputs never seen): the least-norm solution
        solution = torch.linalg.lstsq(lhs.cpu(), rhs.cpu(), driver="gelsd").solution.to(lhs.device)
    return solution.T.float().contiguous()  # (out, in)


@register
class RegMean(DataAwareMethod):
    """Regression mean of linear layers from their inputs' Gram matrices; the rest averaged."""

    name = "regmean"
    global_params = {"calibration": None, "tokens": 4096, "alpha": 0.9}

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        weights = weights_of(inputs)
        grams = self.statistics(inputs)
        if grams is None or inputs.tensors[0].ndim != 2:
            return linear(inputs.tensors, weights, inplace=inputs.owned)
        counts = [self.store.count(str(p["statistics"])) for p in inputs.model_params]
        grams = [g / c for g, c in zip(grams, counts, strict=True)]  # mean over tokens
        return regmean(inputs.tensors, grams, weights, float(inputs.params["alpha"]))
