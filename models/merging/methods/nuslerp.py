"""``nuslerp``: SLERP of two models (or of their task vectors) with per-model weights, over the
whole tensor or row- or column-wise."""

from __future__ import annotations

import torch
from splice.models.merging.registry import MergeMethod, TensorInputs, register, weights_of

EPS = 1e-8


def nuslerp_vectors(t: float, v0: torch.Tensor, v1: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """SLERP along the last dim of float tensors: ``(sin((1-t)θ) v0 + sin(tθ) v1) / sin θ``, with
    θ the angle between the normalized vectors; vectors with ``|sin θ| < eps`` are lerped."""
    n0 = torch.linalg.vector_norm(v0, dim=-1, keepdim=True).clamp_min(eps)
    n1 = torch.linalg.vector_norm(v1, dim=-1, keepdim=True).clamp_min(eps)
    cos = ((v0 / n0) * (v1 / n1)).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.acos(cos)
    sin = torch.sin(theta)
    colinear = sin.abs() < eps
    safe = torch.where(colinear, torch.ones_like(sin), sin)
    spherical = (torch.sin((1 - t) * theta) * v0 + torch.sin(t * theta) * v1) / safe
    linear = (1 - t) * v0 + t * v1
    return torch.where(colinear, linear, spherical)


def nuslerp(
    tensors: list[torch.Tensor],
    weights: list[float],
    base: torch.Tensor | None = None,
    *,
    flatten: bool = True,
    row_wise: bool = False,
) -> torch.Tensor:
    """NuSLERP of two tensors with ``t = w1 / (w0 + w1)`` (float32); with ``base``, of the task
    vectors, added back to the base. ``flatten=False`` interpolates the vectors along the last
    dimension separately, or (``row_wise``, as mergekit's flag behaves) along the first."""
    if len(tensors) != 2 or len(weights) != 2:
        raise ValueError("nuslerp needs exactly two models (besides the base)")
    total = float(weights[0]) + float(weights[1])
    if abs(total) < 1e-12:
        raise ValueError("nuslerp: the two weights sum to zero")
    t = float(weights[1]) / total
    v0, v1 = tensors[0].float(), tensors[1].float()
    if base is not None:
        v0, v1 = v0 - base.float(), v1 - base.float()
    shape = v0.shape
    if flatten or v0.dim() < 2:
        result = nuslerp_vectors(t, v0.reshape(-1), v1.reshape(-1))
    elif row_wise:
        result = nuslerp_vectors(t, v0.transpose(0, -1), v1.transpose(0, -1)).transpose(0, -1)
    else:
        result = nuslerp_vectors(t, v0, v1)
    result = result.reshape(shape)
    if base is not None:
        result = base.float() + result
    return result


@register
class NuSlerp(MergeMethod):
    """SLERP of two models or task vectors with per-model weights."""

    name = "nuslerp"
    model_params = {"weight": 1.0}
    global_params = {"nuslerp_flatten": True, "nuslerp_row_wise": False}
    requires_base = None
    min_models = 2
    max_models = 2
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        return nuslerp(
            inputs.tensors,
            weights_of(inputs),
            inputs.base,
            flatten=bool(inputs.params["nuslerp_flatten"]),
            row_wise=bool(inputs.params["nuslerp_row_wise"]),
        )
