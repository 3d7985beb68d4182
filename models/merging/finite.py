"""Finding NaN and Inf values in the tensors a merge reads and writes.

A NaN in one input spreads through every merge method without an error; :class:`NonFiniteLog`
collects, per tensor, how many non-finite values each input and the result held, and words them
as one warning line per tensor (the first :data:`SHOWN`, then a count of the rest).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import torch

#: Tensors named one by one in the warnings; the rest are counted.
SHOWN = 20


def count_nonfinite(tensor: torch.Tensor) -> int:
    """How many entries of ``tensor`` are NaN or infinite (0 for integer tensors).

    One sum first (no temporary tensor): a finite sum means every entry is finite.
    """
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return 0
    if tensor.dtype.itemsize == 1:  # float8: no sum kernel
        tensor = tensor.float()
    acc = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    if bool(torch.isfinite(tensor.sum(dtype=acc))):
        return 0
    return int(tensor.numel() - int(torch.isfinite(tensor).sum()))


class NonFiniteLog:
    """Non-finite counts by tensor and by where they were found (thread-safe)."""

    def __init__(self) -> None:
        self._found: dict[str, dict[str, int]] = {}
        self._lock = threading.Lock()

    def check(self, name: str, where: str, tensor: torch.Tensor) -> None:
        """Count the non-finite values of ``tensor`` (input ``where`` of tensor ``name``)."""
        count = count_nonfinite(tensor)
        if count:
            with self._lock:
                self._found.setdefault(name, {})[where] = count

    def __bool__(self) -> bool:
        return bool(self._found)

    def lines(self, order: Sequence[str] | None = None) -> list[str]:
        """One line per tensor (in ``order`` when given), at most :data:`SHOWN`, then a count."""
        with self._lock:
            found = dict(self._found)
        names = [n for n in order if n in found] if order is not None else []
        seen = set(names)
        names += [n for n in found if n not in seen]
        out = []
        for name in names[:SHOWN]:
            parts = ", ".join(f"{count} in {where}" for where, count in found[name].items())
            out.append(f"tensor {name}: non-finite values (NaN/Inf): {parts}")
        if len(names) > SHOWN:
            out.append(f"non-finite values (NaN/Inf) in {len(names) - SHOWN} more tensors")
        return out
