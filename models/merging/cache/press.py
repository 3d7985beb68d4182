"""The KV-cache methods as kvpress-style presses: ``with CachePress(method, budget)(model):
model(prefill)`` compresses every layer's cache once, after the prefill, through
:func:`~splice.models.merging.cache.layer.compress_layer` (the core :mod:`.hf` and serving use).

Imports torch (and kvpress when it is installed); the package ``__init__`` does not import this
module. When ``kvpress`` is importable, :class:`CachePress` subclasses its ``BasePress``, so
kvpress's pipeline and wrappers take it where they take a press: it has kvpress's
``compression_ratio`` (the fraction of entries removed), ``compress(module, hidden_states,
keys, values, attentions, kwargs) -> (keys, values)``, ``forward_hook`` and
``post_init_from_model``. Without kvpress it works the same on its own.

The hook runs after each attention module's forward (transformers 5.2 or later: the cache
arrives as ``past_key_values`` or ``cache``): on a prefill (the layer's cache holds exactly the
tokens of this forward) it replaces the layer's keys and values with the compressed ones. As in
kvpress, the prefill itself attends the full cache; the following steps see the compressed one,
and a caller that continues must give the true positions (``position_ids``) and a mask that
covers the stored entries, since a plain ``DynamicCache`` then reports the stored length as the
tokens seen.

Methods that read queries get those of the last ``query_window`` prefill tokens: the query
projection of the attention module's input (and ``q_norm`` where the model has one) with the
rotary embedding applied, as :mod:`.hf` records them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from splice.models.merging.cache.base import Budget, CacheMethod, as_budget, resolve_method
from splice.models.merging.cache.hf import window_queries
from splice.models.merging.cache.layer import compress_layer

try:  # kvpress's press protocol, when installed (its own venv: it pins transformers < 5.3)
    from kvpress import BasePress as _PressBase
except ImportError:  # pragma: no cover - depends on the environment
    _PressBase = object  # type: ignore[assignment,misc]


class CachePress(_PressBase):  # type: ignore[misc,valid-type]
    """A registered cache method (a name with ``params``, or an instance) applied at prefill to
    ``budget`` (a :class:`~.base.Budget`, a number of entries, or None for
    ``compression_ratio``): a kvpress-compatible press (module doc).

    After a prefill, ``positions[layer]`` (batch, kv_heads, kept) is the position each kept
    entry stands for and ``compress_seconds`` the time spent compressing (all layers)."""

    def __init__(
        self,
        method: str | CacheMethod,
        budget: Budget | int | None = None,
        *,
        compression_ratio: float | None = None,
        query_window: int = 64,
        **params: Any,
    ) -> None:
        if (budget is None) == (compression_ratio is None):
            raise ValueError("give a budget or a compression_ratio (exactly one)")
        if query_window < 1:
            raise ValueError("query_window must be at least 1")
        self.method = resolve_method(method, **params)
        self.budget = (
            as_budget(budget)
            if budget is not None
            else Budget.from_compression_ratio(float(compression_ratio))  # type: ignore[arg-type]
        )
        self.query_window = query_window
        self.positions: dict[int, np.ndarray] = {}
        self.compress_seconds = 0.0
        self._last_length = 0

    # kvpress's BasePress is a dataclass without fields: its __eq__ would make all presses equal
    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        return f"CachePress({self.method!r}, {self.budget!r})"

    @property
    def compression_ratio(self) -> float:
        """kvpress's meaning: the fraction of entries removed (``1 - keep_ratio``). A budget of
        a fixed number of entries has no fixed ratio: 0.0 until a prefill, then the fraction
        the last prefill removed."""
        if self.budget.keep_ratio is not None:
            return 1.0 - self.budget.keep_ratio
        if not self.positions:
            return 0.0
        kept = next(iter(self.positions.values())).shape[-1]
        return 1.0 - kept / self._last_length

    @compression_ratio.setter
    def compression_ratio(self, value: float) -> None:
        self.budget = Budget.from_compression_ratio(value)

    def post_init_from_model(self, model: torch.nn.Module) -> None:
        """Nothing to read from the model (kvpress calls this on entering the context)."""

    def compress(
        self,
        module: torch.nn.Module,
        hidden_states: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        attentions: torch.Tensor | None,
        kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """kvpress's signature: ``keys``/``values`` (batch, kv_heads, n, head_dim) of one layer
        after a prefill of ``hidden_states`` (batch, n, hidden) in, compressed ones out."""
        start = time.perf_counter()
        layer = int(getattr(module, "layer_idx", 0))
        queries = None
        if self.method.query_use != "never":
            embeddings = kwargs.get("position_embeddings")
            if embeddings is None:
                raise ValueError(f"{self.method.name!r} needs queries: no position_embeddings")
            queries = window_queries(module, hidden_states, embeddings, self.query_window)
            queries = queries.cpu().numpy()
        device, dtype = keys.device, keys.dtype
        key_rows = keys.detach().to("cpu", torch.float32).numpy()
        value_rows = values.detach().to("cpu", torch.float32).numpy()
        rows = [
            compress_layer(
                key_rows[b : b + 1],
                value_rows[b : b + 1],
                self.method,
                self.budget,
                queries=None if queries is None else queries[b : b + 1],
                layer=layer,
            )
            for b in range(key_rows.shape[0])
        ]
        self.positions[layer] = np.stack([r.positions for r in rows])
        self._last_length = keys.shape[2]
        out_keys = torch.from_numpy(np.stack([r.keys for r in rows])).to(device, dtype)
        out_values = torch.from_numpy(np.stack([r.values for r in rows])).to(device, dtype)
        self.compress_seconds += time.perf_counter() - start
        return out_keys.contiguous(), out_values.contiguous()

    def forward_hook(
        self,
        module: torch.nn.Module,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        output: Any,
    ) -> Any:
        """After an attention module's forward: compress its layer's cache on a prefill."""
        hidden_states = kwargs.get("hidden_states", args[0] if args else None)
        cache = kwargs.get("past_key_values", kwargs.get("cache"))
        if hidden_states is None or cache is None:
            return output
        cache_layer = cache.layers[module.layer_idx]
        keys, values = cache_layer.keys, cache_layer.values
        if keys is None or keys.dim() != 4 or keys.shape[2] != hidden_states.shape[1]:
            return output  # not a prefill: the cache held entries before this forward
        attentions = output[1] if isinstance(output, tuple) and len(output) > 1 else None
        keys, values = self.compress(module, hidden_states, keys, values, attentions, kwargs)
        cache_layer.keys, cache_layer.values = keys, values
        return output

    @contextlib.contextmanager
    def __call__(self, model: torch.nn.Module) -> Iterator[None]:
        """Compress at prefill while inside: hooks on every attention module with ``q_proj``
        and ``layer_idx`` (removed on leaving)."""
        self.post_init_from_model(model)
        self.positions = {}
        self.compress_seconds = 0.0
        hooks = [
            module.register_forward_hook(self.forward_hook, with_kwargs=True)
            for module in model.modules()
            if hasattr(module, "q_proj") and isinstance(getattr(module, "layer_idx", None), int)
        ]
        if not hooks:
            raise ValueError("the model has no attention module with q_proj and layer_idx")
        try:
            yield
        finally:
            for hook in hooks:
                hook.remove()
