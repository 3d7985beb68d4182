"""``nearswap``: take the other model's value where it is close to the base's.

Per entry, ``w = clamp(t / max(|base - other|, 1e-6), 0, 1)`` and the result is
``w * other + (1 - w) * base``: entries that differ by at most ``t`` become the other model's,
larger differences move the base only by ``t``-sized amounts (``t`` is required).
"""

from __future__ import annotations

import torch
from splice.models.merging.methods.aligned import aligned
from splice.models.merging.registry import (
    MergeMethod,
    TensorInputs,
    base_and_other,
    register,
    required_param,
)

MIN_DIFF = 1e-6


def nearswap(base: torch.Tensor, other: torch.Tensor, t: float) -> torch.Tensor:
    """NearSwap of ``other`` into ``base`` with threshold ``t``, in the inputs' dtype."""
    (b,), a = aligned([other], base)
    assert a is not None
    gap = torch.abs(a - b)
    share = (t / gap.clamp(min=MIN_DIFF)).clamp(min=0, max=1)
    return share * b + (1 - share) * a


@register
class NearSwap(MergeMethod):
    """Base model with entries swapped to the other model's where the two are within ``t``."""

    name = "nearswap"
    global_params = {"t": None}
    requires_base = True
    min_models = 1
    max_models = 1
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        base, other = base_and_other(inputs, self.name)
        return nearswap(base, other, float(required_param(inputs, "t", self.name)))
