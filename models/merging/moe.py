"""The experts of a mixture-of-experts causal LM, read and rewritten in one layout.

transformers keeps a layer's experts in one of two layouts:

* fused 3-D tensors (transformers 5: Mixtral, Qwen2-MoE, Qwen3-MoE, OLMoE, ...):
  ``experts.gate_up_proj [E, 2*I, H]`` (gate rows first) and ``experts.down_proj [E, H, I]``;
* one module per expert (transformers 4 and remote-code models): ``experts`` an ``nn.ModuleList``
  of SwiGLU MLPs with ``gate_proj``/``up_proj``/``down_proj`` (or Mixtral's ``w1``/``w3``/``w2``).

A checkpoint saved with one module per expert (``block_sparse_moe.experts.N.w1.weight``) is
converted to the fused layout by transformers when it loads, so both on-disk layouts arrive here.
:func:`find_moe_blocks` finds every sparse block (a module with a router ``gate`` whose weight has
one row per expert, and ``experts``); :class:`ExpertWeights` holds a block's experts as
``gate [E, I, H]``, ``up [E, I, H]``, ``down [E, H, I]``; :func:`write_experts` puts fewer experts
back (and the router's rows for them); :func:`set_expert_count` fixes the config. Shared experts
(Qwen2-MoE) are left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

#: The names of one expert's three projections in the per-module layout.
PROJECTION_NAMES = (("gate_proj", "up_proj", "down_proj"), ("w1", "w3", "w2"))
#: Config keys holding the number of experts per layer.
COUNT_KEYS = ("num_local_experts", "num_experts")


@dataclass
class ExpertWeights:
    """A layer's experts: ``gate [E, I, H]``, ``up [E, I, H]``, ``down [E, H, I]``."""

    gate: torch.Tensor
    up: torch.Tensor
    down: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.gate.shape[0])

    def expert(self, e: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.gate[e], self.up[e], self.down[e]

    def parameters(self) -> int:
        return self.gate.numel() + self.up.numel() + self.down.numel()


@dataclass
class MoEBlock:
    """One sparse MoE block of a model: its name, the module, the router and the experts."""

    name: str
    module: nn.Module
    router: nn.Module
    experts: nn.Module

    @property
    def fused(self) -> bool:
        return not isinstance(self.experts, nn.ModuleList)

    @property
    def count(self) -> int:
        return int(self.router.weight.shape[0])


def _projections(expert: nn.Module) -> tuple[nn.Linear, nn.Linear, nn.Linear] | None:
    for names in PROJECTION_NAMES:
        mods = [getattr(expert, n, None) for n in names]
        if all(isinstance(m, nn.Linear) for m in mods):
            return mods[0], mods[1], mods[2]  # type: ignore[return-value]
    return None


def _is_block(module: nn.Module) -> bool:
    router, experts = getattr(module, "gate", None), getattr(module, "experts", None)
    weight = getattr(router, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2 or experts is None:
        return False
    if isinstance(experts, nn.ModuleList):
        return len(experts) == weight.shape[0] and all(_projections(e) for e in experts)
    fused = getattr(experts, "gate_up_proj", None), getattr(experts, "down_proj", None)
    return all(isinstance(p, torch.Tensor) and p.dim() == 3 for p in fused)


def find_moe_blocks(model: nn.Module) -> list[MoEBlock]:
    """Every sparse MoE block of ``model``, in module order; ValueError when there is none or
    when a block's experts have a layout this module does not know."""
    blocks = []
    for name, module in model.named_modules():
        if _is_block(module):
            blocks.append(MoEBlock(name, module, module.gate, module.experts))  # type: ignore[arg-type]
    if not blocks:
        raise ValueError(
            "the model has no mixture-of-experts blocks this tool knows (a router 'gate' and "
            "'experts' as fused gate_up_proj/down_proj tensors or one SwiGLU module per expert)"
        )
    for block in blocks:
        if block.fused:
            extra = sorted(
                n
                for n, _ in block.experts.named_parameters()
                if n not in ("gate_up_proj", "down_proj")
            )
            if extra:
                raise ValueError(f"{block.name}: unsupported expert parameters {', '.join(extra)}")
    return blocks


def read_experts(block: MoEBlock) -> ExpertWeights:
    """The block's experts as float32 copies, in the common layout."""
    if block.fused:
        gate_up = block.experts.gate_up_proj.detach().float()
        half = gate_up.shape[1] // 2
        down = block.experts.down_proj.detach().float()
        return ExpertWeights(gate_up[:, :half].clone(), gate_up[:, half:].clone(), down.clone())
    triples = [_projections(e) for e in block.experts]
    return ExpertWeights(
        torch.stack([t[0].weight.detach().float() for t in triples]),  # type: ignore[index]
        torch.stack([t[1].weight.detach().float() for t in triples]),  # type: ignore[index]
        torch.stack([t[2].weight.detach().float() for t in triples]),  # type: ignore[index]
    )


def live_expert(block: MoEBlock, e: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Expert ``e``'s ``gate [I, H]``, ``up [I, H]``, ``down [H, I]`` read from the model itself:
    views of its parameters when they are float32, else float32 copies of this one expert
    (what calibration reads, so that it never holds a second copy of every expert)."""
    if block.fused:
        gate_up = block.experts.gate_up_proj[e].detach()
        half = gate_up.shape[0] // 2
        down = block.experts.down_proj[e].detach()
        return gate_up[:half].float(), gate_up[half:].float(), down.float()
    linears = _projections(block.experts[e])
    assert linears is not None
    return tuple(linear.weight.detach().float() for linear in linears)  # type: ignore[return-value]


def expert_activation(block: MoEBlock) -> Callable[[torch.Tensor], torch.Tensor]:
    """The block's expert activation (SiLU unless the experts name another)."""
    if block.fused:
        return getattr(block.experts, "act_fn", None) or nn.functional.silu
    first = block.experts[0]
    return getattr(first, "act_fn", None) or getattr(first, "act", None) or nn.functional.silu


def swiglu(
    act: Callable[[torch.Tensor], torch.Tensor],
    expert: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    x: torch.Tensor,
) -> torch.Tensor:
    """One expert ``(gate, up, down)`` applied to ``x [T, H]``: ``down(act(gate x) * up x)``."""
    gate, up, down = expert
    return (act(x @ gate.T) * (x @ up.T)) @ down.T


def expert_function(block: MoEBlock) -> Callable[[ExpertWeights, int, torch.Tensor], torch.Tensor]:
    """``f(weights, e, x)``: expert ``e`` of ``weights`` applied to ``x [T, H]`` with the block's
    activation (:func:`swiglu`)."""
    act = expert_activation(block)

    def apply(weights: ExpertWeights, e: int, x: torch.Tensor) -> torch.Tensor:
        return swiglu(act, weights.expert(e), x)

    return apply


def _set_counts(module: nn.Module, count: int) -> None:
    for attr in ("num_experts", "num_local_experts"):
        if isinstance(getattr(module, attr, None), int):
            setattr(module, attr, count)


def write_experts(block: MoEBlock, weights: ExpertWeights, router_rows: torch.Tensor) -> None:
    """Replace the block's experts by ``weights`` and its router's rows by ``router_rows
    [E', H]`` (routers with a bias are refused)."""
    count = weights.count
    router = block.router
    if getattr(router, "bias", None) is not None:
        raise ValueError(f"{block.name}: routers with a bias are not supported")
    dtype, device = router.weight.dtype, router.weight.device
    router.weight = nn.Parameter(router_rows.to(dtype=dtype, device=device).contiguous())
    if isinstance(router, nn.Linear):
        router.out_features = count
    if block.fused:
        experts = block.experts
        dtype = experts.gate_up_proj.dtype
        gate_up = torch.cat([weights.gate, weights.up], dim=1)
        experts.gate_up_proj = nn.Parameter(gate_up.to(dtype=dtype, device=device).contiguous())
        experts.down_proj = nn.Parameter(weights.down.to(dtype=dtype, device=device).contiguous())
    else:
        kept = nn.ModuleList(list(block.experts)[:count])
        for e, expert in enumerate(kept):
            for linear, value in zip(_projections(expert), weights.expert(e), strict=True):  # type: ignore[arg-type]
                linear.weight = nn.Parameter(value.to(linear.weight).contiguous())
        block.module.experts = kept
        block.experts = kept
    for module in (block.module, block.router, block.experts):
        _set_counts(module, count)


def check_expert_count(config, count: int) -> list[str]:
    """The config keys holding the experts per layer; ValueError when there is none or when a
    token's experts would no longer fit in ``count``."""
    keys = [k for k in COUNT_KEYS if isinstance(getattr(config, k, None), int)]
    if not keys:
        raise ValueError("the model's config has no expert count (num_local_experts, num_experts)")
    per_token = getattr(config, "num_experts_per_tok", 1)
    if count < per_token:
        raise ValueError(f"num_experts {count} is fewer than the experts per token ({per_token})")
    return keys


def set_expert_count(model: nn.Module, count: int) -> None:
    """Set the model's experts per layer to ``count``: its config, and every module attribute
    that copied the old count (e.g. the load-balancing loss's)."""
    config = model.config
    keys = check_expert_count(config, count)
    before = getattr(config, keys[0])
    for key in keys:
        setattr(config, key, count)
    for module in model.modules():
        for attr in COUNT_KEYS:
            if getattr(module, attr, None) == before:
                setattr(module, attr, count)
