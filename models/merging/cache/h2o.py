"""``h2o``: heavy hitters plus recent entries (Zhang et al. 2023, "H2O: Heavy-Hitter Oracle").
Needs queries or attention scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from splice.models.merging.cache.base import (
    CacheInputs,
    CacheMethod,
    Compressed,
    QueryUse,
    gather,
    heavy_and_recent,
    register_cache_method,
)


@register_cache_method
@dataclass
class H2O(CacheMethod):
    """Keep the most recent ``recent`` share of the budget and fill the rest with the earlier
    entries that received the most attention, per kv head.

    Open detail: the paper accumulates each entry's attention over every decoding step; here
    the score is the attention from the queries given (or ``CacheInputs.attention``, a running
    sum the caller keeps), summed over them with grouped query heads averaged."""

    name: ClassVar[str] = "h2o"
    query_use: ClassVar[QueryUse] = "required"

    recent: float = 0.5

    def __post_init__(self) -> None:
        if not 0.0 <= self.recent <= 1.0:
            raise ValueError(f"recent {self.recent} must be in [0, 1]")

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        scores = inputs.entry_attention()
        assert scores is not None
        return gather(inputs, heavy_and_recent(scores, keep, int(keep * self.recent)))
