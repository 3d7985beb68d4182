"""The KV-cache methods as a transformers cache (transformers 5): pass a
:class:`CompressedCache` to ``model.generate(..., past_key_values=cache)`` (or ``cache=``) of
any RoPE decoder transformers loads (Llama, Mistral, Qwen2/3).

Each layer (:class:`CompressedLayer`, a ``DynamicLayer``) compresses its keys and values with
:func:`~splice.models.merging.cache.layer.compress_layer` whenever it holds more than the
budget of the tokens it has seen: after a prompt (any step of more than one token) and, while
generating, once ``interval`` tokens have come since the last compression. The step that
triggers a compression still attends every entry (the mask was sized before it); the next one
sees the compressed cache. Compression runs on numpy: the tensors are copied to the CPU as
float32 and back to their device and dtype (on a GPU that is a round trip per compression).

Positions stay true: ``get_seq_length`` is the number of tokens seen, which transformers uses
for the new tokens' positions, while ``get_mask_sizes`` gives the stored length with the offset
of the missing entries, so the causal mask lines up with what is stored (as transformers'
sliding-window layer does). Batch size 1 is exact; rows of a batch are compressed one by one,
and a left-padded batch's padding is not told apart from tokens.

Methods that read queries get them from forward pre-hooks on the model's attention modules
(``CompressedCache(..., model=model)``): the query projection (and ``q_norm`` where the model
has one) with the rotary embedding applied, as Llama, Mistral and Qwen2/3 compute them; the
last ``query_window`` queries since the previous compression are kept. Remove the hooks with
:meth:`CompressedCache.close` (or use the cache as a context manager).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from splice.models.merging.cache.base import Budget, CacheMethod, as_budget, resolve_method
from splice.models.merging.cache.layer import compress_layer
from transformers.cache_utils import Cache, DynamicLayer


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def window_queries(
    module: torch.nn.Module,
    hidden_states: torch.Tensor,
    position_embeddings: tuple[torch.Tensor, torch.Tensor],
    window: int,
) -> torch.Tensor:
    """(batch, q_heads, w, head_dim) float32: the queries of the last ``w <= window`` positions
    of ``hidden_states`` (batch, n, hidden), RoPE applied with ``position_embeddings``."""
    w = min(window, hidden_states.shape[1])
    hidden = hidden_states[:, -w:]
    cos, sin = (t[:, -w:].unsqueeze(1) for t in position_embeddings)
    with torch.no_grad():
        # (batch, w, q_heads * d) -> (batch, w, q_heads, d)
        queries = module.q_proj(hidden).view(*hidden.shape[:-1], -1, module.head_dim)
        norm = getattr(module, "q_norm", None)
        if norm is not None:
            queries = norm(queries)
        queries = queries.transpose(1, 2)  # (batch, q_heads, w, d)
        queries = queries * cos + _rotate_half(queries) * sin
    return queries.float()


class CompressedLayer(DynamicLayer):
    """One layer's cache, compressed to ``budget`` of the tokens seen (module doc)."""

    is_croppable = False

    def __init__(
        self,
        method: CacheMethod,
        budget: Budget,
        *,
        interval: int = 1,
        query_window: int = 64,
        index: int = 0,
    ) -> None:
        super().__init__()
        self.method = method
        self.budget = budget
        self.interval = interval
        self.query_window = query_window
        self.index = index
        self.seen = 0  # tokens read, the next token's position
        self.since = 0  # tokens read since the last compression
        #: (batch, kv_heads, stored) the position each stored entry stands for
        self.positions: np.ndarray | None = None
        #: (batch, q_heads, w, head_dim) float32 queries of the last tokens since compressing
        self.queries: list[torch.Tensor] = []
        self.compressions = 0

    @property
    def stored(self) -> int:
        """Entries held (at most the tokens seen)."""
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            return 0
        return self.keys.shape[-2]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = super().update(key_states, value_states, *args, **kwargs)
        batch, heads, new, _ = key_states.shape
        fresh = np.broadcast_to(np.arange(self.seen, self.seen + new), (batch, heads, new))
        self.positions = (
            fresh.copy() if self.positions is None else np.concatenate([self.positions, fresh], 2)
        )
        self.seen += new
        self.since += new
        if self.stored > self.budget.size(self.seen) and (new > 1 or self.since >= self.interval):
            self.compress()
        return keys, values  # this step attends all of them: its mask was sized before

    def add_queries(self, queries: torch.Tensor) -> None:
        """Record the queries (batch, q_heads, w, head_dim) of the tokens being read."""
        self.queries.append(queries.detach().float())
        kept, total = [], 0
        for chunk in reversed(self.queries):  # keep the last ``query_window`` of them
            take = min(chunk.shape[2], self.query_window - total)
            if take <= 0:
                break
            kept.append(chunk[:, :, chunk.shape[2] - take :])
            total += take
        self.queries = kept[::-1]

    def compress(self) -> None:
        """Compress the stored entries to the budget of the tokens seen (module doc)."""
        target = self.budget.size(self.seen)
        queries = None
        if self.queries:
            # only queries of entries still stored as the last ones: at most ``since`` of them
            queries = torch.cat(self.queries, dim=2)[:, :, -min(self.since, self.stored) :]
            queries = queries.cpu().numpy()
        elif self.method.query_use == "required":
            raise ValueError(
                f"cache method {self.method.name!r} needs queries: "
                "pass model= to CompressedCache so it records them"
            )
        device, dtype = self.keys.device, self.keys.dtype
        keys = self.keys.detach().to("cpu", torch.float32).numpy()
        values = self.values.detach().to("cpu", torch.float32).numpy()
        assert self.positions is not None
        rows = [
            compress_layer(
                keys[b : b + 1],
                values[b : b + 1],
                self.method,
                target,
                queries=None if queries is None else queries[b : b + 1],
                positions=self.positions[b],
                layer=self.index,
            )
            for b in range(keys.shape[0])
        ]
        self.keys = torch.from_numpy(np.stack([r.keys for r in rows])).to(device, dtype)
        self.values = torch.from_numpy(np.stack([r.values for r in rows])).to(device, dtype)
        self.positions = np.stack([r.positions for r in rows])
        self.queries = []
        self.since = 0
        self.compressions += 1

    def get_seq_length(self) -> int:
        """The tokens seen (the next token's position), not the entries stored."""
        return self.seen

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        """The stored entries plus the new tokens, offset by the entries no longer stored."""
        return self.stored + query_length, self.seen - self.stored

    def reset(self) -> None:
        super().reset()
        self.seen = self.since = 0
        self.positions = None
        self.queries = []

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a compressed cache cannot be cropped back")

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        super().reorder_cache(beam_idx)
        self._select_rows(beam_idx)

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._select_rows(indices)

    def batch_repeat_interleave(self, repeats: int) -> None:
        super().batch_repeat_interleave(repeats)
        if self.positions is not None:
            self.positions = np.repeat(self.positions, repeats, axis=0)
        self.queries = [q.repeat_interleave(repeats, dim=0) for q in self.queries]

    def _select_rows(self, rows: torch.Tensor) -> None:
        if self.positions is not None:
            self.positions = self.positions[rows.cpu().numpy()]
        self.queries = [q[rows.to(q.device)] for q in self.queries]


class CompressedCache(Cache):
    """A transformers cache whose layers compress with ``method`` (a name and its ``params``,
    or an instance) to ``budget`` (a :class:`~.base.Budget` or a number of entries) of the
    tokens seen; ``model``: record its queries for the methods that read them (module doc)."""

    def __init__(
        self,
        method: str | CacheMethod,
        budget: Budget | int,
        *,
        interval: int = 1,
        query_window: int = 64,
        model: torch.nn.Module | None = None,
        **params: Any,
    ) -> None:
        if interval < 1 or query_window < 1:
            raise ValueError("interval and query_window must be at least 1")
        self.method = resolve_method(method, **params)
        self.budget = as_budget(budget)
        self.interval = interval
        self.query_window = query_window
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        super().__init__(layer_class_to_replicate=self._new_layer)  # type: ignore[arg-type]
        if model is not None:
            self.attach(model)

    def _new_layer(self) -> CompressedLayer:
        return CompressedLayer(
            self.method,
            self.budget,
            interval=self.interval,
            query_window=self.query_window,
            index=len(self.layers),
        )

    def _layer(self, index: int) -> CompressedLayer:
        while len(self.layers) <= index:
            self.layers.append(self._new_layer())
        layer = self.layers[index]
        assert isinstance(layer, CompressedLayer)
        return layer

    def attach(self, model: torch.nn.Module) -> None:
        """Record the queries of ``model``'s attention modules (those with ``q_proj``,
        ``head_dim`` and ``layer_idx``)."""
        for module in model.modules():
            index = getattr(module, "layer_idx", None)
            if hasattr(module, "q_proj") and hasattr(module, "head_dim") and isinstance(index, int):
                hook = functools.partial(self._capture, index)
                self._hooks.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        if not self._hooks:
            raise ValueError("the model has no attention module with q_proj and layer_idx")

    def close(self) -> None:
        """Remove the hooks :meth:`attach` added."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    def __enter__(self) -> CompressedCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _capture(
        self, index: int, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        hidden = kwargs.get("hidden_states", args[0] if args else None)
        embeddings = kwargs.get("position_embeddings", args[1] if len(args) > 1 else None)
        if hidden is None or embeddings is None:
            return
        queries = window_queries(module, hidden, embeddings, self.query_window)
        self._layer(index).add_queries(queries)

    def stored_length(self, layer_idx: int = 0) -> int:
        """Entries layer ``layer_idx`` holds (``get_seq_length`` is the tokens seen)."""
        return self._layer(layer_idx).stored if layer_idx < len(self.layers) else 0

    def positions(self, layer_idx: int = 0) -> np.ndarray | None:
        """(batch, kv_heads, stored) the position each stored entry of a layer stands for."""
        return self._layer(layer_idx).positions if layer_idx < len(self.layers) else None
