"""Shared input handling for the methods that compute in their inputs' dtype (as mergekit does)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def common_dtype(tensors: Sequence[torch.Tensor]) -> torch.dtype:
    """The promoted dtype of ``tensors`` (float32 and bfloat16 give float32)."""
    dtype = tensors[0].dtype
    for tensor in tensors[1:]:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def aligned(
    tensors: Sequence[torch.Tensor], base: torch.Tensor | None = None
) -> tuple[list[torch.Tensor], torch.Tensor | None]:
    """``tensors`` and ``base`` in their common dtype (no copy where already there)."""
    every = [*tensors, *([base] if base is not None else [])]
    if not every:
        return [], base
    dtype = common_dtype(every)
    out = [t.to(dtype) for t in tensors]
    return out, (base.to(dtype) if base is not None else None)
