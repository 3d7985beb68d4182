"""``model_stock``: interpolate the base and the average of the fine-tunes with a ratio set by
the angle between their task vectors (Jang et al. 2024)."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import torch
import torch.nn.functional as F
from splice.models.merging.registry import MergeMethod, TensorInputs, register


def model_stock_ratio(cos: torch.Tensor, n: int) -> torch.Tensor:
    """``t = n cos / (1 + (n - 1) cos)`` for ``n`` fine-tuned models."""
    return (n * cos) / (1 + (n - 1) * cos)


def model_stock(
    base: torch.Tensor, tensors: Sequence[torch.Tensor], *, filter_wise: bool = False
) -> torch.Tensor:
    """``t * mean(tensors) + (1 - t) * base`` with ``cos`` the mean pairwise cosine of the task
    vectors (over the whole tensor, or per row with ``filter_wise``); float32."""
    n = len(tensors)
    if n < 2:
        raise ValueError("model_stock needs at least two models besides the base")
    b = base.float()
    shape = b.shape
    if filter_wise and b.dim() >= 2:
        rows = shape[0]
        deltas = [(t.float() - b).reshape(rows, -1) for t in tensors]
    else:
        deltas = [(t.float() - b).reshape(1, -1) for t in tensors]
    cos_sum = torch.zeros(deltas[0].shape[0], dtype=torch.float32, device=b.device)
    pairs = 0
    for x, y in combinations(deltas, 2):
        cos_sum = cos_sum + F.cosine_similarity(x, y, dim=-1, eps=1e-8)
        pairs += 1
    cos = cos_sum / pairs
    t = model_stock_ratio(cos, n)
    t = t.reshape((-1,) + (1,) * (b.dim() - 1)) if filter_wise and b.dim() >= 2 else t.reshape(())
    average = torch.stack([x.float() for x in tensors], dim=0).mean(dim=0)
    return (t * average + (1 - t) * b).reshape(shape)


@register
class ModelStock(MergeMethod):
    """Base-to-average interpolation with the Model Stock ratio."""

    name = "model_stock"
    global_params = {"filter_wise": False}
    requires_base = True
    min_models = 2
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError("model_stock needs a base model")
        return model_stock(
            inputs.base, inputs.tensors, filter_wise=bool(inputs.params["filter_wise"])
        )
