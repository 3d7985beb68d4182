"""``della`` and ``della_linear``: magnitude-ranked sampling of task vectors (Deep et al. 2024)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.generalized import (
    Sparsifier,
    generalized_task_arithmetic,
    rank_sparsifier,
)
from splice.models.merging.methods.task_arithmetic import TaskVectorMethod
from splice.models.merging.registry import TensorInputs, per_model, register

DEFAULT_EPSILON = 0.15


def della(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    densities: Sequence[float],
    epsilons: Sequence[float] | None = None,
    *,
    ties: bool = True,
    normalize: bool = True,
    lambda_: float = 1.0,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DELLA: per row, keep probability from ``density - eps`` (smallest magnitude) to
    ``density + eps`` (largest); rescaled to the original L1 norm; TIES election if ``ties``."""
    epsilons = [DEFAULT_EPSILON] * len(tensors) if epsilons is None else epsilons
    return generalized_task_arithmetic(
        base,
        tensors,
        weights,
        sparsifier=rank_sparsifier(densities, epsilons, rescale=rescale, generator=generator),
        consensus=ties,
        normalize=normalize,
        lambda_=lambda_,
    )


class _Della(TaskVectorMethod):
    model_params = {"weight": 1.0, "density": 1.0, "epsilon": DEFAULT_EPSILON}

    def sparsifier(self, inputs: TensorInputs) -> Sparsifier | None:
        return rank_sparsifier(
            per_model(inputs, "density"),
            per_model(inputs, "epsilon"),
            rescale=bool(inputs.params["rescale"]),
            generator=inputs.generator,
        )


@register
class Della(_Della):
    """DELLA sampling, then TIES sign election (normalized)."""

    name = "della"
    consensus = True
    global_params = {"normalize": True, "lambda": 1.0, "rescale": True, "int8_mask": False}


@register
class DellaLinear(_Della):
    """DELLA sampling, then the weighted sum of the task vectors."""

    name = "della_linear"
    global_params = {"normalize": False, "lambda": 1.0, "rescale": True, "int8_mask": False}
