"""``random``: a uniformly random subset of the entries per head (the baseline every scored
method should beat). Keys only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from splice.models.merging.cache.base import (
    CacheInputs,
    CacheMethod,
    Compressed,
    QueryUse,
    draws,
    gather,
    register_cache_method,
    top_entries,
)


@register_cache_method
@dataclass
class RandomEviction(CacheMethod):
    """Keep a random ``budget`` entries of each head, in their order.

    Deterministic: the draws come from ``seed``, the layer and the cache's shape, so the same
    input gives the same cache in every adapter."""

    name: ClassVar[str] = "random"
    query_use: ClassVar[QueryUse] = "never"

    seed: int = 0

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        scores = draws(self.seed, inputs.layer, (inputs.heads, inputs.length))
        return gather(inputs, top_entries(scores, keep))
