"""``kvmerger``: merge runs of consecutive entries with similar keys into one (Wang et al. 2024,
"Model Tells You Where to Merge: Adaptive KV Cache Merging for LLMs on Long-Context Tasks").
Keys only, or keys and queries/attention when given."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from splice.models.merging.cache.base import (
    CacheInputs,
    CacheMethod,
    Compressed,
    QueryUse,
    register_cache_method,
    scatter_add,
    top_entries,
)


@dataclass
class MergingSets:
    """One head's plan: ``group`` (n,) the output entry each input entry goes to (-1: evicted),
    ``pivots`` (m,) the input entry each output entry stands for, in order."""

    group: np.ndarray
    pivots: np.ndarray


def key_similarity(keys: np.ndarray) -> np.ndarray:
    """(n - 1,) cosine similarity of each key (n, d) with the next one."""
    unit = keys / np.maximum(np.linalg.norm(keys, axis=-1, keepdims=True), 1e-12)
    return (unit[:-1] * unit[1:]).sum(axis=-1)


def merging_sets(
    keys: np.ndarray,
    scores: np.ndarray | None,
    keep: int,
    *,
    recent: int,
    heavy: int,
    threshold: float,
) -> MergingSets:
    """Plan one head's merge of ``keys`` (n, d) into ``keep`` entries (module doc of
    :class:`KVMerger`): ``scores`` (n,) is each entry's aggregated attention, or None."""
    n = keys.shape[0]
    protected = np.zeros(n, dtype=bool)
    protected[n - recent :] = True
    if heavy:
        if scores is not None:
            protected[top_entries(scores[None], heavy, ~protected)[0]] = True
        else:  # key-only: the first entries, the attention sinks
            protected[:heavy] = True
    free = ~protected
    slots = keep - int(protected.sum())
    excess = int(free.sum()) - slots  # entries that must go (merged or evicted)
    # Link consecutive free entries whose keys are similar, the most similar first, only as many
    # links as the budget needs: each accepted link removes one entry.
    similarity = key_similarity(keys)
    candidates = np.flatnonzero(free[:-1] & free[1:] & (similarity >= threshold))
    candidates = candidates[np.argsort(-similarity[candidates], kind="stable")][:excess]
    linked = np.zeros(n - 1, dtype=bool)
    linked[candidates] = True
    starts = np.ones(n, dtype=bool)
    starts[1:] = ~linked
    group = np.cumsum(starts) - 1  # (n,) a set is a run of linked entries
    groups = int(group[-1]) + 1
    alive = np.ones(groups, dtype=bool)
    if groups > keep:  # too few similar neighbours: evict the weakest free sets
        free_sets = np.unique(group[free])
        if scores is not None:
            weight = np.bincount(group, weights=scores, minlength=groups)[free_sets]
        else:  # key-only: the oldest go first
            weight = free_sets.astype(np.float64)
        alive[free_sets[np.argsort(weight, kind="stable")[: groups - keep]]] = False
    renumber = np.cumsum(alive) - 1
    group = np.where(alive[group], renumber[group], -1)
    # The pivot: the member with the most attention, else the most recent member.
    members = np.flatnonzero(group >= 0)
    if scores is not None:
        order = np.lexsort((-scores[members], group[members]))
        firsts = np.r_[True, np.diff(group[members][order]) != 0]
        pivots = members[order][firsts]
    else:
        lasts = np.r_[np.diff(group[members]) != 0, True]
        pivots = members[lasts]
    return MergingSets(group=group, pivots=pivots)


def gaussian_weights(keys: np.ndarray, plan: MergingSets, sigma: float) -> np.ndarray:
    """(n,) each entry's weight in its set: ``exp(-|k - k_pivot|^2 / (2 sigma^2))`` normalised
    over the set; 0 for evicted entries."""
    weights = np.zeros(keys.shape[0])
    members = np.flatnonzero(plan.group >= 0)
    target = plan.group[members]
    distance = ((keys[members] - keys[plan.pivots[target]]) ** 2).sum(axis=-1)
    raw = np.exp(-distance / (2.0 * sigma**2))  # the pivot's own is 1, so no set sums to 0
    total = np.bincount(target, weights=raw, minlength=len(plan.pivots))
    weights[members] = raw / total[target]
    return weights


@register_cache_method
@dataclass
class KVMerger(CacheMethod):
    """Per head: protect the most recent ``recent`` share of the budget (at least the newest
    entry) and the highest-attention ``heavy`` share; link consecutive unprotected entries
    whose keys have cosine similarity at least ``threshold``; merge each run of links (a
    merging set) into its pivot, keys and values alike, with Gaussian-kernel weights over the
    key distance to the pivot (``sigma``).

    Open details, chosen here: the paper fixes the threshold and lets the cache size follow;
    here the size is the budget, so links are accepted from the most similar down (never below
    ``threshold``) until the budget is met; when the similar links are too few, the sets with
    the least aggregated attention are evicted. Without queries or attention (serving), the
    ``heavy`` share protects the first entries (attention sinks), the oldest sets are evicted
    first and a set's pivot is its most recent member."""

    name: ClassVar[str] = "kvmerger"
    query_use: ClassVar[QueryUse] = "optional"

    threshold: float = 0.75
    sigma: float = 5.0
    recent: float = 0.1
    heavy: float = 0.1

    def __post_init__(self) -> None:
        if self.sigma <= 0:
            raise ValueError(f"sigma {self.sigma} must be positive")
        if not (0.0 <= self.recent <= 1.0 and 0.0 <= self.heavy <= 1.0):
            raise ValueError("recent and heavy are shares of the budget, in [0, 1]")

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        scores = inputs.entry_attention()
        recent = min(keep, max(1, int(keep * self.recent)))
        heavy = min(keep - recent, int(keep * self.heavy))
        heads, _, dim = inputs.keys.shape
        keys = np.zeros((heads, keep, dim))
        values = np.zeros((heads, keep, dim))
        positions = np.zeros((heads, keep), dtype=np.int64)
        for head in range(heads):
            head_keys = inputs.keys[head].astype(np.float64)
            plan = merging_sets(
                head_keys,
                None if scores is None else scores[head],
                keep,
                recent=recent,
                heavy=heavy,
                threshold=self.threshold,
            )
            weights = gaussian_weights(head_keys, plan, self.sigma)
            members = np.flatnonzero(plan.group >= 0)
            # (members, d) weighted rows summed into their set's output entry
            scatter_add(
                keys[head], (plan.group[members],), weights[members, None] * head_keys[members]
            )
            scatter_add(
                values[head],
                (plan.group[members],),
                weights[members, None] * inputs.values[head, members].astype(np.float64),
            )
            assert inputs.positions is not None
            positions[head] = inputs.positions[head, plan.pivots]
        return Compressed(
            keys=keys.astype(inputs.keys.dtype),
            values=values.astype(inputs.values.dtype),
            positions=positions,
        )
