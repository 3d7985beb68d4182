"""``task_arithmetic``: add the weighted sum of task vectors to the base (Ilharco et al. 2023).

Also the base class of the sparsifying family (ties, dare, breadcrumbs, della).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from splice.models.merging.generalized import Sparsifier, generalized_task_arithmetic
from splice.models.merging.registry import MergeMethod, TensorInputs, register, weights_of


def task_arithmetic(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    normalize: bool = False,
    lambda_: float = 1.0,
) -> torch.Tensor:
    """``base + lambda * sum(w_i * (t_i - base))`` (over ``sum(w_i)`` when ``normalize``)."""
    return generalized_task_arithmetic(base, tensors, weights, normalize=normalize, lambda_=lambda_)


class TaskVectorMethod(MergeMethod):
    """Shared machinery: subclasses set ``consensus`` and build their sparsifier."""

    requires_base = True
    drop_base_from_models = True
    consensus: ClassVar[bool] = False
    model_params = {"weight": 1.0}
    global_params = {"normalize": False, "lambda": 1.0, "int8_mask": False}

    def sparsifier(self, inputs: TensorInputs) -> Sparsifier | None:
        """The sparsifier for this tensor's task vectors (None: keep them whole)."""
        return None

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError(f"{self.name} needs a base model")
        return generalized_task_arithmetic(
            inputs.base,
            inputs.tensors,
            weights_of(inputs),
            sparsifier=self.sparsifier(inputs),
            consensus=self.consensus,
            normalize=bool(inputs.params["normalize"]),
            lambda_=float(inputs.params["lambda"]),
            inplace=inputs.owned,
        )


@register
class TaskArithmetic(TaskVectorMethod):
    """Base plus the weighted sum of the task vectors."""

    name = "task_arithmetic"
