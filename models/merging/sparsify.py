"""Sparsification of task vectors: magnitude (TIES), random (DARE), outliers (breadcrumbs) and
rank-based sampling (DELLA), plus the exact rank selection they share.

Selection never sorts a whole tensor: the boundary values are found by radix selection on the
float bits (two ``bincount`` passes, :func:`_radix_select`; ``torch.kthvalue`` for float64 and
tiny tensors) and ties at a boundary are resolved in index order, so the kept set is exactly the
positions ``[start, stop)`` of a stable ascending sort. Masks are applied as 0/1 tensors of the
task vector's dtype (several times faster to multiply by than booleans, same products), scratch
buffers come from the active :mod:`~splice.models.merging.workspace`, and with ``inplace`` the
task vector (which the caller owns) is overwritten rather than copied.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from splice.models.merging.workspace import Workspace, current

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


def _radix_select(values: torch.Tensor, k: int, ws: Workspace) -> tuple[torch.Tensor, int, int]:
    """The k-th smallest (1-based) of a flat non-negative float32 tensor, with the number of
    entries below it and equal to it.

    Non-negative floats order like their bit patterns: one ``bincount`` over the top 16 bits
    finds the bucket holding rank ``k``, a second over the low 16 bits of that bucket's entries
    (the others clamped into two spill bins) finds the value. Exact, two linear passes, no sort,
    no gather.
    """
    bits = values.view(torch.int32)
    key = ws.like("radix", values, torch.int32)
    torch.bitwise_right_shift(bits, 16, out=key)
    cumulative = torch.bincount(key, minlength=1 << 15).cumsum(0)
    bucket = int(torch.searchsorted(cumulative, torch.tensor(k, device=values.device)))
    before = int(cumulative[bucket - 1]) if bucket > 0 else 0
    torch.sub(bits, (bucket << 16) - 1, out=key)  # the bucket's entries -> [1, 65536]
    key.clamp_(0, 65537)
    counts = torch.bincount(key, minlength=65538)[1:65537]
    inside = counts.cumsum(0)
    low = int(torch.searchsorted(inside, torch.tensor(k - before, device=values.device)))
    below = before + (int(inside[low - 1]) if low > 0 else 0)
    value = torch.tensor((bucket << 16) | low, dtype=torch.int32).view(torch.float32)
    return value.to(values.device), below, int(counts[low])


def _kth(values: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th smallest (1-based) of a flat non-negative float tensor, as a 0-d tensor."""
    if values.dtype == torch.float32 and values.numel() >= 1 << 12:
        return _radix_select(values, k, current())[0]
    if values.device.type == "cpu":
        return torch.kthvalue(values, k).values
    return torch.topk(values, k, largest=False, sorted=False).values.max()


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
        # equal entries of rank < start, in index order
        skip = start - int(torch.count_nonzero(below))
        mask &= ~below
        if skip > 0:
            mask &= ~(equal & (torch.cumsum(equal, 0) <= skip))
    if stop < n:
        high = _kth(magnitudes, stop)  # the value at rank `stop - 1`
        above = magnitudes > high
        equal = magnitudes == high
        take = stop - int(torch.count_nonzero(magnitudes < high))  # equal entries of rank < stop
        mask &= ~above
        if take < int(torch.count_nonzero(equal)):
            mask &= ~(equal & (torch.cumsum(equal, 0) > take))
    return mask


def _keep_top_k(tensor: torch.Tensor, k: int, ws: Workspace) -> torch.Tensor | None:
    """Flat 0/1 mask in ``tensor``'s dtype (a workspace buffer) of the ``k`` largest
    magnitudes, ties in index order; None when the radix path does not apply (float64,
    full-sort mode, small tensors). (A float mask multiplies several times faster than a
    boolean one, and gives the same products.)"""
    n = tensor.numel()
    if _FULL_SORT or n < 1 << 12 or tensor.dtype == torch.float64:
        return None
    mag = ws.like("magnitude", tensor, torch.float32)
    if tensor.dtype == torch.float32:
        torch.abs(tensor.detach().reshape(-1), out=mag)
        keep = mag  # overwritten in place by the comparison
    else:
        mag.copy_(tensor.detach().reshape(-1)).abs_()
        keep = ws.like("keep", tensor)
    value, below, equal = _radix_select(mag, n - k + 1, ws)  # the k-th largest
    need = k - (n - below - equal)  # how many of the entries equal to it are kept
    if need == equal:
        torch.ge(mag, value, out=keep)
    else:  # ties at the threshold: the earliest indices win
        first = torch.nonzero(mag == value).squeeze(1)[:need]
        torch.gt(mag, value, out=keep)
        keep[first] = 1
    return keep


def top_k_mask(tensor: torch.Tensor, k: int) -> torch.Tensor:
    """Mask (tensor's shape) of the ``k`` largest magnitudes; ties kept in index order."""
    if k >= tensor.numel():
        return torch.ones_like(tensor, dtype=torch.bool)
    keep = _keep_top_k(tensor, k, current())
    if keep is not None:
        return (keep != 0).reshape(tensor.shape)
    mag = _work(tensor)
    n = mag.numel()
    if _FULL_SORT:
        mask = torch.zeros(n, dtype=torch.bool, device=mag.device)
        mask[torch.argsort(mag, descending=True)[:k]] = True
        return mask.reshape(tensor.shape)
    threshold = _kth(mag, n - k + 1)  # the k-th largest
    mask = mag > threshold
    need = k - int(torch.count_nonzero(mask))
    if need > 0:  # ties at the threshold: the earliest indices win
        mask[torch.nonzero(mag == threshold).squeeze(1)[:need]] = True
    return mask.reshape(tensor.shape)


def _l1(tensor: torch.Tensor, ws: Workspace) -> float:
    """The L1 norm of ``tensor`` (float32 or float64 pairwise summation: a casting float64
    sum of float32 entries is twenty times slower)."""
    if not tensor.numel():
        return 0.0
    mag = ws.like("magnitude", tensor)
    torch.abs(tensor.detach().reshape(-1), out=mag)
    if mag.dtype in (torch.float32, torch.float64):
        return float(mag.sum())
    return float(mag.sum(dtype=torch.float32))


def _rescale_to(kept: torch.Tensor, org: float, ws: Workspace) -> torch.Tensor:
    """``kept`` scaled in place to the L1 norm ``org`` (see :func:`rescale_l1`)."""
    new = _l1(kept, ws)
    if org < RESCALE_EPS or new < RESCALE_EPS:
        return kept
    return kept.mul_(org / new)


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


def _apply(
    tensor: torch.Tensor, keep: torch.Tensor, org: float | None, inplace: bool, ws: Workspace
) -> torch.Tensor:
    """``tensor * keep`` (in place when ``inplace``; a boolean ``keep`` or a 0/1 one),
    rescaled to the L1 norm ``org`` if given."""
    keep = keep.view(tensor.shape)
    kept = tensor.mul_(keep) if inplace else tensor * keep
    return kept if org is None else _rescale_to(kept, org, ws)


def magnitude(
    tensor: torch.Tensor, density: float, rescale: bool = False, *, inplace: bool = False
) -> torch.Tensor:
    """TIES trimming: keep the top ``max(1, int(density * n))`` magnitudes of the whole tensor.

    ``inplace``: overwrite ``tensor`` (which the caller owns) instead of allocating.
    """
    if density >= 1.0:
        return tensor
    if density < 0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    k = max(1, int(density * tensor.numel()))
    ws = current()
    org = _l1(tensor, ws) if rescale else None
    keep = None if k >= tensor.numel() else _keep_top_k(tensor, k, ws)
    if keep is None:
        keep = top_k_mask(tensor, k)
    return _apply(tensor, keep, org, inplace, ws)


def random_drop(
    tensor: torch.Tensor,
    density: float,
    rescale: bool = True,
    generator: torch.Generator | None = None,
    *,
    inplace: bool = False,
) -> torch.Tensor:
    """DARE: keep each entry with probability ``density`` (``rand < density``); rescale to the
    original L1 norm. ``inplace``: overwrite ``tensor`` (which the caller owns)."""
    if density >= 1.0:
        return tensor
    if density < 0:
        raise ValueError(f"density must be in [0, 1], got {density}")
    ws = current()
    org = _l1(tensor, ws) if rescale else None
    draws = ws.like("magnitude", tensor, torch.float32)
    torch.rand(draws.shape, generator=generator, out=draws)
    keep = draws if tensor.dtype == torch.float32 else ws.like("keep", tensor)
    torch.lt(draws, float(density), out=keep)  # a 0/1 mask in the tensor's dtype
    return _apply(tensor, keep, org, inplace, ws)


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
