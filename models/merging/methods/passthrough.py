"""``passthrough``: copy one model's tensors (with slices: stack layer ranges), optionally
scaled."""

from __future__ import annotations

import torch
from splice.models.merging.registry import MergeMethod, TensorInputs, register


def passthrough(tensor: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """The tensor itself, or ``tensor * scale`` when ``scale != 1``."""
    return tensor if scale == 1.0 else tensor * scale


@register
class Passthrough(MergeMethod):
    """Copies the tensors of exactly one model per slice."""

    name = "passthrough"
    model_params = {"scale": 1.0}
    requires_base = None
    min_models = 1
    max_models = 1

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if len(inputs.tensors) != 1:
            raise ValueError("passthrough takes exactly one model (per slice)")
        return passthrough(inputs.tensors[0], float(inputs.model_params[0]["scale"]))
