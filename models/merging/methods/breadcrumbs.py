"""``breadcrumbs`` and ``breadcrumbs_ties``: drop the smallest and the largest task-vector
entries (Davari and Belilovsky 2023)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.generalized import (
    Sparsifier,
    generalized_task_arithmetic,
    outlier_sparsifier,
)
from splice.models.merging.methods.task_arithmetic import TaskVectorMethod
from splice.models.merging.registry import TensorInputs, per_model, register

DEFAULT_GAMMA = 0.01


def breadcrumbs(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    densities: Sequence[float],
    gammas: Sequence[float] | None = None,
    *,
    ties: bool = False,
    normalize: bool = False,
    lambda_: float = 1.0,
    rescale: bool = False,
) -> torch.Tensor:
    """Breadcrumbs masks (``density`` kept, top ``gamma`` dropped), optionally TIES election."""
    gammas = [DEFAULT_GAMMA] * len(tensors) if gammas is None else gammas
    return generalized_task_arithmetic(
        base,
        tensors,
        weights,
        sparsifier=outlier_sparsifier(densities, gammas, rescale=rescale),
        consensus=ties,
        normalize=normalize,
        lambda_=lambda_,
    )


class _Breadcrumbs(TaskVectorMethod):
    model_params = {"weight": 1.0, "density": 1.0, "gamma": DEFAULT_GAMMA}
    global_params = {"normalize": False, "lambda": 1.0, "rescale": False, "int8_mask": False}

    def sparsifier(self, inputs: TensorInputs) -> Sparsifier | None:
        return outlier_sparsifier(
            per_model(inputs, "density"),
            per_model(inputs, "gamma"),
            rescale=bool(inputs.params["rescale"]),
        )


@register
class Breadcrumbs(_Breadcrumbs):
    """Breadcrumbs masks, then the weighted sum of the task vectors."""

    name = "breadcrumbs"


@register
class BreadcrumbsTies(_Breadcrumbs):
    """Breadcrumbs masks, then TIES sign election."""

    name = "breadcrumbs_ties"
    consensus = True
