"""Merging a mixture-of-experts model's experts: fewer experts per layer, same architecture.

``splice merge-experts CONFIG.yaml OUT_DIR`` (:func:`merge_experts`) reads a local MoE causal LM,
runs it over calibration text (:mod:`~splice.models.merging.routing`), plans each sparse block's
groups with the configured method, merges every group into one expert, keeps the router row of
the group's most-used member, and writes a model that transformers loads with ``num_experts``
experts per layer (:func:`~splice.models.merging.reduction.write_reduced`).

Methods (one class each, parameters declared once):

* ``mc_smoe`` (MC-SMoE): the ``num_experts`` most-used experts lead groups; every other expert
  joins the leader whose router-logit column is most cosine-similar to its own; each member's
  hidden neurons are permuted onto the leader's (:func:`align_neurons`, Hungarian matching of
  the neurons' weights); members averaged weighted by usage. ``compress`` then splits every
  merged matrix into low rank plus sparse (:func:`low_rank_sparse`) and reports the memory of
  that form (the written model holds its dense reconstruction: transformers has no such layout).
* ``hc_smoe`` (HC-SMoE): average-linkage hierarchical clustering of the experts' mean outputs on
  the calibration text into ``num_experts`` clusters; usage-weighted merge (no alignment).
* ``prune``: keep the ``num_experts`` experts with the highest usage (or REAP's saliency).
* ``average``: MC-SMoE's groups, members averaged with equal weights, no alignment.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from splice.models.merging.moe import (
    ExpertWeights,
    check_expert_count,
    find_moe_blocks,
    read_experts,
    set_expert_count,
    write_experts,
)
from splice.models.merging.reduction import ReductionMethod, Registry
from splice.models.merging.routing import RoutingStats, collect_routing

EXPERT_METHODS: Registry[ExpertMethod] = Registry("expert")


@dataclass
class ExpertPlan:
    """One block's groups (each led by the member whose router row is kept), the members'
    merge weights (summing to 1 per group) and whether members are aligned to their leader."""

    groups: list[list[int]]
    weights: list[list[float]]
    align: bool = False


class ExpertMethod(ReductionMethod):
    """Plans how one block's experts become ``target`` experts."""

    def plan(self, stats: RoutingStats, experts: ExpertWeights, target: int) -> ExpertPlan:
        raise NotImplementedError

    def compression(self) -> tuple[float, float] | None:
        """``(rank fraction, density)`` of the low-rank plus sparse form, or None."""
        return None


def usage_weights(frequency: torch.Tensor, group: list[int]) -> list[float]:
    """Members' weights proportional to their usage (equal when none was used)."""
    f = frequency[group].double()
    total = float(f.sum())
    if total <= 0:
        return [1.0 / len(group)] * len(group)
    return [float(v) / total for v in f]


def _by_usage(group: list[int], frequency: torch.Tensor) -> list[int]:
    """Members ordered by usage, most used first (index order on ties)."""
    return sorted(group, key=lambda e: (-float(frequency[e]), e))


def dominant_groups(frequency: torch.Tensor, logits: torch.Tensor, target: int) -> list[list[int]]:
    """MC-SMoE's grouping: the ``target`` most-used experts lead; every other expert joins the
    leader with the most cosine-similar router-logit column. Groups ordered by leader index.
    ``frequency`` may be any per-expert score (e.g. saliency): the highest lead."""
    count = len(frequency)
    leaders = sorted(_by_usage(list(range(count)), frequency)[:target])
    columns = torch.nn.functional.normalize(logits.double().T, dim=1)  # (E, N)
    similarity = columns @ columns.T  # (E, E)
    groups = {leader: [leader] for leader in leaders}
    for e in range(count):
        if e in groups:
            continue
        best = max(leaders, key=lambda lead: (float(similarity[e, lead]), -lead))
        groups[best].append(e)
    return [_by_usage(groups[lead], frequency) for lead in leaders]


def cluster_groups(
    features: torch.Tensor, frequency: torch.Tensor, target: int, linkage: str = "average"
) -> list[list[int]]:
    """HC-SMoE's grouping: hierarchical clustering of ``features [E, D]`` (Euclidean, ``linkage``)
    cut into ``target`` clusters; members most-used first; groups ordered by their first index."""
    from scipy.cluster.hierarchy import cut_tree
    from scipy.cluster.hierarchy import linkage as build

    count = features.shape[0]
    if target >= count:
        return [[e] for e in range(count)]
    tree = build(features.double().numpy(), method=linkage, metric="euclidean")
    labels = cut_tree(tree, n_clusters=target).reshape(-1)
    clusters: dict[int, list[int]] = {}
    for e, label in enumerate(labels.tolist()):
        clusters.setdefault(int(label), []).append(e)
    ordered = sorted(clusters.values(), key=min)
    return [_by_usage(group, frequency) for group in ordered]


def align_neurons(
    leader: tuple[torch.Tensor, ...], member: tuple[torch.Tensor, ...]
) -> torch.Tensor:
    """The permutation ``p`` of the member's hidden neurons that best matches the leader's:
    neuron ``p[i]`` of the member goes to position ``i``. A neuron is its gate row, up row and
    down column; the assignment maximizes the summed dot products (Hungarian matching)."""
    from scipy.optimize import linear_sum_assignment

    def neurons(expert: tuple[torch.Tensor, ...]) -> torch.Tensor:
        gate, up, down = expert
        return torch.cat([gate, up, down.T], dim=1).double()  # (I, 3H)

    score = neurons(leader) @ neurons(member).T  # (I, I)
    rows, cols = linear_sum_assignment(score.numpy(), maximize=True)
    perm = torch.empty(len(rows), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm


def permute_expert(
    expert: tuple[torch.Tensor, ...], perm: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The same function with its hidden neurons reordered by ``perm``."""
    gate, up, down = expert
    return gate[perm], up[perm], down[:, perm]


def merge_group(experts: ExpertWeights, group: list[int], weights: list[float], align: bool):
    """The weighted sum of the group's experts (each aligned to the first when ``align``)."""
    leader = experts.expert(group[0])
    merged = [torch.zeros_like(t) for t in leader]
    for e, w in zip(group, weights, strict=True):
        member = experts.expert(e)
        if align and e != group[0]:
            member = permute_expert(member, align_neurons(leader, member))
        for acc, part in zip(merged, member, strict=True):
            acc.add_(part, alpha=w)
    return tuple(merged)


@dataclass
class LowRankSparse:
    """``matrix ~ u @ v + sparse``; ``parameters``: the numbers stored (factors, values and
    indices)."""

    u: torch.Tensor
    v: torch.Tensor
    sparse: torch.Tensor

    @property
    def dense(self) -> torch.Tensor:
        return self.u @ self.v + self.sparse

    @property
    def parameters(self) -> int:
        return self.u.numel() + self.v.numel() + 2 * int((self.sparse != 0).sum())


def low_rank_sparse(
    matrix: torch.Tensor, rank: int, density: float, iterations: int = 3
) -> LowRankSparse:
    """Split ``matrix`` into a rank-``rank`` part and a sparse part holding the largest
    ``density`` share of the residual, alternating the two fits ``iterations`` times."""
    m = matrix.double()
    sparse = torch.zeros_like(m)
    keep = int(round(density * m.numel()))
    u = v = torch.zeros(0)
    for _ in range(max(1, iterations)):
        left, values, right = torch.linalg.svd(m - sparse, full_matrices=False)
        u = left[:, :rank] * values[:rank]
        v = right[:rank]
        residual = m - u @ v
        sparse = torch.zeros_like(m)
        if keep > 0:
            top = residual.abs().reshape(-1).topk(keep).indices
            sparse.view(-1)[top] = residual.reshape(-1)[top]
    return LowRankSparse(u.to(matrix.dtype), v.to(matrix.dtype), sparse.to(matrix.dtype))


@EXPERT_METHODS.register
class MCSMoE(ExpertMethod):
    name = "mc_smoe"
    parameters = {
        "align": True,
        "compress": False,
        "rank": 0.25,
        "density": 0.1,
        "score": "frequency",
    }

    def plan(self, stats: RoutingStats, experts: ExpertWeights, target: int) -> ExpertPlan:
        name = str(self.params["score"])
        if name not in ("frequency", "saliency"):
            raise ValueError(f"mc_smoe: score {name!r} is not frequency or saliency")
        score = stats.frequency if name == "frequency" else stats.saliency
        groups = dominant_groups(score, stats.logits, target)
        weights = [usage_weights(score, g) for g in groups]
        return ExpertPlan(groups, weights, align=bool(self.params["align"]))

    def compression(self) -> tuple[float, float] | None:
        if not self.params["compress"]:
            return None
        rank, density = float(self.params["rank"]), float(self.params["density"])
        if not (0 < rank <= 1 and 0 <= density < 1):
            raise ValueError("mc_smoe: rank must be in (0, 1] and density in [0, 1)")
        return rank, density


@EXPERT_METHODS.register
class HCSMoE(ExpertMethod):
    name = "hc_smoe"
    parameters = {"linkage": "average"}

    def plan(self, stats: RoutingStats, experts: ExpertWeights, target: int) -> ExpertPlan:
        linkage = str(self.params["linkage"])
        if linkage not in ("average", "single", "complete", "ward"):
            raise ValueError(f"hc_smoe: linkage {linkage!r} is not average, single, complete, ward")
        groups = cluster_groups(stats.mean_output, stats.frequency, target, linkage)
        return ExpertPlan(groups, [usage_weights(stats.frequency, g) for g in groups])


@EXPERT_METHODS.register
class Prune(ExpertMethod):
    name = "prune"
    parameters = {"criterion": "frequency"}

    def plan(self, stats: RoutingStats, experts: ExpertWeights, target: int) -> ExpertPlan:
        criterion = str(self.params["criterion"])
        if criterion not in ("frequency", "saliency"):
            raise ValueError(f"prune: criterion {criterion!r} is not frequency or saliency")
        score = stats.frequency if criterion == "frequency" else stats.saliency
        kept = sorted(_by_usage(list(range(len(score))), score)[:target])
        return ExpertPlan([[e] for e in kept], [[1.0] for _ in kept])


@EXPERT_METHODS.register
class Average(ExpertMethod):
    name = "average"

    def plan(self, stats: RoutingStats, experts: ExpertWeights, target: int) -> ExpertPlan:
        groups = dominant_groups(stats.frequency, stats.logits, target)
        return ExpertPlan(groups, [[1.0 / len(g)] * len(g) for g in groups])


@dataclass
class ExpertReport:
    """What :func:`reduce_experts` / :func:`merge_experts` did."""

    method: str
    experts_before: int
    experts_after: int
    parameters_before: int
    parameters_after: int
    expert_parameters_before: int
    expert_parameters_after: int
    #: Numbers stored by the low-rank plus sparse form of the experts (None: not compressed).
    compressed_expert_parameters: int | None
    calibration_tokens: int
    layers: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    out_dir: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def _compress(merged: ExpertWeights, rank: float, density: float) -> tuple[ExpertWeights, int]:
    parts: dict[str, list[torch.Tensor]] = {"gate": [], "up": [], "down": []}
    stored = 0
    for name in parts:
        for matrix in getattr(merged, name):
            r = max(1, round(rank * min(matrix.shape)))
            form = low_rank_sparse(matrix, r, density)
            parts[name].append(form.dense)
            stored += form.parameters
    return ExpertWeights(*(torch.stack(parts[n]) for n in ("gate", "up", "down"))), stored


def reduce_experts(
    model: torch.nn.Module, chunks: torch.Tensor, method: ExpertMethod, target: int
) -> ExpertReport:
    """Merge every sparse block of ``model`` (in place) to ``target`` experts with ``method``,
    statistics from ``chunks (n, seq)``."""
    blocks = find_moe_blocks(model)
    before = blocks[0].count
    if not 0 < target < before:
        raise ValueError(f"num_experts {target} must be between 1 and {before - 1}")
    check_expert_count(model.config, target)  # refuses fewer than the experts per token
    total_before = sum(p.numel() for p in model.parameters())
    compression = method.compression()
    stats = collect_routing(model, blocks, chunks)
    report_layers = []
    expert_before = expert_after = 0
    stored = 0 if compression else None
    for block, block_stats in zip(blocks, stats, strict=True):
        experts = read_experts(block)
        plan = method.plan(block_stats, experts, target)
        merged = [
            merge_group(experts, g, w, plan.align)
            for g, w in zip(plan.groups, plan.weights, strict=True)
        ]
        result = ExpertWeights(*(torch.stack(parts) for parts in zip(*merged, strict=True)))
        if compression is not None:
            result, numbers = _compress(result, *compression)
            stored = (stored or 0) + numbers
        rows = block.router.weight.detach()[[g[0] for g in plan.groups]]
        expert_before += experts.parameters()
        expert_after += result.parameters()
        write_experts(block, result, rows)
        report_layers.append(
            {
                "block": block.name,
                "groups": plan.groups,
                "weights": [[round(w, 6) for w in ws] for ws in plan.weights],
                "frequency": [round(float(f), 6) for f in block_stats.frequency],
            }
        )
    set_expert_count(model, target)
    return ExpertReport(
        method=method.name,
        experts_before=before,
        experts_after=target,
        parameters_before=total_before,
        parameters_after=sum(p.numel() for p in model.parameters()),
        expert_parameters_before=expert_before,
        expert_parameters_after=expert_after,
        compressed_expert_parameters=stored,
        calibration_tokens=stats[0].tokens if stats else 0,
        layers=report_layers,
        parameters=dict(method.params),
    )


def merge_experts(
    config: str | Path | Mapping[str, Any],
    out_dir: str | Path,
    *,
    force: bool = False,
    device: str = "cpu",
    shard_size: str = "2GB",
) -> ExpertReport:
    """Run an experts configuration (:mod:`~splice.models.merging.reduction`) into ``out_dir``."""
    from splice.models.merging.reduction import load_for, parse_reduction, publish

    started = time.monotonic()
    cfg = parse_reduction(config, "num_experts", EXPERT_METHODS)
    method = EXPERT_METHODS.get(cfg.method, **cfg.parameters)
    model, chunks = load_for(cfg, True, device)
    report = reduce_experts(model, chunks, method, cfg.target)
    publish(model, cfg, out_dir, report, started, shard_size=shard_size, force=force)
    return report
