"""``ems``: a Global-Local importance score and head-wise evict-then-merge (Li et al. 2024,
"EMS: Adaptive Evict-then-Merge Strategy for Head-wise KV Cache Compression Based on
Global-Local Importance"). Needs queries or attention scores."""

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
    register_cache_method,
    scatter_add,
)


def global_local_scores(
    keys: np.ndarray, queries: np.ndarray, local_window: int, local_weight: float
) -> np.ndarray:
    """(kv_heads, n): ``(1 - local_weight) * global + local_weight * local``, each part
    normalised to sum 1 per head. ``global``: the mean attention an entry received from the
    queries that can see it (so early entries are not favoured for being seen by more
    queries); ``local``: the same over the last ``local_window`` queries."""
    attention = attention_scores(keys, queries)  # (kv_heads, w, n)
    n, w = keys.shape[1], queries.shape[1]
    remaining = n - np.arange(n)  # entry j is seen by the last min(w, n - j) queries

    def mean_received(part: np.ndarray) -> np.ndarray:
        seen_by = np.minimum(part.shape[1], remaining)
        mean = part.sum(axis=1) / seen_by
        return mean / mean.sum(axis=1, keepdims=True)

    local = attention[:, w - min(local_window, w) :]
    return (1.0 - local_weight) * mean_received(attention) + local_weight * mean_received(local)


def class_slots(
    keys: np.ndarray, scores: np.ndarray, keep: int, coverage: float, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``slots`` (heads, n), the class of every entry: 1..k_h for the kept entries (the class
    centres, in order), for an evicted entry its most key-similar centre if their cosine
    similarity is at least ``threshold``, else 0 (the zero class, dropped); and ``centre``
    (heads, n), True at the centres. Head ``h`` keeps ``k_h`` entries: its highest-scored ones
    until they hold ``coverage`` of its score, at most ``keep``."""
    heads, n, _ = keys.shape
    order = np.argsort(-scores, axis=1, kind="stable")
    if coverage >= 1.0:
        kept_counts = np.full(heads, keep)
    else:
        ranked = np.take_along_axis(scores, order, axis=1)
        share = np.cumsum(ranked, axis=1) / ranked.sum(axis=1, keepdims=True)
        needed = np.array([np.searchsorted(s, coverage - 1e-12) + 1 for s in share])
        kept_counts = np.minimum(np.where(coverage > 0, needed, 0), keep)
    unit = keys / np.maximum(np.linalg.norm(keys, axis=-1, keepdims=True), 1e-12)
    slots = np.zeros((heads, n), dtype=np.int64)
    centre = np.zeros((heads, n), dtype=bool)
    for head in range(heads):
        centres = np.sort(order[head, : kept_counts[head]])
        slots[head, centres] = np.arange(1, len(centres) + 1)
        centre[head, centres] = True
        if not len(centres):
            continue
        evicted = np.flatnonzero(slots[head] == 0)
        similarity = unit[head, evicted] @ unit[head, centres].T  # (evicted, centres)
        best = similarity.argmax(axis=1)
        close = similarity[np.arange(len(evicted)), best] >= threshold
        slots[head, evicted[close]] = best[close] + 1
    return slots, centre


@register_cache_method
@dataclass
class EMS(CacheMethod):
    """Score entries with the Global-Local score; per head keep the best-scored entries as
    class centres and merge every evicted entry into its most key-similar centre (cosine at
    least ``threshold``; score-weighted means of keys and of values), dropping the rest into
    the zero class. All heads run at once by scattering into ``m + 1`` slots per head, slot 0
    being the zero class.

    Open details, chosen here: ``global`` averages over the queries that see an entry and
    ``local`` over the last ``local_window`` queries, mixed by ``local_weight``; a head keeps
    its top entries until they hold ``coverage`` of its score (1.0, the default: always the
    whole budget, a dense cache; less lets sparse heads keep fewer, the rest padding marked in
    ``valid``, and a head at 0 keeps nothing). Given ``CacheInputs.attention`` instead of
    queries, that is taken as the score."""

    name: ClassVar[str] = "ems"
    query_use: ClassVar[QueryUse] = "required"

    local_window: int = 8
    local_weight: float = 0.5
    threshold: float = 0.5
    coverage: float = 1.0

    def __post_init__(self) -> None:
        if self.local_window < 1:
            raise ValueError(f"local_window {self.local_window} must be at least 1")
        if not (0.0 <= self.local_weight <= 1.0 and 0.0 <= self.coverage <= 1.0):
            raise ValueError("local_weight and coverage must be in [0, 1]")

    def scores(self, inputs: CacheInputs) -> np.ndarray:
        """(kv_heads, n) the Global-Local score (or ``inputs.attention``)."""
        if inputs.attention is not None:
            return np.asarray(inputs.attention, dtype=np.float64)
        assert inputs.queries is not None
        return global_local_scores(
            inputs.keys, inputs.queries, self.local_window, self.local_weight
        )

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        scores = self.scores(inputs)
        heads, n, dim = inputs.keys.shape
        slots, centre = class_slots(inputs.keys, scores, keep, self.coverage, self.threshold)
        rows = np.repeat(np.arange(heads), n)
        flat = slots.reshape(-1)
        weight = scores.reshape(-1)
        # sums into (heads, m + 1) classes; class 0 (the zero class) is dropped afterwards
        total = np.zeros((heads, keep + 1))
        scatter_add(total, (rows, flat), weight)
        count = np.zeros((heads, keep + 1))
        scatter_add(count, (rows, flat), np.ones(len(flat)))
        equal = total <= 0  # a class with no score: plain mean
        weight = np.where(equal[rows, flat], 1.0, weight)
        denominator = np.where(equal, count, total)[:, 1:, None]
        merged = []
        for tensor in (inputs.keys, inputs.values):
            sums = np.zeros((heads, keep + 1, dim))
            scatter_add(sums, (rows, flat), weight[:, None] * tensor.reshape(-1, dim))
            with np.errstate(invalid="ignore", divide="ignore"):
                mean = np.where(denominator > 0, sums[:, 1:] / denominator, 0.0)
            merged.append(mean.astype(tensor.dtype))
        valid = count[:, 1:] > 0
        positions = np.full((heads, keep), -1, dtype=np.int64)
        centre_heads, centre_entries = np.nonzero(centre)
        assert inputs.positions is not None
        positions[centre_heads, slots[centre_heads, centre_entries] - 1] = inputs.positions[
            centre_heads, centre_entries
        ]
        return Compressed(keys=merged[0], values=merged[1], positions=positions, valid=valid)
