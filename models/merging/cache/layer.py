"""One layer's arrays in, compressed arrays out: the one entry the adapters call (serving's
``KVCache.compressed`` and the transformers cache of :mod:`.hf`)."""

from __future__ import annotations

import numpy as np
from splice.models.merging.cache.base import (
    Budget,
    CacheInputs,
    CacheMethod,
    Compressed,
    as_budget,
    resolve_method,
)


def compress_layer(
    keys: np.ndarray,
    values: np.ndarray,
    method: str | CacheMethod,
    budget: Budget | int,
    *,
    queries: np.ndarray | None = None,
    attention: np.ndarray | None = None,
    positions: np.ndarray | None = None,
    layer: int = 0,
    dense: bool = True,
) -> Compressed:
    """Compress one layer of one sequence: ``keys``/``values`` (1, kv_heads, n, head_dim) as a
    model holds them (batch 1), ``queries`` (1, q_heads, w, head_dim) the last ``w``
    positions' queries, RoPE applied, or None; ``attention`` (kv_heads, n) or None (see
    :class:`~.base.CacheInputs`). The result's arrays have no batch axis.

    ``dense``: raise ValueError when the method leaves padding (a head-wise method keeping
    fewer entries in some heads): an attention mask per entry, as serving and transformers
    have, cannot hide an entry in one head only."""
    if keys.ndim != 4 or keys.shape[0] != 1:
        raise ValueError(f"keys {keys.shape} are not (1, kv_heads, n, head_dim)")
    if queries is not None and (queries.ndim != 4 or queries.shape[0] != 1):
        raise ValueError(f"queries {queries.shape} are not (1, q_heads, w, head_dim)")
    inputs = CacheInputs(
        keys=keys[0],
        values=values[0],
        queries=None if queries is None else queries[0],
        attention=attention,
        positions=positions,
        layer=layer,
    )
    out = resolve_method(method)(inputs, as_budget(budget))
    if dense and not out.dense:
        raise ValueError(
            f"cache method {resolve_method(method).name!r} left padded entries in some heads; "
            "a per-entry attention mask cannot express them (use a dense setting)"
        )
    return out
