"""Scratch buffers reused from one tensor to the next.

A fresh tensor's pages are faulted in (and zeroed by the kernel) on first touch: for the large
tensors of a model that costs more than the arithmetic itself (an elementwise op into a fresh
128 MB tensor is several times slower than into a reused one). The streaming engine activates a
:class:`Workspace` for the whole merge; the per-tensor code takes its temporaries from it by slot
name. Outside a merge, :func:`current` hands out a throwaway workspace, so plain function calls
allocate as usual.

Results are never returned in workspace buffers (only temporaries live there), so a tensor a
method returns stays valid after the next tensor is merged.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

_ACTIVE = threading.local()


class Workspace:
    """Flat buffers by ``(slot, device)``, kept as bytes and viewed in the dtype asked for (a
    slot is shared by every dtype; the callers use each slot for one thing at a time), grown to
    the largest size asked for."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[str, torch.device], torch.Tensor] = {}

    def get(
        self, slot: str, numel: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> torch.Tensor:
        """A flat tensor of ``numel`` entries (uninitialized) for ``slot``."""
        key = (slot, torch.device(device))
        size = numel * torch.empty((), dtype=dtype).element_size()
        buf = self._buffers.get(key)
        if buf is None or buf.numel() < size:
            buf = self._buffers[key] = torch.empty(max(size, 8), dtype=torch.uint8, device=device)
        return buf[:size].view(dtype)

    def like(
        self, slot: str, tensor: torch.Tensor, dtype: torch.dtype | None = None
    ) -> torch.Tensor:
        """A flat buffer with ``tensor``'s number of entries and device (and dtype by default)."""
        return self.get(slot, tensor.numel(), dtype or tensor.dtype, tensor.device)

    def clear(self) -> None:
        """Drop every buffer."""
        self._buffers.clear()


def current() -> Workspace:
    """The active workspace, or a fresh throwaway one."""
    return getattr(_ACTIVE, "workspace", None) or Workspace()


@contextmanager
def active(workspace: Workspace | None = None) -> Iterator[Workspace]:
    """Within the block (this thread), :func:`current` returns ``workspace``."""
    workspace = workspace or Workspace()
    previous = getattr(_ACTIVE, "workspace", None)
    _ACTIVE.workspace = workspace
    try:
        yield workspace
    finally:
        _ACTIVE.workspace = previous
        workspace.clear()
