"""``multislerp``: barycentric interpolation of several models (or task vectors) on a hypersphere.

Each flattened tensor is normalized; the weighted mean of the unit vectors, renormalized, is the
tangent point; the unit vectors are projected onto its tangent plane, averaged with the weights
and mapped back with the exponential map; the result is scaled by the weighted mean of the norms.
With a base model the task vectors are interpolated and added to it. Computed in the inputs'
dtype, as mergekit 0.1.5 does.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.methods.aligned import aligned
from splice.models.merging.registry import MergeMethod, TensorInputs, register

EPS = 1e-8


def multislerp(
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    base: torch.Tensor | None = None,
    *,
    normalize_weights: bool = True,
    eps: float = EPS,
) -> torch.Tensor:
    """Multi-SLERP of ``tensors`` with ``weights`` (see the module docstring)."""
    if not tensors:
        raise ValueError("multislerp needs at least one model besides the base")
    if len(weights) != len(tensors):
        raise ValueError(f"multislerp: {len(tensors)} tensors but {len(weights)} weights")
    xs, b = aligned(tensors, base)
    if len(xs) == 1:
        return xs[0]
    shape = xs[0].shape
    points = torch.stack(xs, dim=0)  # [n, *shape]
    if b is not None:
        points = points - b
    flat = points.view(len(xs), -1)  # [n, numel]
    w = torch.tensor([float(x) for x in weights], dtype=flat.dtype, device=flat.device)
    if normalize_weights:
        w = w / w.sum()
    w_col = w.view(-1, 1)
    norms = torch.linalg.vector_norm(flat, dim=-1, keepdim=True)  # [n, 1]
    units = flat / (norms + eps)
    centre = (units * w_col).sum(dim=0)
    centre_norm = torch.linalg.vector_norm(centre)
    if centre_norm < eps:
        if len(xs) != 2:
            raise ValueError(
                "multislerp: the weighted mean of the normalized inputs is zero (antipodal "
                "inputs with balancing weights); change the weights"
            )
        mixed = (points[0] * w[0] + points[1] * w[1]).view(shape)
        return mixed + b if b is not None else mixed
    centre = centre / centre_norm
    along = (units * centre).sum(dim=-1, keepdim=True)
    tangent = ((units - along * centre) * w_col).sum(dim=0)
    length = torch.linalg.vector_norm(tangent) + eps
    on_sphere = centre * torch.cos(length) + tangent * (torch.sin(length) / length)
    scale = (norms.squeeze(-1) * w).sum()
    result = (on_sphere * scale).view(shape)
    return result + b if b is not None else result


@register
class MultiSlerp(MergeMethod):
    """Weighted spherical interpolation of any number of models or task vectors."""

    name = "multislerp"
    model_params = {"weight": None}
    global_params = {"normalize_weights": True, "eps": EPS}
    requires_base = None
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        weights = [p["weight"] for p in inputs.model_params]
        if any(w is None for w in weights):
            raise ValueError("multislerp: every model needs the parameter 'weight'")
        return multislerp(
            inputs.tensors,
            [float(w) for w in weights],
            inputs.base,
            normalize_weights=bool(inputs.params["normalize_weights"]),
            eps=float(inputs.params["eps"]),
        )
