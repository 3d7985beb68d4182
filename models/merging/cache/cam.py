"""``cam``: evict as H2O does, but merge each evicted value into the kept values that follow it
(Zhang et al. 2024, "CaM: Cache Merging for Memory-efficient LLMs Inference"). Needs queries
or attention scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from splice.models.merging.cache.base import (
    CacheInputs,
    CacheMethod,
    Compressed,
    QueryUse,
    draws,
    gather,
    heavy_and_recent,
    register_cache_method,
    scatter_add,
)


def cam_merge(
    values: np.ndarray,
    scores: np.ndarray,
    kept: np.ndarray,
    window: int,
    uniform: np.ndarray,
) -> np.ndarray:
    """The kept values (heads, m, d), float64, after merging every evicted entry.

    ``values`` (heads, n, d); ``scores`` (heads, n) each entry's attention; ``kept``
    (heads, m) sorted indices; ``uniform`` (heads, n) draws in [0, 1). An evicted entry ``e``
    is merged when ``uniform[e] < min(1, scores[e] / mean(scores of its targets))``, its
    targets being the next ``window`` kept entries after it (fewer at the end; none: dropped);
    then ``values[e] / len(targets)`` is added to each target. Every contribution is taken
    from the values before merging."""
    heads, n, _ = values.shape
    keep = kept.shape[1]
    rows = np.arange(heads)[:, None]
    merged = values[rows, kept].astype(np.float64)
    is_kept = np.zeros((heads, n), dtype=bool)
    is_kept[rows, kept] = True
    # every head evicts n - m entries: (heads, n - m) sorted
    evicted = np.nonzero(~is_kept)[1].reshape(heads, n - keep)
    first = np.stack([np.searchsorted(kept[h], evicted[h], side="right") for h in range(heads)])
    targets = first[..., None] + np.arange(window)  # (heads, n - m, window) slots in ``kept``
    valid = targets < keep
    targets = np.minimum(targets, keep - 1)
    count = valid.sum(axis=-1)  # (heads, n - m)
    target_scores = np.where(valid, scores[rows[..., None], kept[rows[..., None], targets]], 0.0)
    mean = target_scores.sum(axis=-1) / np.maximum(count, 1)
    own = scores[rows, evicted]
    with np.errstate(divide="ignore", invalid="ignore"):
        probability = np.where(mean > 0, np.minimum(1.0, own / mean), 1.0)
    merge = (uniform[rows, evicted] < probability) & (count > 0)
    share = np.where(merge, 1.0 / np.maximum(count, 1), 0.0)  # (heads, n - m)
    # (heads, n - m, window, d) contributions, zero where the window ran past the end
    contribution = (share[..., None] * valid)[..., None] * values[rows, evicted][:, :, None, :]
    scatter_add(merged, (rows[..., None], targets), contribution)
    return merged


@register_cache_method
@dataclass
class CaM(CacheMethod):
    """Choose the kept entries as :class:`~splice.models.merging.cache.h2o.H2O` does (the most
    recent ``recent`` share plus heavy hitters); merge each evicted entry's value into the
    next ``window`` kept values, each merge drawn with probability ``min(1, its attention /
    the mean attention of those targets)``. Keys are not merged.

    Open details, chosen here: one draw per evicted entry and head (from ``seed``, the layer
    and the shape); all evicted entries of a compression merge at once, from the values before
    it (the paper evicts one token per step); the kept set is chosen per kv head."""

    name: ClassVar[str] = "cam"
    query_use: ClassVar[QueryUse] = "required"

    recent: float = 0.5
    window: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.recent <= 1.0:
            raise ValueError(f"recent {self.recent} must be in [0, 1]")
        if self.window < 1:
            raise ValueError(f"window {self.window} must be at least 1")

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        scores = inputs.entry_attention()
        assert scores is not None
        kept = heavy_and_recent(scores, keep, int(keep * self.recent))
        uniform = draws(self.seed, inputs.layer, (inputs.heads, inputs.length))
        out = gather(inputs, kept)
        out.values = cam_merge(inputs.values, scores, kept, self.window, uniform).astype(
            inputs.values.dtype
        )
        return out
