"""Generalized task arithmetic: sparsify each task vector, optionally elect signs (TIES), sum the
weighted task vectors, optionally normalize, scale by ``lambda`` and add to the base.

``task_arithmetic``, ``ties``, ``dare_*``, ``breadcrumbs*`` and ``della*`` are this function
with a sparsifier and a consensus switch (their modules only fix those and the defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from splice.models.merging import sparsify

#: A sparsifier: (task vector, its model's index) -> sparsified task vector.
Sparsifier = Callable[[torch.Tensor, int], torch.Tensor]

#: Weight sums below this are replaced by 1 when normalizing.
NORMALIZE_EPS = 1e-8


def sign_consensus(weighted: torch.Tensor) -> torch.Tensor:
    """TIES sign election over stacked weighted task vectors (models on dim 0).

    The elected sign of an entry is that of the sum of the weighted deltas (``+`` on a tie);
    returns the boolean mask of the entries agreeing with it (zeros never agree).
    """
    majority = torch.where(weighted.sum(dim=0) >= 0, 1, -1).to(weighted.dtype)
    return weighted.sign() == majority


def combine(
    base: torch.Tensor,
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    consensus: bool = False,
    normalize: bool = False,
    lambda_: float = 1.0,
) -> torch.Tensor:
    """Weighted sum of (already sparsified) task vectors, added to ``base`` (in its dtype).

    The sums run over the stacked tensors (``sum(dim=0)``): the reduction order, and for half
    types the float accumulation, that mergekit's results have, bit for bit.
    """
    if not deltas:
        return base.clone()
    stacked = torch.stack(list(deltas), dim=0)
    w = torch.tensor(list(weights), dtype=stacked.dtype, device=stacked.device)
    w = w.reshape((-1,) + (1,) * (stacked.dim() - 1))
    weighted = stacked.mul_(w)
    del stacked
    if consensus:
        mask = sign_consensus(weighted).to(weighted.dtype)
        mixed = weighted.mul_(mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        del mask
    else:
        mixed = weighted.sum(dim=0)
        divisor = w.sum(dim=0)
    del weighted
    if normalize:
        divisor = torch.where(divisor.abs() < NORMALIZE_EPS, torch.ones_like(divisor), divisor)
        mixed /= divisor
    if lambda_ != 1.0:
        mixed *= lambda_
    return (base + mixed).to(base.dtype)


def task_vectors(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    sparsifier: Sparsifier | None = None,
) -> list[torch.Tensor]:
    """``tensor - base`` for every tensor, each passed through ``sparsifier`` if given."""
    out = []
    for index, tensor in enumerate(tensors):
        delta = tensor - base
        if sparsifier is not None:
            delta = sparsifier(delta, index)
        out.append(delta)
    return out


def generalized_task_arithmetic(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    sparsifier: Sparsifier | None = None,
    consensus: bool = False,
    normalize: bool = False,
    lambda_: float = 1.0,
) -> torch.Tensor:
    """The whole family in one call (see the module docstring)."""
    deltas = task_vectors(base, tensors, sparsifier)
    return combine(base, deltas, weights, consensus=consensus, normalize=normalize, lambda_=lambda_)


def magnitude_sparsifier(densities: Sequence[float], rescale: bool = False) -> Sparsifier:
    """TIES trimming with per-model densities."""
    return lambda delta, i: sparsify.magnitude(delta, float(densities[i]), rescale=rescale)


def random_sparsifier(
    densities: Sequence[float], rescale: bool = True, generator: torch.Generator | None = None
) -> Sparsifier:
    """DARE dropping with per-model densities."""
    return lambda delta, i: sparsify.random_drop(
        delta, float(densities[i]), rescale=rescale, generator=generator
    )


def outlier_sparsifier(
    densities: Sequence[float], gammas: Sequence[float], rescale: bool = False
) -> Sparsifier:
    """Breadcrumbs with per-model densities and gammas."""
    return lambda delta, i: sparsify.outliers(
        delta, float(densities[i]), float(gammas[i]), rescale=rescale
    )


def rank_sparsifier(
    densities: Sequence[float],
    epsilons: Sequence[float],
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> Sparsifier:
    """DELLA sampling with per-model densities and epsilons."""
    return lambda delta, i: sparsify.rank_sampling(
        delta, float(densities[i]), float(epsilons[i]), rescale=rescale, generator=generator
    )
