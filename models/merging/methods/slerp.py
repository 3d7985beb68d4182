"""``slerp``: spherical interpolation between the base model and one other model."""

from __future__ import annotations

import math

import torch
from splice.models.merging import workspace
from splice.models.merging.registry import (
    MergeMethod,
    TensorInputs,
    base_and_other,
    register,
    required_param,
)

#: Above this |cos| the two tensors count as colinear and are interpolated linearly.
DOT_THRESHOLD = 0.9995
NORM_EPS = 1e-8


def lerp(t: float, v0: torch.Tensor, v1: torch.Tensor) -> torch.Tensor:
    """``(1 - t) * v0 + t * v1``."""
    return (1 - t) * v0 + t * v1


def slerp(
    t: float,
    v0: torch.Tensor,
    v1: torch.Tensor,
    dot_threshold: float = DOT_THRESHOLD,
    eps: float = NORM_EPS,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """Spherical interpolation of the flattened tensors (float32), ``t=0`` giving ``v0``.

    The angle comes from the normalized tensors (norms over the whole tensor); the result
    interpolates the unnormalized ones, falling back to :func:`lerp` when ``|cos| >
    dot_threshold``. Returns float32. ``inplace``: the inputs are the caller's to overwrite
    (the products are then formed in them; the values are those of the allocating version).
    """

    def work(v: torch.Tensor) -> torch.Tensor:
        if v.dtype != torch.float32:
            return v.float()
        return v if inplace and v.is_contiguous() else v.contiguous().clone()

    a, b = work(v0), work(v1)
    if a.data_ptr() == b.data_ptr():
        b = b.clone()
    na, nb = float(torch.linalg.vector_norm(a)), float(torch.linalg.vector_norm(b))
    ws = workspace.current()
    ua, ub = ws.like("slerp_a", a), ws.like("slerp_b", b)
    if na > eps:
        torch.div(a.view(-1), na, out=ua)
    else:
        ua.copy_(a.view(-1))
    if nb > eps:
        torch.div(b.view(-1), nb, out=ub)
    else:
        ub.copy_(b.view(-1))
    dot = float(ua.mul_(ub).sum())
    if abs(dot) > dot_threshold:
        s0, s1 = 1 - t, t
    else:
        theta = math.acos(max(-1.0, min(1.0, dot)))
        sin_theta = math.sin(theta)
        s0 = math.sin(theta - theta * t) / sin_theta
        s1 = math.sin(theta * t) / sin_theta
    return a.mul_(s0).add_(b.mul_(s1))


@register
class Slerp(MergeMethod):
    """Spherical interpolation from the base model (t=0) to the other model (t=1)."""

    name = "slerp"
    global_params = {"t": None}
    requires_base = True
    min_models = 1
    max_models = 1
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        base, other = base_and_other(inputs, self.name)
        t = float(required_param(inputs, "t", self.name))
        return slerp(t, base, other, inplace=inputs.owned)
