"""``tsv``: task singular vector merging (TSV-Merge, Gargiulo et al., CVPR 2025).

Per matrix, each task vector keeps its top ``k`` singular triplets (rank selection:
``k = max(1, int(sv_reduction * min(m, n)))``, ``sv_reduction`` defaulting to ``1/T`` for
``T`` tasks, so the union fits the full rank); the concatenated left and right singular vectors
are decorrelated by orthogonal Procrustes (``U = P Q^T`` from the SVD of the stack) and the
merged delta ``U diag(s) V^T`` is added to the base, scaled by ``alpha``. Tensors that are not
matrices take the mean of the task vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from splice.models.merging.registry import MergeMethod, TensorInputs, register, weights_of


def tsv_rank(shape: Sequence[int], tasks: int, sv_reduction: float | None = None) -> int:
    """The per-task rank kept for a matrix of ``shape`` (see the module docstring)."""
    fraction = 1.0 / tasks if sv_reduction is None else float(sv_reduction)
    return max(1, int(fraction * min(shape[0], shape[1])))


def _orthogonalize(matrix: torch.Tensor) -> torch.Tensor:
    """The orthogonal factor ``P Q^T`` of ``matrix`` (nearest matrix with orthonormal columns)."""
    p, _, qh = torch.linalg.svd(matrix, full_matrices=False)
    return p @ qh


def tsv(
    base: torch.Tensor,
    tensors: Sequence[torch.Tensor],
    weights: Sequence[float] | None = None,
    *,
    alpha: float = 1.0,
    sv_reduction: float | None = None,
) -> torch.Tensor:
    """TSV-Merge of the task vectors of ``tensors`` onto ``base`` (float32)."""
    tasks = len(tensors)
    if tasks == 0:
        raise ValueError("tsv needs at least one model besides the base")
    weights = [1.0] * tasks if weights is None else list(weights)
    b = base.float()
    deltas = [(t.float() - b) * float(w) for t, w in zip(tensors, weights, strict=True)]
    if b.dim() != 2:
        return b + alpha * torch.stack(deltas, dim=0).mean(dim=0)
    k = tsv_rank(b.shape, tasks, sv_reduction)
    us, ss, vs = [], [], []
    for delta in deltas:
        u, s, vh = torch.linalg.svd(delta, full_matrices=False)
        us.append(u[:, :k])
        ss.append(s[:k])
        vs.append(vh[:k, :].T)
    u_cat, s_cat, v_cat = torch.cat(us, dim=1), torch.cat(ss), torch.cat(vs, dim=1)
    if u_cat.shape[1] > min(b.shape):
        # More directions than the matrix has rank: Procrustes cannot make them orthonormal;
        # fall back to the plain sum of the truncated task vectors.
        merged = (u_cat * s_cat) @ v_cat.T
    else:
        merged = (_orthogonalize(u_cat) * s_cat) @ _orthogonalize(v_cat).T
    return b + alpha * merged


@register
class Tsv(MergeMethod):
    """Task singular vectors: low-rank task vectors, decorrelated and summed."""

    name = "tsv"
    model_params = {"weight": 1.0}
    global_params = {"alpha": 1.0, "sv_reduction": None}
    requires_base = True
    drop_base_from_models = True

    def merge_tensor(self, inputs: TensorInputs) -> torch.Tensor:
        if inputs.base is None:
            raise ValueError("tsv needs a base model")
        reduction = inputs.params["sv_reduction"]
        return tsv(
            inputs.base,
            inputs.tensors,
            weights_of(inputs),
            alpha=float(inputs.params["alpha"]),
            sv_reduction=None if reduction is None else float(reduction),
        )
