"""``fisher``: diagonal Fisher-weighted averaging (Matena & Raffel 2022).

``theta = sum_i w_i (F_i + eps) theta_i / sum_i w_i (F_i + eps)`` entry by entry, with ``F_i``
model ``i``'s diagonal Fisher from calibration text (see :mod:`~splice.models.merging.data_aware`);
tensors without a Fisher are averaged with the weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.data_aware import DataAwareMethod
from splice.models.merging.methods.linear import linear
from splice.models.merging.registry import TensorInputs, check_same_shapes, register, weights_of

#: Added to every Fisher entry: entries no model is sensitive to get the weighted average.
DEFAULT_EPSILON = 1e-12


def fisher_merge(
    tensors: Sequence[torch.Tensor],
    fishers: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    epsilon: float = DEFAULT_EPSILON,
) -> torch.Tensor:
    """The Fisher-weighted average of ``tensors`` (float32; all of one shape)."""
    if not tensors or len(fishers) != len(tensors):
        raise ValueError(f"fisher: {len(tensors)} tensors but {len(fishers)} Fisher tensors")
    check_same_shapes([*tensors, *fishers], "fisher: tensors and Fisher tensors")
    weights = [1.0] * len(tensors) if weights is None else list(weights)
    num = torch.zeros(tensors[0].shape, dtype=torch.float32, device=tensors[0].device)
    den = torch.zeros_like(num)
    for t, f, w in zip(tensors, fishers, weights, strict=True):
        scale = (f.float().clamp_min(0) + epsilon) * float(w)  # same shape as t
        num.addcmul_(scale, t.float())
        den.add_(scale)
    if bool((den == 0).any()):
        raise ValueError("fisher: the weights sum to zero on some entries")
    return num.div_(den)


@register
class Fisher(DataAwareMethod):
    """Diagonal Fisher-weighted average of the models (statistics from calibration text)."""

    name = "fisher"
    global_params = {"calibration": None, "tokens": 4096, "epsilon": DEFAULT_EPSILON}

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        weights = weights_of(inputs)
        fishers = self.statistics(inputs)
        if fishers is None:
            return linear(inputs.tensors, weights, inplace=inputs.owned)
        return fisher_merge(inputs.tensors, fishers, weights, float(inputs.params["epsilon"]))
