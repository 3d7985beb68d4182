"""HOMER-style hierarchical context merging (Song et al., ICLR 2024): a prefill procedure for
inputs longer than a Llama-family model's positions or memory. Imports torch and transformers:
import it explicitly (the package ``__init__`` is numpy-only).

The input is split into ``ceil(n / chunk_len)`` chunks of near-equal length (at most
``chunk_len``, as HOMER balances them). Each leaf chunk runs alone through the first group of
layers; then, level by level up a binary tree, two adjacent chunks are each pruned to ``keep``
tokens and concatenated, and the concatenation runs through the next group of layers. The tree's
``ceil(log2 chunks) + 1`` levels are spread over the layers (optional warm-up layers and the
remainder go to the leaves, as HOMER does), so the root ends at the last layer. A node without a
sibling (a chunk count that is not a power of two) goes up alone, unpruned. Nodes are built depth
first, so at most one finished node per level waits for its sibling: activations grow with the
logarithm of the input length, and no layer ever processes more than ``max(chunk_len, 2 * keep)``
tokens.

Choices where the paper leaves room (or where this has no counterpart):

* positions: every chunk has its own positions, right-aligned so each chunk ends at ``size - 1``
  (``size`` the longest chunk); merged nodes keep their tokens' positions (repeated across chunks,
  as in HOMER's code), so no position reaches ``chunk_len`` during prefill and the continuation
  starts at ``next_position = size``;
* importance: the attention the chunk's last ``window`` tokens pay to each token at the node's
  last layer (the numpy core's :func:`~.base.attention_scores`, summed over those queries), the
  maximum over kv heads (HOMER: the last token, maximum over heads); the last ``window`` tokens
  are always kept. HOMER's calibration bias by relative position is not applied (it needs a
  fitted bias file), and there is no shared prefix/suffix (instruction) attached to each chunk;
* propagative refinement: a token pruned at a merge is dropped from the caches of every lower
  layer of that node too, so all layers of the result hold the same tokens;
* the budget: each child keeps ``keep = budget.size(chunk_len)`` tokens at a merge (default half a
  chunk); the result's cache holds ``n`` entries per layer for one chunk, else the root's tokens:
  ``2 * keep`` when both halves of the top merge hold at least ``keep`` (at most that always).

The returned :class:`HomerCache` reports ``next_position`` as its sequence length and offsets the
causal mask by the entries it does not hold (as :mod:`.hf` does), so a plain forward of the next
tokens, with or without ``position_ids = next_position + arange(k)``, continues from it, and so
does ``model.generate(ids, cache=cache)`` when ``ids`` is ``next_position`` placeholder ids (which
generate drops as cached) followed by the new tokens. Batch 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from splice.models.merging.cache.base import Budget, as_budget, attention_scores, heavy_and_recent
from transformers.cache_utils import Cache, DynamicCache, DynamicLayer
from transformers.masking_utils import create_causal_mask
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

#: HOMER's default: each child keeps half a chunk at a merge.
HALF_A_CHUNK = Budget(keep_ratio=0.5)


@dataclass
class HomerTrace:
    """What a prefill did: ``runs`` one (layer, tokens) per layer run on a node; ``max_position``
    the largest position id given to the rotary embedding."""

    runs: list[tuple[int, int]] = field(default_factory=list)
    max_position: int = -1

    @property
    def longest(self) -> int:
        """The largest number of tokens any layer processed at once."""
        return max((tokens for _, tokens in self.runs), default=0)


class HomerLayer(DynamicLayer):
    """One layer of a prefilled cache: its stored entries plus the new tokens; reports the next
    token's position as its length and offsets the mask by the entries not stored."""

    is_croppable = False

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, next_position: int) -> None:
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values = keys, values
        self.offset = next_position - keys.shape[-2]  # positions not held as entries

    @property
    def stored(self) -> int:
        return 0 if self.keys is None else self.keys.shape[-2]

    def get_seq_length(self) -> int:
        return self.stored + self.offset

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.stored + query_length, self.offset

    def crop(self, tokens_to_remove: int) -> None:
        raise NotImplementedError("a HOMER cache cannot be cropped back")


class HomerCache(Cache):
    """The cache :func:`hierarchical_prefill` returns: one :class:`HomerLayer` per layer;
    ``positions`` (stored,) the position each prefilled entry was rotated with."""

    def __init__(
        self,
        kv: list[tuple[torch.Tensor, torch.Tensor]],
        next_position: int,
        positions: torch.Tensor,
    ) -> None:
        super().__init__(layers=[HomerLayer(k, v, next_position) for k, v in kv])
        self.next_position = next_position
        self.positions = positions

    def stored_length(self, layer_idx: int = 0) -> int:
        """Entries layer ``layer_idx`` holds (``get_seq_length`` is the next position)."""
        layer = self.layers[layer_idx]
        assert isinstance(layer, HomerLayer)
        return layer.stored


@dataclass
class Chunk:
    """A chunk or a merge of chunks (a tree node): ``hidden`` (1, n, hidden_size) after its
    last layer, ``positions`` (1, n), ``kv`` (1, kv_heads, n, head_dim) pairs for every layer
    run so far, ``scores`` (n,) importance at its last layer."""

    hidden: torch.Tensor
    positions: torch.Tensor
    kv: list[tuple[torch.Tensor, torch.Tensor]]
    scores: np.ndarray | None = None

    @property
    def length(self) -> int:
        return self.hidden.shape[1]


def prune_indices(scores: np.ndarray, keep: int, protect_last: int) -> np.ndarray:
    """(keep,) sorted indices kept out of ``scores`` (n,): the last ``protect_last`` entries plus
    the highest-scored others (ties to the earlier one); all of them when ``keep >= n``."""
    n = scores.shape[0]
    if keep >= n:
        return np.arange(n)
    return heavy_and_recent(scores[None, :], keep, protect_last)[0]


def layer_groups(num_layers: int, levels: int, warmup: int = 0) -> list[range]:
    """The layers each tree level runs, leaves first: ``levels`` groups of
    ``(num_layers - warmup) // levels`` layers, the warm-up and the remainder added to the
    leaves' group, so the last group ends at the last layer."""
    per = (num_layers - warmup) // levels
    if warmup < 0 or per < 1:
        raise ValueError(
            f"{num_layers} layers (warm-up {warmup}) cannot hold {levels} tree levels: "
            "use longer chunks or fewer warm-up layers"
        )
    first = num_layers - per * (levels - 1)
    return [range(first)] + [
        range(first + per * k, first + per * (k + 1)) for k in range(levels - 1)
    ]


def _run(
    model: torch.nn.Module, node: Chunk, layers: range, window: int, score: bool, trace: HomerTrace
) -> None:
    """Run ``node`` through ``layers`` alone (its own causal mask), recording each layer's keys
    and values; ``score``: set ``node.scores`` from the last layer's attention."""
    decoder = model.model
    hidden, positions = node.hidden, node.positions
    cos, sin = decoder.rotary_emb(hidden, position_ids=positions)
    trace.max_position = max(trace.max_position, int(positions.max()))
    # position_ids=None: a merge's repeated positions must not read as packed sequences
    mask = create_causal_mask(
        config=model.config, inputs_embeds=hidden, attention_mask=None, cache=None
    )
    for index in layers:
        layer = decoder.layers[index]
        if score and index == layers[-1]:
            attn = layer.self_attn
            w = min(window, node.length)
            tail = layer.input_layernorm(hidden[:, -w:])
            # (1, w, q_heads * d) -> (1, w, q_heads, d)
            queries = attn.q_proj(tail).view(1, w, -1, attn.head_dim)
            if getattr(attn, "q_norm", None) is not None:
                queries = attn.q_norm(queries)
            queries = queries.transpose(1, 2)  # (1, q_heads, w, d)
            queries, _ = apply_rotary_pos_emb(queries, queries, cos[:, -w:], sin[:, -w:])
        scratch = DynamicCache()
        hidden = layer(
            hidden,
            attention_mask=mask,
            position_ids=positions,
            position_embeddings=(cos, sin),
            cache=scratch,
            use_cache=True,
        )
        stored = scratch.layers[index]
        node.kv.append((stored.keys, stored.values))
        trace.runs.append((index, node.length))
        if score and index == layers[-1]:
            keys = stored.keys[0].float().cpu().numpy()
            # (kv_heads, w, n) -> (n,): summed over the queries, max over kv heads
            weights = attention_scores(keys, queries[0].float().cpu().numpy())
            node.scores = weights.sum(axis=1).max(axis=0)
    node.hidden = hidden


def prune_chunk(node: Chunk, keep: int, window: int) -> Chunk:
    """``node`` with its ``keep`` most important tokens (:func:`prune_indices` of its scores,
    the last ``window`` protected), in every layer's cache too; ``node`` itself if it is short."""
    if node.length <= keep:
        return node
    assert node.scores is not None
    index = torch.from_numpy(prune_indices(node.scores, keep, min(window, keep)))
    index = index.to(node.hidden.device)
    return Chunk(
        hidden=node.hidden[:, index],
        positions=node.positions[:, index],
        kv=[(k[:, :, index], v[:, :, index]) for k, v in node.kv],
    )


def merge_chunks(left: Chunk, right: Chunk) -> Chunk:
    """The two nodes' tokens side by side, layer by layer."""
    return Chunk(
        hidden=torch.cat([left.hidden, right.hidden], dim=1),
        positions=torch.cat([left.positions, right.positions], dim=1),
        kv=[
            (torch.cat([lk, rk], dim=2), torch.cat([lv, rv], dim=2))
            for (lk, lv), (rk, rv) in zip(left.kv, right.kv, strict=True)
        ],
    )


@torch.no_grad()
def hierarchical_prefill(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    *,
    chunk_len: int,
    budget: Budget | int = HALF_A_CHUNK,
    warmup_layers: int | None = None,
    window: int = 1,
    trace: HomerTrace | None = None,
) -> tuple[HomerCache, int, torch.Tensor]:
    """Prefill ``input_ids`` (1, n) hierarchically (module doc); returns the cache, the position
    the next token must take, and the last token's logits (1, vocab) in float32.

    ``budget``: tokens each child keeps at a merge, ``budget.size(chunk_len)`` (an int: that
    many); at most ``chunk_len``. ``warmup_layers``: layers only the leaves run before merging
    starts; None: up to 3/8 of the layers (HOMER's 12 of 32) as far as the tree leaves room.
    ``window``: the last tokens whose attention scores the others (always kept). ``trace``:
    filled with the layer runs and the largest position used."""
    if input_ids.ndim != 2 or input_ids.shape[0] != 1:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} are not (1, n)")
    n = input_ids.shape[1]
    if n < 1 or chunk_len < 1 or window < 1:
        raise ValueError("input, chunk_len and window must be at least 1")
    keep = as_budget(budget).size(chunk_len)
    trace = HomerTrace() if trace is None else trace
    chunks = math.ceil(n / chunk_len)
    size = math.ceil(n / chunks)  # balanced chunks of at most chunk_len tokens
    height = math.ceil(math.log2(chunks))
    num_layers = len(model.model.layers)
    if warmup_layers is None:
        warmup_layers = max(0, min(num_layers * 3 // 8, num_layers - (height + 1)))
    groups = layer_groups(num_layers, height + 1, warmup_layers)
    device = model.model.embed_tokens.weight.device

    def build(level: int, index: int) -> Chunk:
        if level == 0:
            ids = input_ids[:, index * size : min((index + 1) * size, n)].to(device)
            m = ids.shape[1]
            positions = torch.arange(size - m, size, device=device)[None]  # right-aligned
            node = Chunk(hidden=model.model.embed_tokens(ids), positions=positions, kv=[])
        else:
            node = build(level - 1, 2 * index)
            if (2 * index + 1) << (level - 1) < chunks:  # a right sibling exists
                right = build(level - 1, 2 * index + 1)
                node = merge_chunks(
                    prune_chunk(node, keep, window), prune_chunk(right, keep, window)
                )
        _run(model, node, groups[level], window, score=level < height, trace=trace)
        return node

    root = build(height, 0)
    logits = model.lm_head(model.model.norm(root.hidden[:, -1:]))[:, -1].float()
    cache = HomerCache(root.kv, size, root.positions[0])
    return cache, size, logits


def hierarchical_nats(
    model: torch.nn.Module, ids: list[int], *, chunk_len: int, step: int = 64
) -> float:
    """The cross-entropy (nats) of ``ids[1:]`` given what precedes each token, reading through
    HOMER: the first ``chunk_len`` tokens by one plain forward, then ``step`` tokens at a time,
    each run continuing from the hierarchical prefill (:func:`hierarchical_prefill`, chunks of
    ``chunk_len``, half a chunk kept at a merge) of everything before it. No position reaches
    ``chunk_len + step``, whatever the length; the cost is one prefill per ``step`` tokens."""
    if chunk_len < 1 or step < 1:
        raise ValueError("chunk_len and step must be at least 1")
    tokens = torch.tensor([ids], dtype=torch.long, device=model.model.embed_tokens.weight.device)
    nats = 0.0
    with torch.no_grad():
        head = tokens[:, :chunk_len]
        positions = torch.arange(head.shape[1], device=head.device)[None]
        logp = torch.log_softmax(model(head, position_ids=positions).logits[0, :-1].double(), -1)
        nats -= float(logp.gather(1, head[0, 1:, None]).sum())
        for start in range(chunk_len, len(ids), step):
            part = tokens[:, start : start + step]
            cache, position, last = hierarchical_prefill(
                model, tokens[:, :start], chunk_len=chunk_len
            )
            positions = position + torch.arange(part.shape[1], device=part.device)[None]
            out = model(part, cache=cache, position_ids=positions, use_cache=True)
            logits = torch.cat([last[:, None], out.logits[:, :-1].float()], dim=1)
            logp = torch.log_softmax(logits[0].double(), -1)
            nats -= float(logp.gather(1, part[0, :, None]).sum())
    return nats
