"""``arcee_fusion``: keep the other model's changes only where they matter most.

Importance of an entry: ``|other - base|`` times the KL divergence between the softmaxes (over
the last dimension) of the other model's and the base's rows. Entries whose importance reaches
``median + 1.5 * IQR`` of the tensor's importances (quantiles by index into the sorted values,
from a 1M-entry sample with replacement on larger tensors) take the other model's value; the
rest keep the base's. No parameters. Computed in the inputs' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from splice.models.merging.methods.aligned import aligned
from splice.models.merging.registry import (
    MergeMethod,
    TensorInputs,
    base_and_other,
    register,
)

#: Above this many entries the quantiles come from a random sample of this size.
QUANTILE_SAMPLE = 1_000_000
KL_EPS = 1e-8


def importance(other: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """``|other - base| * KL(softmax(other) || softmax(base))`` with the KL per last-dim row."""
    p = F.softmax(other, dim=-1) + KL_EPS
    q = F.softmax(base, dim=-1) + KL_EPS
    kl = torch.sum(p * torch.log(p / q), dim=-1, keepdim=True)
    return (other - base).abs() * kl


def fusion_threshold(
    scores: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``median + 1.5 * (q3 - q1)`` of ``scores``, each quantile ``sorted[int(q * (n - 1))]``."""
    flat = scores.reshape(-1)
    if flat.numel() > QUANTILE_SAMPLE:
        pick = torch.randint(
            flat.numel(), (QUANTILE_SAMPLE,), generator=generator, device=flat.device
        )
        flat = flat[pick]
    ordered = torch.sort(flat).values
    qs = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float32, device=ordered.device)
    q1, median, q3 = ordered[(qs * (ordered.numel() - 1)).long()]
    return median + 1.5 * (q3 - q1)


def arcee_fusion(
    base: torch.Tensor, other: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Base plus the other model's difference on its most important entries."""
    (o,), b = aligned([other], base)
    assert b is not None
    scores = importance(o, b)
    keep = (scores >= fusion_threshold(scores, generator)).float()
    return b + (o - b) * keep


@register
class ArceeFusion(MergeMethod):
    """Base model plus the other model's changes whose importance is an outlier."""

    name = "arcee_fusion"
    requires_base = True
    min_models = 1
    max_models = 1
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        base, other = base_and_other(inputs, self.name)
        return arcee_fusion(base, other, inputs.generator)
