"""Routing statistics of a MoE model on calibration text, per sparse block.

One pass over the calibration chunks with a forward pre-hook on every block
(:func:`~splice.models.merging.moe.find_moe_blocks`) collects, from the block's input ``x``:

* ``frequency [E]``: the share of (token, slot) routing decisions that chose each expert (the
  router's top-k of its logits; sums to 1);
* ``saliency [E]``: per expert, the mean over the tokens routed to it of its routing weight times
  the norm of its output (REAP's router-weighted activation), 0 for an unused expert;
* ``mean_output [E, H]``: each expert's output averaged over all tokens (HC-SMoE's feature);
* ``logits [N, E]``: the router's logits at up to ``max_logits`` tokens (a fixed-seed sample),
  whose columns compare experts by how the router sees them (MC-SMoE).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from splice.models.merging.calibration import run_chunks
from splice.models.merging.moe import MoEBlock, expert_activation, live_expert, swiglu


@dataclass
class RoutingStats:
    """One block's statistics (module doc)."""

    frequency: torch.Tensor
    saliency: torch.Tensor
    mean_output: torch.Tensor
    logits: torch.Tensor
    tokens: int


def _top_k(model: torch.nn.Module, block: MoEBlock) -> tuple[int, bool]:
    config = model.config
    k = int(getattr(block.router, "top_k", getattr(config, "num_experts_per_tok", 2)))
    default = getattr(config, "norm_topk_prob", True)  # Mixtral always renormalizes
    normalize = bool(getattr(block.router, "norm_topk_prob", default))
    return k, normalize


class _Collector:
    """Running sums for one block."""

    def __init__(self, model: torch.nn.Module, block: MoEBlock, max_logits: int, seed: int):
        self.block = block
        self.act = expert_activation(block)
        self.k, self.normalize = _top_k(model, block)
        e, h = block.count, live_expert(block, 0)[2].shape[0]
        self.counts = torch.zeros(e, dtype=torch.float64)
        self.salience = torch.zeros(e, dtype=torch.float64)
        self.outputs = torch.zeros(e, h, dtype=torch.float64)
        self.tokens = 0
        self.logits: list[torch.Tensor] = []
        self.max_logits = max_logits
        self.kept = 0
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, _module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()  # (T, H)
        router = self.block.router
        logits = x @ router.weight.detach().float().T  # (T, E)
        probs = logits.softmax(-1)
        top, chosen = probs.topk(self.k, dim=-1)  # (T, k)
        if self.normalize:
            top = top / top.sum(-1, keepdim=True)
        self.counts += torch.bincount(chosen.reshape(-1), minlength=self.block.count).double().cpu()
        for e in range(self.block.count):
            out = swiglu(self.act, live_expert(self.block, e), x)  # (T, H)
            self.outputs[e] += out.sum(0).double().cpu()
            rows, slots = (chosen == e).nonzero(as_tuple=True)
            if len(rows):
                norms = out[rows].norm(dim=-1) * top[rows, slots]
                self.salience[e] += norms.sum().double().cpu()
        self.tokens += x.shape[0]
        room = self.max_logits - self.kept
        if room > 0:
            take = torch.randperm(x.shape[0], generator=self.generator)[:room]
            self.logits.append(logits[take.sort().values.to(logits.device)].cpu())
            self.kept += len(take)

    def stats(self) -> RoutingStats:
        decisions = self.counts.sum().clamp_min(1)
        used = self.counts.clamp_min(1)
        return RoutingStats(
            frequency=(self.counts / decisions).float(),
            saliency=(self.salience / used).float(),
            mean_output=(self.outputs / max(self.tokens, 1)).float(),
            logits=torch.cat(self.logits) if self.logits else torch.zeros(0, self.block.count),
            tokens=self.tokens,
        )


def collect_routing(
    model: torch.nn.Module,
    blocks: list[MoEBlock],
    chunks: torch.Tensor,
    *,
    max_logits: int = 4096,
    seed: int = 0,
) -> list[RoutingStats]:
    """Run ``model`` over ``chunks (n, seq)`` and return each block's :class:`RoutingStats`."""
    collectors = [_Collector(model, b, max_logits, seed) for b in blocks]
    hooks = [b.module.register_forward_pre_hook(c) for b, c in zip(blocks, collectors, strict=True)]
    try:
        run_chunks(model, chunks)
    finally:
        for hook in hooks:
            hook.remove()
    return [c.stats() for c in collectors]
