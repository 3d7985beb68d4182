"""``dare_linear`` and ``dare_ties``: random drop and rescale of task vectors (Yu et al. 2024)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.generalized import (
    Sparsifier,
    generalized_task_arithmetic,
    random_sparsifier,
)
from splice.models.merging.methods.task_arithmetic import TaskVectorMethod
from splice.models.merging.registry import TensorInputs, per_model, register


def dare(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    densities: Sequence[float],
    *,
    ties: bool = False,
    normalize: bool = False,
    lambda_: float = 1.0,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DARE: keep each delta entry with probability ``density``, rescale to the original L1
    norm; with ``ties`` the TIES sign election follows."""
    return generalized_task_arithmetic(
        base,
        tensors,
        weights,
        sparsifier=random_sparsifier(densities, rescale=rescale, generator=generator),
        consensus=ties,
        normalize=normalize,
        lambda_=lambda_,
    )


class _Dare(TaskVectorMethod):
    model_params = {"weight": 1.0, "density": 1.0}
    global_params = {"normalize": False, "lambda": 1.0, "rescale": True, "int8_mask": False}

    def sparsifier(self, inputs: TensorInputs) -> Sparsifier | None:
        return random_sparsifier(
            per_model(inputs, "density"),
            rescale=bool(inputs.params["rescale"]),
            generator=inputs.generator,
        )


@register
class DareLinear(_Dare):
    """DARE drop-and-rescale, then the weighted sum of the task vectors."""

    name = "dare_linear"


@register
class DareTies(_Dare):
    """DARE drop-and-rescale, then TIES sign election."""

    name = "dare_ties"
    consensus = True
