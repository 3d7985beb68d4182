"""``ram`` and ``ramplus_tl``: Reinforced Agent Merging (arXiv 2601.13572).

An entry of a task vector counts as changed when ``|delta| > epsilon``. Entries changed by one
model only keep that model's delta; entries changed by several get the mean of their deltas
(over the models that changed them); unchanged deltas are dropped. ``ramplus_tl`` also scales
each model's unique entries by ``1 + r * clamp(shared / unique, 0, alpha)``, its counts of
shared and unique changed entries in the tensor. No per-model weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from splice.models.merging.methods.aligned import aligned
from splice.models.merging.registry import MergeMethod, TensorInputs, register


class Overlap(NamedTuple):
    """The task vectors flattened to [models, entries] and who changed what."""

    deltas: torch.Tensor  # [models, entries]
    changed: torch.Tensor  # bool [models, entries]
    count: torch.Tensor  # int [1, entries]: how many models changed the entry
    shared: torch.Tensor  # bool [1, entries]: count > 1
    unique: torch.Tensor  # bool [1, entries]: count == 1


def overlap(base: torch.Tensor, tensors: Sequence[torch.Tensor], epsilon: float) -> Overlap:
    """Task vectors and their change masks (see :class:`Overlap`)."""
    deltas = torch.stack([t - base for t in tensors], dim=0).view(len(tensors), -1)
    changed = deltas.abs() > epsilon
    count = changed.sum(dim=0, keepdim=True)
    return Overlap(deltas, changed, count, count > 1, count == 1)


def ram(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    *,
    epsilon: float = 1e-5,
    plus: tuple[float, float] | None = None,
) -> torch.Tensor:
    """RAM merge onto ``base``; ``plus=(r, alpha)`` gives RAM+ (tensor-local)."""
    xs, b = aligned(tensors, base)
    assert b is not None
    if not xs:
        return b
    o = overlap(b, xs, epsilon)
    live = o.deltas * o.changed
    own = live * o.unique
    if plus is not None:
        r, alpha = plus
        n_shared = (o.changed & o.shared).sum(dim=1)
        n_unique = (o.changed & o.unique).sum(dim=1)
        rho = n_shared / n_unique.clamp(min=epsilon)
        own = own * (1 + r * rho.clamp(min=0, max=alpha)).unsqueeze(-1)
    merged = (own + live * o.shared / o.count.clamp(min=1)).sum(dim=0, keepdim=True)
    return b + merged.reshape_as(b)


@register
class Ram(MergeMethod):
    """Unique task-vector entries kept, overlapping ones averaged over their contributors."""

    name = "ram"
    global_params = {"epsilon": 1e-5}
    requires_base = True
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError(f"{self.name} needs a base model")
        return ram(inputs.base, inputs.tensors, epsilon=_epsilon(inputs))


@register
class RamPlusTl(MergeMethod):
    """RAM with each model's unique entries boosted by its shared-to-unique ratio."""

    name = "ramplus_tl"
    global_params = {"r": 0.1, "alpha": 0.2, "epsilon": 1e-5}
    requires_base = True
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError(f"{self.name} needs a base model")
        plus = (float(inputs.params["r"]), float(inputs.params["alpha"]))
        return ram(inputs.base, inputs.tensors, epsilon=_epsilon(inputs), plus=plus)


def _epsilon(inputs: TensorInputs) -> float:
    eps = float(inputs.params["epsilon"])
    if eps < 0:
        raise ValueError(f"epsilon must be >= 0, got {eps}")
    return eps
