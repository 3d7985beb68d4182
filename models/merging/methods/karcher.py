"""``karcher``: the Karcher (Riemannian) mean of the models' tensors on the unit hypersphere.

Each tensor is split into its norm and direction; the directions' Karcher mean is found by
fixed-point iteration (log map, equal-weight average, exponential map; at most ``max_iter``
steps, stopping when the tangent step is below ``tol``) and scaled by the mean norm. Tensors of
norm ``<= tol`` take no part in the direction. Models weigh equally; a base model, if given,
is one more input (mergekit ignores its role). Computed in the inputs' dtype (norms in float32).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.methods.aligned import aligned
from splice.models.merging.registry import MergeMethod, TensorInputs, register


def karcher_mean(
    tensors: Sequence[torch.Tensor],
    alphas: Sequence[float] | None = None,
    *,
    max_iter: int = 10,
    tol: float = 1e-5,
) -> torch.Tensor:
    """The ``alphas``-weighted Karcher mean of ``tensors`` (equal weights by default)."""
    xs, _ = aligned(tensors)
    if not xs:
        raise ValueError("karcher needs at least one tensor")
    if len(xs) == 1:
        return xs[0]
    alphas = [1.0 / len(xs)] * len(xs) if alphas is None else [float(a) for a in alphas]
    if max_iter < 0 or tol < 0:
        raise ValueError("karcher: max_iter and tol must be >= 0")
    wide = torch.float64 if xs[0].dtype == torch.float64 else torch.float32
    norms = [torch.linalg.vector_norm(x.to(wide)) for x in xs]
    kept = [i for i, n in enumerate(norms) if n.item() > tol]
    if not kept:
        return torch.zeros_like(xs[0])
    total = sum(alphas[i] for i in kept)
    share = [alphas[i] / total for i in kept]
    dirs = [(xs[i] / norms[i]).to(xs[i].dtype) for i in kept]

    mean = torch.zeros_like(dirs[0])
    for a, d in zip(share, dirs, strict=True):
        mean += a * d
    length = torch.linalg.vector_norm(mean.to(wide))
    mean = dirs[0].clone() if length.item() < tol else (mean / length).to(mean.dtype)
    for _ in range(max_iter):
        step = torch.zeros_like(mean)
        for a, d in zip(share, dirs, strict=True):
            cos = torch.clamp(torch.dot(mean.flatten(), d.flatten()), -1.0, 1.0)
            angle = torch.arccos(cos)
            if angle.item() < tol:
                continue
            step += a * (angle / torch.sin(angle)) * (d - cos * mean)  # log map
        size = torch.linalg.vector_norm(step.to(wide))
        if size.item() < tol:
            break
        mean = (torch.cos(size) * mean + torch.sin(size) * (step / size)).to(mean.dtype)
        renorm = torch.linalg.vector_norm(mean.to(wide))
        if renorm.item() > tol:
            mean = (mean / renorm).to(mean.dtype)
    scale = sum(a * n for a, n in zip(alphas, norms, strict=True))
    return scale * mean


@register
class Karcher(MergeMethod):
    """Karcher mean of the models' directions on the hypersphere, scaled by the mean norm."""

    name = "karcher"
    global_params = {"max_iter": 10, "tol": 1e-5}
    requires_base = None
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        tensors = [*inputs.tensors, *([inputs.base] if inputs.base is not None else [])]
        return karcher_mean(
            tensors, max_iter=int(inputs.params["max_iter"]), tol=float(inputs.params["tol"])
        )
