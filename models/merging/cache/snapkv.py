"""``snapkv``: scores from an observation window of the last queries, pooled along the sequence
(Li et al. 2024, "SnapKV: LLM Knows What You are Looking for Before Generation"). Needs queries
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
    attention_scores,
    gather,
    register_cache_method,
    top_entries,
)


def max_pool(scores: np.ndarray, kernel: int) -> np.ndarray:
    """Max over a centred window of ``kernel`` entries along the last axis (same length)."""
    if kernel <= 1 or scores.shape[-1] == 0:
        return scores
    left = kernel // 2
    padded = np.pad(
        scores, [(0, 0)] * (scores.ndim - 1) + [(left, kernel - 1 - left)], constant_values=-np.inf
    )
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=-1)
    return windows.max(axis=-1)


def avg_pool(scores: np.ndarray, kernel: int) -> np.ndarray:
    """Mean over a centred window of ``kernel`` entries along the last axis, zeros padded and
    counted (torch's ``avg_pool1d(kernel, 1, kernel // 2)``, as SnapKV and kvpress pool); odd
    ``kernel`` keeps the length."""
    if kernel <= 1 or scores.shape[-1] == 0:
        return scores
    left = kernel // 2
    padded = np.pad(scores, [(0, 0)] * (scores.ndim - 1) + [(left, left)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernel, axis=-1)
    return windows.mean(axis=-1)[..., : scores.shape[-1]]


@register_cache_method
@dataclass
class SnapKV(CacheMethod):
    """Keep the observation window (the entries of the last ``window`` queries) and the earlier
    entries whose attention from that window, pooled over ``kernel`` neighbours (``pooling``
    "avg" as SnapKV's code and kvpress, or "max"), is highest.

    Open details: fewer queries than ``window`` make a smaller window; a budget smaller than
    the window keeps the most recent entries of it; grouped query heads are averaged. Given
    ``CacheInputs.attention`` instead of queries, that is the window's summed attention and
    the window is ``window`` entries."""

    name: ClassVar[str] = "snapkv"
    query_use: ClassVar[QueryUse] = "required"

    window: int = 32
    kernel: int = 5
    pooling: str = "avg"

    def __post_init__(self) -> None:
        if self.window < 1 or self.kernel < 1:
            raise ValueError("window and kernel must be at least 1")
        if self.pooling not in ("avg", "max"):
            raise ValueError(f"pooling {self.pooling!r}: avg or max")

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        n = inputs.length
        if inputs.attention is not None:
            observed = min(self.window, n)
            scores = np.asarray(inputs.attention, dtype=np.float64)
        else:
            assert inputs.queries is not None
            window_queries = inputs.queries[:, -self.window :]
            observed = window_queries.shape[1]
            # (kv_heads, observed, n) -> (kv_heads, n)
            scores = attention_scores(inputs.keys, window_queries).sum(axis=1)
        observed = min(observed, keep)
        prefix = n - observed
        pool = avg_pool if self.pooling == "avg" else max_pool
        pooled = pool(scores[:, :prefix], self.kernel)
        chosen = top_entries(pooled, keep - observed)
        tail = np.broadcast_to(np.arange(prefix, n), (inputs.heads, observed))
        return gather(inputs, np.concatenate([chosen, tail], axis=1))
