"""What every KV-cache method shares: the budget, the inputs and result, attention statistics,
the base class and the registry.

Numpy only (the serving path imports this without torch). One layer of one sequence at a time:
``keys``/``values`` (kv_heads, n, head_dim) with RoPE already applied to the keys, as a
transformers cache or the ONNX graph stores them; ``queries`` (q_heads, w, head_dim), RoPE
applied, the queries of the last ``w`` entries of the same sequence; grouped-query heads are
ordered as transformers' ``repeat_kv`` does (query head ``j`` reads kv head ``j // group``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np

#: What a method reads besides keys and values: ``never`` (keys only), ``optional`` (queries
#: or attention when given, else a key-only fallback), ``required`` (raises without them).
QueryUse = Literal["never", "optional", "required"]

#: Every registered method, by name.
CACHE_METHODS: dict[str, type[CacheMethod]] = {}


@dataclass(frozen=True)
class Budget:
    """How many entries a layer keeps: ``keep_ratio`` of them or a fixed number of ``entries``."""

    keep_ratio: float | None = None
    entries: int | None = None

    def __post_init__(self) -> None:
        if (self.keep_ratio is None) == (self.entries is None):
            raise ValueError("a budget is a keep_ratio or a number of entries (exactly one)")
        if self.keep_ratio is not None and not 0.0 < self.keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio {self.keep_ratio} must be in (0, 1]")
        if self.entries is not None and self.entries < 1:
            raise ValueError(f"entries {self.entries} must be at least 1")

    @classmethod
    def from_compression_ratio(cls, compression_ratio: float) -> Budget:
        """kvpress's meaning: ``compression_ratio`` is the fraction of entries removed."""
        if not 0.0 <= compression_ratio < 1.0:
            raise ValueError(f"compression_ratio {compression_ratio} must be in [0, 1)")
        return cls(keep_ratio=1.0 - compression_ratio)

    def size(self, n: int) -> int:
        """Entries kept out of ``n``: never more than ``n``, at least 1 (0 when ``n`` is 0).
        A ratio rounds down as kvpress does (``int(n * (1 - compression_ratio))``)."""
        if n <= 0:
            return 0
        if self.entries is not None:
            kept = self.entries
        else:
            assert self.keep_ratio is not None
            kept = math.floor(n * self.keep_ratio)  # the same float product as kvpress
        return max(1, min(n, kept))


def as_budget(budget: Budget | int) -> Budget:
    """``budget`` itself, or a number of entries."""
    return budget if isinstance(budget, Budget) else Budget(entries=int(budget))


@dataclass
class CacheInputs:
    """One layer's cache of one sequence and what a method may read about it.

    ``attention`` (kv_heads, n): attention each entry received, aggregated by the caller (for
    example a running sum kept across decoding steps); when given, methods read it instead of
    computing it from ``queries``. ``positions`` (n,) or (kv_heads, n): the original position
    each entry stands for (default ``0..n-1``); reported, never used to re-rotate keys.
    ``layer`` seeds the random draws, so each layer draws differently but reproducibly.
    """

    keys: np.ndarray
    values: np.ndarray
    queries: np.ndarray | None = None
    attention: np.ndarray | None = None
    positions: np.ndarray | None = None
    layer: int = 0

    def __post_init__(self) -> None:
        if self.keys.ndim != 3 or self.keys.shape != self.values.shape:
            raise ValueError(
                f"keys {self.keys.shape} and values {self.values.shape} must both be "
                "(kv_heads, n, head_dim)"
            )
        heads, n, dim = self.keys.shape
        if self.queries is not None:
            if self.queries.ndim != 3 or self.queries.shape[2] != dim:
                raise ValueError(f"queries {self.queries.shape} are not (q_heads, w, {dim})")
            if self.queries.shape[0] % heads:
                raise ValueError(f"{self.queries.shape[0]} query heads for {heads} kv heads")
            if self.queries.shape[1] > n:
                raise ValueError(f"{self.queries.shape[1]} queries for {n} entries")
        if self.attention is not None and self.attention.shape != (heads, n):
            raise ValueError(f"attention {self.attention.shape} is not ({heads}, {n})")
        if self.positions is None:
            self.positions = np.arange(n, dtype=np.int64)
        positions = np.asarray(self.positions, dtype=np.int64)
        if positions.shape not in ((n,), (heads, n)):
            raise ValueError(f"positions {positions.shape} are not ({n},) or ({heads}, {n})")
        self.positions = np.broadcast_to(positions, (heads, n))

    @property
    def heads(self) -> int:
        return self.keys.shape[0]

    @property
    def length(self) -> int:
        return self.keys.shape[1]

    def has_attention(self) -> bool:
        return self.attention is not None or self.queries is not None

    def entry_attention(self) -> np.ndarray | None:
        """(kv_heads, n) float64: ``attention`` if given, else the attention each entry
        received from the queries, summed over them (causal; grouped heads averaged); None
        without either."""
        if self.attention is not None:
            return np.asarray(self.attention, dtype=np.float64)
        if self.queries is None:
            return None
        return attention_scores(self.keys, self.queries).sum(axis=1)


@dataclass
class Compressed:
    """A compressed layer: ``keys``/``values`` (kv_heads, m, head_dim) with ``m`` the budget;
    ``positions`` (kv_heads, m) the original position each entry stands for (a merged entry:
    its pivot's; padding: -1); ``valid`` (kv_heads, m) False at padding, None when every head
    fills all ``m`` entries (dense)."""

    keys: np.ndarray
    values: np.ndarray
    positions: np.ndarray
    valid: np.ndarray | None = None

    @property
    def size(self) -> int:
        return self.keys.shape[1]

    @property
    def dense(self) -> bool:
        return self.valid is None or bool(self.valid.all())


def attention_scores(
    keys: np.ndarray,
    queries: np.ndarray,
    *,
    causal: bool = True,
    group: Literal["mean", "sum"] = "mean",
    scale: float | None = None,
) -> np.ndarray:
    """Softmax attention (kv_heads, w, n), float64, of ``queries`` (q_heads, w, d) over
    ``keys`` (kv_heads, n, d), the query heads sharing a kv head averaged (or summed).

    ``causal``: the queries are those of the last ``w`` of the ``n`` entries, so query ``i``
    sees entries ``0 .. n - w + i``. ``scale`` defaults to ``1 / sqrt(d)``."""
    heads, n, dim = keys.shape
    q_heads, w, _ = queries.shape
    if q_heads % heads:
        raise ValueError(f"{q_heads} query heads for {heads} kv heads")
    group_size = q_heads // heads
    # (q_heads, w, d) -> (kv_heads, group, w, d): query head j reads kv head j // group_size
    grouped = queries.astype(np.float64).reshape(heads, group_size, w, dim)
    logits = grouped @ keys.astype(np.float64).transpose(0, 2, 1)[:, None]  # BLAS, not einsum
    logits *= (1.0 / math.sqrt(dim)) if scale is None else scale
    if causal:
        if w > n:
            raise ValueError(f"{w} causal queries for {n} entries")
        # every query sees the first n - w entries; of the last w, query i sees 0 .. i
        logits[..., n - w :][..., np.triu(np.ones((w, w), dtype=bool), k=1)] = -np.inf
    logits -= logits.max(axis=-1, keepdims=True)
    probs = np.exp(logits, out=logits)
    probs /= probs.sum(axis=-1, keepdims=True)
    return probs.mean(axis=1) if group == "mean" else probs.sum(axis=1)


def scatter_add(target: np.ndarray, index: tuple[np.ndarray, ...], rows: np.ndarray) -> None:
    """``target[index] += rows`` with repeated indices summed, as ``np.add.at`` does (several
    times faster: one sort and one ``np.add.reduceat``). ``index`` addresses the leading axes of
    the C-contiguous ``target`` (its arrays broadcast together); ``rows`` broadcasts to the
    index's shape followed by the remaining axes of ``target``."""
    if not target.flags.c_contiguous:
        raise ValueError("scatter_add writes into a C-contiguous array")
    lead, tail = target.shape[: len(index)], target.shape[len(index) :]
    index = tuple(np.broadcast_arrays(*index))
    flat = np.ravel_multi_index(index, lead).reshape(-1)
    if not len(flat):
        return
    rows = np.broadcast_to(rows, (*index[0].shape, *tail)).reshape(len(flat), *tail)
    order = np.argsort(flat, kind="stable")
    ordered = flat[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    target.reshape(-1, *tail)[ordered[starts]] += np.add.reduceat(rows[order], starts, axis=0)


def gather(inputs: CacheInputs, index: np.ndarray) -> Compressed:
    """The entries ``index`` (kv_heads, m) of each head, unchanged."""
    rows = np.arange(inputs.heads)[:, None]
    assert inputs.positions is not None
    return Compressed(
        keys=inputs.keys[rows, index],
        values=inputs.values[rows, index],
        positions=inputs.positions[rows, index],
    )


def top_entries(scores: np.ndarray, count: int, allowed: np.ndarray | None = None) -> np.ndarray:
    """(heads, count) indices of the highest ``scores`` (heads, n) per head among ``allowed``
    (n,) or (heads, n), sorted by index; ties go to the earlier entry."""
    if allowed is not None:
        scores = np.where(allowed, scores, -np.inf)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :count]
    return np.sort(order, axis=1)


def heavy_and_recent(scores: np.ndarray, keep: int, recent: int) -> np.ndarray:
    """(heads, keep) indices: the last ``recent`` entries plus the ``keep - recent``
    highest-scored earlier ones (H2O's selection), sorted by index."""
    heads, n = scores.shape
    recent = min(recent, keep)
    allowed = np.arange(n) < n - recent
    heavy = top_entries(scores, keep - recent, allowed)
    tail = np.broadcast_to(np.arange(n - recent, n), (heads, recent))
    return np.concatenate([heavy, tail], axis=1)


def draws(seed: int, layer: int, shape: tuple[int, ...]) -> np.ndarray:
    """Uniform [0, 1) draws for one call: reproducible from ``seed``, the layer and the shape
    (so repeated compressions of one layer at different lengths draw differently)."""
    return np.random.default_rng([seed, layer, *shape]).random(shape)


@dataclass
class CacheMethod:
    """Base class: a method's parameters are its dataclass fields (with defaults); subclasses
    set ``name`` and ``query_use`` and implement :meth:`compress`."""

    name: ClassVar[str] = ""
    query_use: ClassVar[QueryUse] = "never"

    def __call__(self, inputs: CacheInputs, budget: Budget | int) -> Compressed:
        """Compress ``inputs`` to ``budget.size(n)`` entries (all of them when that is n)."""
        n = inputs.length
        keep = as_budget(budget).size(n)
        if self.query_use == "required" and not inputs.has_attention():
            raise ValueError(f"cache method {self.name!r} needs queries or attention scores")
        if keep >= n:
            assert inputs.positions is not None
            return Compressed(inputs.keys, inputs.values, np.array(inputs.positions))
        out = self.compress(inputs, keep)
        expected = (inputs.heads, keep, inputs.keys.shape[2])
        if out.keys.shape != expected or out.values.shape != expected:
            raise AssertionError(f"{self.name} returned {out.keys.shape}, expected {expected}")
        if out.valid is not None and out.valid.all():
            out.valid = None
        return out

    def compress(self, inputs: CacheInputs, keep: int) -> Compressed:
        """``keep`` (< n) entries per head; see the class docstring."""
        raise NotImplementedError

    @classmethod
    def describe(cls) -> str:
        """One line: the first line of the class docstring."""
        return (cls.__doc__ or cls.name).strip().splitlines()[0]

    @classmethod
    def parameters(cls) -> dict[str, Any]:
        """The method's parameters and their defaults."""
        return {f.name: f.default for f in dataclasses.fields(cls)}


def register_cache_method(cls: type[CacheMethod]) -> type[CacheMethod]:
    """Class decorator: add ``cls`` to :data:`CACHE_METHODS` under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if CACHE_METHODS.get(cls.name, cls) is not cls:
        raise ValueError(f"cache method {cls.name!r} is registered twice")
    CACHE_METHODS[cls.name] = cls
    return cls


def get_cache_method(name: str, **params: Any) -> CacheMethod:
    """An instance of the method registered as ``name`` with ``params``; a ValueError names
    the known methods or parameters."""
    _load_builtin_methods()
    try:
        cls = CACHE_METHODS[name]
    except KeyError:
        known = ", ".join(sorted(CACHE_METHODS))
        raise ValueError(f"unknown cache method {name!r} (known: {known})") from None
    unknown = set(params) - set(cls.parameters())
    if unknown:
        raise ValueError(
            f"cache method {name!r} has no parameter {', '.join(sorted(unknown))} "
            f"(it has: {', '.join(cls.parameters()) or 'none'})"
        )
    return cls(**params)


def cache_method_names() -> list[str]:
    """The names of all registered methods, sorted."""
    _load_builtin_methods()
    return sorted(CACHE_METHODS)


def resolve_method(method: str | CacheMethod, **params: Any) -> CacheMethod:
    """``method`` itself, or the registered method of that name with ``params``."""
    if isinstance(method, CacheMethod):
        if params:
            raise ValueError("parameters go with a method name, not a method instance")
        return method
    return get_cache_method(method, **params)


def _load_builtin_methods() -> None:
    from splice.models.merging import cache  # noqa: F401  (registers on import)
