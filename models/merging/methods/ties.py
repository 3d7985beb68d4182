"""``ties``: trim task vectors by magnitude, elect signs, disjoint merge (Yadav et al. 2023)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.generalized import (
    Sparsifier,
    generalized_task_arithmetic,
    magnitude_sparsifier,
)
from splice.models.merging.methods.task_arithmetic import TaskVectorMethod
from splice.models.merging.registry import TensorInputs, per_model, register


def ties(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    densities: Sequence[float],
    *,
    normalize: bool = True,
    lambda_: float = 1.0,
    rescale: bool = False,
) -> torch.Tensor:
    """TIES: top-``density`` magnitudes per task vector, weighted sign vote, agreeing mean."""
    return generalized_task_arithmetic(
        base,
        tensors,
        weights,
        sparsifier=magnitude_sparsifier(densities, rescale=rescale),
        consensus=True,
        normalize=normalize,
        lambda_=lambda_,
    )


@register
class Ties(TaskVectorMethod):
    """Magnitude trimming, sign election and the mean of the agreeing task vectors."""

    name = "ties"
    consensus = True
    model_params = {"weight": 1.0, "density": 1.0}
    global_params = {"normalize": True, "lambda": 1.0, "rescale": False, "int8_mask": False}

    def sparsifier(self, inputs: TensorInputs) -> Sparsifier | None:
        return magnitude_sparsifier(
            per_model(inputs, "density"), rescale=bool(inputs.params["rescale"])
        )
