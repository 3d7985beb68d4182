"""``r_tsvm``: robust task singular vector merging (R-TSVM, renamed RESM; arXiv 2502.06876).

The paper has no public code; this is TSV-Merge (:mod:`~splice.models.merging.methods.tsv`)
with its two additions as implemented here:

* Outlier-aware reweighting: in each task matrix, entries beyond ``outlier_k`` robust standard
  deviations (``1.4826 * median |delta|``) get the weight ``threshold / |delta|``, i.e. are
  clipped to the threshold, before the SVD, so a few huge entries do not take over the leading
  singular directions. The clipped-off remainders (sparse) are added back after the merge,
  weighted, so no part of a task vector is lost at full rank. ``outlier_k: null`` turns it off.
* Sparsity-adaptive rank: each task matrix keeps ``k_i = ceil(budget * min(1, d_i / d_dense))``
  singular triplets, with ``budget`` TSV's per-task rank (``sv_reduction`` of ``min(m, n)``,
  ``1/T`` by default), ``d_i = ||delta||_1^2 / (N ||delta||_2^2)`` its effective density (``k/N``
  for ``k`` equal-magnitude non-zeros out of ``N``) and ``d_dense = 2/pi`` that of a dense
  Gaussian matrix: dense task vectors keep TSV's rank, sparse (trimmed or DARE'd) ones fewer.

The kept singular vectors are decorrelated by Procrustes as in TSV-Merge. Non-matrix tensors
take the weighted mean of the task vectors. float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from splice.models.merging.methods.tsv import _orthogonalize, tsv_rank
from splice.models.merging.registry import MergeMethod, TensorInputs, register, weights_of

#: Effective density ``E|x|^2 / E[x^2]`` of a Gaussian matrix.
DENSE_DENSITY = 2.0 / math.pi
#: Median |x| of a standard normal is 1 / 1.4826.
MAD_SCALE = 1.4826


def effective_density(delta: torch.Tensor) -> float:
    """``||delta||_1^2 / (N ||delta||_2^2)`` in (0, 1]; 0 for an all-zero tensor."""
    squares = float(delta.double().square().sum())
    if squares == 0.0:
        return 0.0
    return float(delta.double().abs().sum()) ** 2 / (delta.numel() * squares)


def adaptive_rank(delta: torch.Tensor, budget: int) -> int:
    """Singular triplets kept for ``delta``: ``budget`` scaled by its density (at least 1)."""
    share = min(1.0, effective_density(delta) / DENSE_DENSITY)
    return max(1, min(budget, math.ceil(budget * share)))


def clip_outliers(delta: torch.Tensor, k: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(clipped, residual)`` with ``clipped + residual == delta``: entries beyond ``k`` robust
    standard deviations clipped to that threshold (sign kept), ``residual`` the sparse rest."""
    scale = MAD_SCALE * float(delta.abs().median())
    if scale == 0.0:
        return delta, torch.zeros_like(delta)
    threshold = k * scale
    clipped = delta.clamp(-threshold, threshold)
    return clipped, delta - clipped


def r_tsvm(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    *,
    alpha: float = 1.0,
    sv_reduction: float | None = None,
    outlier_k: float | None = 3.0,
    adaptive: bool = True,
) -> torch.Tensor:
    """R-TSVM of the task vectors of ``tensors`` onto ``base`` (see the module docstring)."""
    tasks = len(tensors)
    if tasks == 0:
        raise ValueError("r_tsvm needs at least one model besides the base")
    if outlier_k is not None and outlier_k <= 0:
        raise ValueError(f"r_tsvm: outlier_k must be > 0 (or null), got {outlier_k}")
    if sv_reduction is not None and not 0 < sv_reduction <= 1:
        raise ValueError(f"r_tsvm: sv_reduction must be in (0, 1], got {sv_reduction}")
    weights = [1.0] * tasks if weights is None else [float(w) for w in weights]
    b = base.float()
    deltas = [(t.float() - b) * w for t, w in zip(tensors, weights, strict=True)]
    if b.dim() != 2:
        return b + alpha * torch.stack(deltas, dim=0).mean(dim=0)
    residual = torch.zeros_like(b)
    if outlier_k is not None:
        parts = [clip_outliers(d, outlier_k) for d in deltas]
        deltas = [clipped for clipped, _ in parts]
        for _, rest in parts:
            residual += rest
    budget = tsv_rank(b.shape, tasks, sv_reduction)
    us, ss, vs = [], [], []
    for delta in deltas:
        k = adaptive_rank(delta, budget) if adaptive else budget
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        us.append(u[:, :k])  # [m, k]
        ss.append(s[:k])
        vs.append(vh[:k, :].T)  # [n, k]
    u_cat, s_cat, v_cat = torch.cat(us, dim=1), torch.cat(ss), torch.cat(vs, dim=1)
    if u_cat.shape[1] > min(b.shape):  # sv_reduction > 1/T: no orthonormal basis that wide
        merged = (u_cat * s_cat) @ v_cat.T
    else:
        merged = (_orthogonalize(u_cat) * s_cat) @ _orthogonalize(v_cat).T
    return b + alpha * (merged + residual)


@register
class RTsvm(MergeMethod):
    """Task singular vectors with outlier clipping and a per-matrix rank from its sparsity."""

    name = "r_tsvm"
    model_params = {"weight": 1.0}
    global_params = {"alpha": 1.0, "sv_reduction": None, "outlier_k": 3.0, "adaptive_rank": True}
    requires_base = True
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError("r_tsvm needs a base model")
        reduction, k = inputs.params["sv_reduction"], inputs.params["outlier_k"]
        return r_tsvm(
            inputs.base,
            inputs.tensors,
            weights_of(inputs),
            alpha=float(inputs.params["alpha"]),
            sv_reduction=None if reduction is None else float(reduction),
            outlier_k=None if k is None else float(k),
            adaptive=bool(inputs.params["adaptive_rank"]),
        )
