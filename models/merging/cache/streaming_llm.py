"""``streaming_llm``: the first entries (attention sinks) and the most recent ones (Xiao et al.
2023, "Efficient Streaming Language Models with Attention Sinks"). Keys only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from splice.models.merging.cache.base import (
    CacheInputs,
    CacheMethod,
    Compressed,
    QueryUse,
    gather,
    register_cache_method,
)


@register_cache_method
@dataclass
class StreamingLLM(CacheMethod):
    """Keep ``sinks`` first entries and fill the rest of the budget with the most recent ones.

    Open detail: a budget of ``sinks`` entries or fewer keeps ``budget - 1`` sinks, so the
    newest entry always stays."""

    name: ClassVar[str] = "streaming_llm"
    query_use: ClassVar[QueryUse] = "never"

    sinks: int = 4

    def __post_init__(self) -> None:
        if self.sinks < 0:
            raise ValueError(f"sinks {self.sinks} must be at least 0")

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        n = inputs.length
        sinks = min(self.sinks, keep - 1)
        index = np.concatenate([np.arange(sinks), np.arange(n - (keep - sinks), n)])
        return gather(inputs, np.broadcast_to(index, (inputs.heads, keep)))
