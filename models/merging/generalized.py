"""Generalized task arithmetic: sparsify each task vector, optionally elect signs (TIES), sum the
weighted task vectors, optionally normalize, scale by ``lambda`` and add to the base.

``task_arithmetic``, ``ties``, ``dare_*``, ``breadcrumbs*`` and ``della*`` are this function
with a sparsifier and a consensus switch (their modules only fix those and the defaults).

The arithmetic is that of the stacked formulation (``torch.stack`` the weighted task vectors,
``sign().sum(dim=0)`` for the vote, ``sum(dim=0)`` for the mix and the divisor), which mergekit
uses and which this module reproduces bit for bit, but it runs one model at a time, in place:
the same products, the same summation order (from +0, in float32 for half types), 0/1 masks in
the work dtype, temporaries from the active workspace, and no stacked copy. On CPU each pass is
memory-bound, so the number of passes and fresh pages, not the FLOPs, set the time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from splice.models.merging import sparsify, workspace

#: A sparsifier: (task vector, its model's index) -> sparsified task vector. It may overwrite
#: the task vector it is given (the family's task vectors are fresh tensors).
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


#: Float32 bit patterns: the sign bit and 1.0.
_SIGN_BIT = -(2**31)
_ONE_BITS = 0x3F800000
#: Each dtype's accumulation type in ``sum`` (half types sum in float32).
_ACC = {torch.float16: torch.float32, torch.bfloat16: torch.float32}


def combine(
    base: torch.Tensor,
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    *,
    consensus: bool = False,
    normalize: bool = False,
    lambda_: float = 1.0,
    overwrite: bool = False,
) -> torch.Tensor:
    """Weighted sum of (already sparsified) task vectors, added to ``base`` (in its dtype).

    The result is, bit for bit, that of the stacked formulation mergekit uses (weight the stack,
    elect signs, ``sum(dim=0)``, divide, add), computed one model at a time with in-place ops
    and scratch buffers: no stacked copy, no per-model masks. ``overwrite``: the deltas are the
    caller's to overwrite (the result is then written into the first of them).
    """
    if not deltas:
        return base.clone()
    first = deltas[0]
    fast = (
        first.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
        and base.dtype == first.dtype
        and all(
            d.dtype == first.dtype and d.shape == base.shape and d.device == base.device
            for d in deltas
        )
    )
    if not fast:
        return _combine_stacked(base, deltas, weights, consensus, normalize, lambda_)
    xs = [
        (d if overwrite and d.is_contiguous() else d.contiguous().clone()).view(-1) for d in deltas
    ]
    if len({x.data_ptr() for x in xs}) != len(xs):  # aliased deltas: copies of all but one
        xs = [xs[0], *(x.clone() for x in xs[1:])]
    return _combine_flat(base, xs, weights, consensus, normalize, lambda_).view(base.shape)


def _sum_into(out: torch.Tensor, xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``out = ((0 + xs[0]) + xs[1]) + ...``: the order (and the start from +0) of
    ``torch.stack(xs).sum(dim=0)``; ``out`` may be ``xs[0]``."""
    if out is xs[0]:
        out.add_(0.0)
    else:
        out.zero_().add_(xs[0])
    for x in xs[1:]:
        out.add_(x)
    return out


def _small_divisors(w: torch.Tensor, acc: torch.dtype) -> str:
    """Which sums of subsets of the weights (as ``sum(dim=0)`` computes them, in ``w``'s
    dtype) count as small (``abs < NORMALIZE_EPS``): ``"none"``, ``"empty"`` (only the empty
    subset, i.e. a divisor is small exactly where it is 0) or ``"some"``."""
    n = w.numel()
    if n > 12:
        return "some"
    values = w.to(acc).tolist()
    sums = []
    for subset in range(1 << n):
        total = torch.zeros((), dtype=acc)
        for i in range(n):
            if subset >> i & 1:
                total = total + torch.tensor(values[i], dtype=acc)
        sums.append(total)
    small = (torch.stack(sums).to(w.dtype).abs() < NORMALIZE_EPS).tolist()
    if not any(small):
        return "none"
    return "empty" if small[0] and not any(small[1:]) else "some"


def _combine_flat(
    base: torch.Tensor,
    xs: list[torch.Tensor],
    weights: Sequence[float],
    consensus: bool,
    normalize: bool,
    lambda_: float,
) -> torch.Tensor:
    """:func:`combine` on owned flat contiguous deltas; returns ``xs[0]`` holding the result."""
    dtype, n = xs[0].dtype, xs[0].numel()
    acc = _ACC.get(dtype, dtype)
    ws = workspace.current()  # slots shared with the sparsifiers, which are done by now
    w = torch.tensor(list(weights), dtype=dtype)
    for x, weight in zip(xs, w.to(xs[0].device), strict=True):
        x.mul_(weight)
    divisor: torch.Tensor | None = None
    if consensus:
        # The elected sign: +1 where the sum of the weighted deltas is >= 0, else -1. As bits:
        # the sum's sign bit on 1.0 (a -0 sum only arises when every delta is a zero, which
        # agrees with nothing either way).
        elected = _sum_into(ws.get("magnitude", n, acc, xs[0].device), xs)
        if acc == torch.float32:
            elected.view(torch.int32).bitwise_and_(_SIGN_BIT).bitwise_or_(_ONE_BITS)
        else:
            elected.copy_(torch.where(elected >= 0, 1.0, -1.0))
        agree = ws.get("keep", n, dtype, xs[0].device)  # 0/1 in the work dtype
        divisor = ws.get("radix", n, acc, xs[0].device).zero_() if normalize else None
        for x, weight in zip(xs, w.tolist(), strict=True):
            torch.eq(torch.sign(x, out=agree), elected, out=agree)
            x.mul_(agree)
            if divisor is not None:
                divisor.add_(agree, alpha=weight)
    mixed = xs[0]
    if acc == dtype:
        _sum_into(mixed, xs)
    else:
        mixed.copy_(_sum_into(ws.get("magnitude", n, acc, mixed.device), xs))
    if normalize:
        if divisor is None:
            total = w.sum(dim=0)
            total = torch.where(total.abs() < NORMALIZE_EPS, torch.ones_like(total), total)
            mixed.div_(total.to(mixed.device))
        else:
            if acc != dtype:
                divisor = ws.get("divisor", n, dtype, mixed.device).copy_(divisor)
            small = _small_divisors(w, acc)
            if small == "empty":
                divisor.add_(torch.eq(divisor, 0, out=agree))  # 0 -> 1
            elif small == "some":
                small_mask = divisor.abs() < NORMALIZE_EPS
                divisor = torch.where(small_mask, torch.ones_like(divisor), divisor)
            mixed.div_(divisor)
    if lambda_ != 1.0:
        mixed.mul_(lambda_)
    return mixed.add_(base.reshape(-1))


def _combine_stacked(
    base: torch.Tensor,
    deltas: Sequence[torch.Tensor],
    weights: Sequence[float],
    consensus: bool,
    normalize: bool,
    lambda_: float,
) -> torch.Tensor:
    """The stacked formulation itself (mixed dtypes, integer types, differing shapes)."""
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
    *,
    inplace: bool = False,
) -> list[torch.Tensor]:
    """``tensor - base`` for every tensor, each passed through ``sparsifier`` if given.

    ``inplace``: the tensors are the caller's to overwrite (each becomes its task vector).
    """
    out = []
    for index, tensor in enumerate(tensors):
        owned = (
            inplace
            and tensor.dtype == base.dtype
            and tensor.shape == base.shape
            and tensor.is_contiguous()
            and tensor.data_ptr() != base.data_ptr()
        )
        delta = tensor.sub_(base) if owned else tensor - base
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
    inplace: bool = False,
) -> torch.Tensor:
    """The whole family in one call (see the module docstring).

    ``inplace``: ``tensors`` are the caller's to overwrite (the engine's freshly read inputs).
    """
    deltas = task_vectors(base, tensors, sparsifier, inplace=inplace)
    return combine(
        base,
        deltas,
        weights,
        consensus=consensus,
        normalize=normalize,
        lambda_=lambda_,
        overwrite=True,
    )


def magnitude_sparsifier(densities: Sequence[float], rescale: bool = False) -> Sparsifier:
    """TIES trimming with per-model densities."""
    return lambda delta, i: sparsify.magnitude(
        delta, float(densities[i]), rescale=rescale, inplace=True
    )


def random_sparsifier(
    densities: Sequence[float], rescale: bool = True, generator: torch.Generator | None = None
) -> Sparsifier:
    """DARE dropping with per-model densities."""
    return lambda delta, i: sparsify.random_drop(
        delta, float(densities[i]), rescale=rescale, generator=generator, inplace=True
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
