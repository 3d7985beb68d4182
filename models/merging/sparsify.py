"""Sparsification of task vectors: magnitude (TIES), random (DARE), outliers (breadcrumbs) and
rank-based sampling (DELLA), plus the exact rank selection they share.

Selection never sorts a whole tensor: :func:`rank_range_mask` finds the two boundary values with
``torch.kthvalue`` (linear-time selection) and resolves ties at a boundary in index order, so
the kept set is exactly the positions ``[start, stop)`` of a stable ascending sort.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: Select by a full ``argsort`` (mergekit's tie-breaking among equal magnitudes, bit for bit;
#: O(n log n)) instead of linear-time selection. See :func:`full_sort_ties`.
_FULL_SORT = False


@contextmanager
def full_sort_ties(enabled: bool = True) -> Iterator[None]:
    """Within the block, magnitude pruning breaks ties like mergekit (a full descending
    ``argsort``): only matters where several entries share the threshold magnitude (bf16)."""
    global _FULL_SORT
    previous, _FULL_SORT = _FULL_SORT, enabled
    try:
        yield
    finally:
        _FULL_SORT = previous


#: Below this L1 norm a tensor is treated as zero and not rescaled.
RESCALE_EPS = 1e-8


def _work(tensor: torch.Tensor) -> torch.Tensor:
    """Magnitudes as a flat float32 (or float64) tensor: kthvalue lacks half types on CPU."""
    mag = tensor.detach().abs().reshape(-1)
    if mag.dtype not in (torch.float32, torch.float64):
        mag = mag.float()
    return mag


def _kth(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of a flat non-negative float tensor, as a 0-d tensor.

    Radix selection: non-negative float32 values order like their bit patterns, so one
    ``bincount`` over the top 16 bits finds the bucket holding rank ``k``, and ``kthvalue`` runs
    on that bucket alone. Exact, linear time, no sort.
    """
    if values.dtype != torch.float32 or values.numel() < 1 << 16:
        if values.device.type == "cpu":
            return torch.kthvalue(values, k).values
        return torch.topk(values, k, largest=False, sorted=False).values.max()
    high = values.view(torch.int32) >> 16
    counts = torch.bincount(high, minlength=1 << 15)
    cumulative = counts.cumsum(0)
    bucket = int(torch.searchsorted(cumulative, torch.tensor(k, device=values.device)))
    before = int(cumulative[bucket - 1]) if bucket > 0 else 0
    inside = values[high == bucket]
    if values.device.type == "cpu":
        return torch.kthvalue(inside, k - before).values
    return torch.topk(inside, k - before, largest=False, sorted=False).values.max()


def rank_range_mask(magnitudes: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """Boolean mask (flat) of the entries whose stable ascending rank is in ``[start, stop)``."""
    n = magnitudes.numel()
    start, stop = max(0, start), min(n, stop)
    if stop <= start:
        return torch.zeros(n, dtype=torch.bool, device=magnitudes.device)
    if start == 0 and stop == n:
        return torch.ones(n, dtype=torch.bool, device=magnitudes.device)
    mask = torch.ones(n, dtype=torch.bool, device=magnitudes.device)
    if start > 0:
        low = _kth(magnitudes, start + 1)  # the value at rank `start`
        below = magnitudes < low
        equal = magnitudes == low
        skip = start - int(below.sum())  # equal entries of rank < start, in index order
        mask &= ~below
        if skip > 0:
            mask &= ~(equal & (torch.cumsum(equal, 0) <= skip))
    if stop < n:
        high = _kth(magnitudes, stop)  # the value at rank `stop - 1`
        above = magnitudes > high
        equal = magnitudes == high
        take = stop - int((magnitudes < high).sum())  # equal entries of rank < stop
        mask &= ~above
        if take < int(equal.sum()):
            mask &= ~(equal & (torch.cumsum(equal, 0) > take))
    return mask


def top_k_mask(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """Mask (tensor's shape) of the ``k`` largest magnitudes; ties kept in index order."""
    mag = _work(tensor)
    n = mag.numel()
    if k >= n:
        return torch.ones_like(tensor, dtype=torch.bool)
    if _FULL_SORT:
        mask = torch.zeros(n, dtype=torch.bool, device=mag.device)
        mask[torch.argsort(mag, descending=True)[:k]] = True
        return mask.reshape(tensor.shape)
    threshold = _kth(mag, n - k + 1)  # the k-th largest
    mask = mag > threshold
    need = k - int(mask.sum())
    if need > 0:  # ties at the threshold: the earliest indices win
        mask[torch.nonzero(mag == threshold).squeeze(1)[:need]] = True
    return mask.reshape(tensor.shape)


def rescale_l1(original: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Scale ``kept`` so that its L1 norm equals that of ``original``; returns the factor too.

    Left as is when either norm is below :data:`RESCALE_EPS`.
    """
    org = float(original.abs().sum(dtype=torch.float64)) if original.numel() else 0.0
    new = float(kept.abs().sum(dtype=torch.float64)) if kept.numel() else 0.0
    if org < RESCALE_EPS or new < RESCALE_EPS:
        return kept, 1.0
    factor = org / new
    return kept * factor, factor


def magnitude(tensor: torch.Tensor, density: float, rescale: bool = False) -> torch.Tensor:
    """TIES trimming: keep the top ``max(1, int(density * n))`` magnitudes of the whole tensor."""
    if density >= 1.0:
        return tensor
    if density < 0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    k = max(1, int(density * tensor.numel()))
    kept = tensor * top_k_mask(tensor, k)
    return rescale_l1(tensor, kept)[0] if rescale else kept


def random_drop(
    tensor: torch.Tensor,
    density: float,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DARE: keep each entry with probability ``density``; rescale to the original L1 norm."""
    if density >= 1.0:
        return tensor
    if density < 0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    probs = torch.full(tensor.shape, float(density), dtype=torch.float32, device=tensor.device)
    mask = torch.bernoulli(probs, generator=generator).to(tensor.dtype)
    kept = tensor * mask
    return rescale_l1(tensor, kept)[0] if rescale else kept


def outliers(
    tensor: torch.Tensor, density: float, gamma: float = 0.01, rescale: bool = False
) -> torch.Tensor:
    """Model breadcrumbs: drop the top ``gamma`` and the smallest magnitudes, keep ``density``.

    With ``target = int(density * n)`` and ``n_top = int(gamma * n)``, the kept entries are the
    ascending ranks ``[n_bot, n_bot + target)`` with ``n_bot = max(0, n - target - n_top)``.
    """
    if density >= 1.0 and gamma <= 0.0:
        return tensor
    n = tensor.numel()
    target = int(density * n)
    n_top = int(gamma * n)
    n_bot = max(0, n - target - n_top)
    mask = rank_range_mask(_work(tensor), n_bot, n_bot + target).reshape(tensor.shape)
    kept = tensor * mask.to(tensor.dtype)
    return rescale_l1(tensor, kept)[0] if rescale else kept


def rank_keep_probabilities(tensor: torch.Tensor, density: float, epsilon: float) -> torch.Tensor:
    """DELLA's keep probabilities: per row, ``density - epsilon`` for the smallest magnitude up to
    ``density + epsilon`` for the largest, linear in the rank within the row (float32)."""
    rows = tensor.reshape(1, -1) if tensor.dim() < 2 else tensor.reshape(tensor.shape[0], -1)
    width = rows.shape[1]
    mag = rows.detach().abs().float()
    ranks = torch.empty_like(mag)
    order = torch.argsort(mag, dim=1, stable=True)
    positions = torch.arange(width, dtype=torch.float32, device=mag.device).expand_as(mag)
    ranks.scatter_(1, order, positions.contiguous())
    scaled = ranks / (width - 1) if width > 1 else torch.full_like(ranks, 0.5)
    probs = (density - epsilon) + scaled * (2 * epsilon)
    return probs.reshape(tensor.shape)


def rank_sampling(
    tensor: torch.Tensor,
    density: float,
    epsilon: float,
    rescale: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """DELLA (MagPrune): keep entries with rank-based probabilities, then (as mergekit does,
    rather than the paper's ``1/p``) rescale the tensor to its original L1 norm."""
    if density >= 1.0:
        return tensor
    if not (density - epsilon > 0.0 and density + epsilon <= 1.0):
        raise ValueError(
            f"della needs 0 < density - epsilon and density + epsilon <= 1 "
            f"(density {density}, epsilon {epsilon})"
        )
    probs = rank_keep_probabilities(tensor, density, epsilon)
    mask = torch.bernoulli(probs, generator=generator)
    kept = tensor * mask.to(tensor.dtype)
    return rescale_l1(tensor, kept)[0] if rescale else kept
