"""Per-tensor merge methods against hand-computed values (issue 6), plus the registry."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from splice.models.merging import (  # noqa: E402
    REGISTRY,
    breadcrumbs,
    dare,
    della,
    get_method,
    linear,
    method_names,
    model_stock,
    nuslerp,
    passthrough,
    slerp,
    task_arithmetic,
    ties,
    tsv,
)
from splice.models.merging.methods.tsv import tsv_rank  # noqa: E402
from splice.models.merging.registry import TensorInputs  # noqa: E402
from splice.models.merging.sparsify import (  # noqa: E402
    full_sort_ties,
    magnitude,
    outliers,
    random_drop,
    rank_keep_probabilities,
    rank_range_mask,
    top_k_mask,
)

T = torch.tensor
R2 = math.sqrt(0.5)


def close(a: torch.Tensor, b: list | torch.Tensor, tol: float = 1e-6) -> bool:
    return torch.allclose(a.float(), torch.as_tensor(b, dtype=torch.float32), atol=tol, rtol=0)


# --- registry ---------------------------------------------------------------------------------


def test_registry_has_every_method() -> None:
    expected = {
        "linear", "task_arithmetic", "ties", "dare_linear", "dare_ties", "breadcrumbs",
        "breadcrumbs_ties", "della", "della_linear", "slerp", "nuslerp", "model_stock",
        "passthrough", "tsv",
    }  # fmt: skip
    assert expected <= set(method_names())
    assert set(REGISTRY) == set(method_names())


def test_unknown_method_lists_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown method 'tie'.*ties"):
        get_method("tie")


def test_defaults_match_mergekit() -> None:
    assert get_method("ties").global_params["normalize"] is True
    assert get_method("dare_ties").global_params["normalize"] is False
    assert get_method("dare_ties").global_params["rescale"] is True
    assert get_method("della").global_params["normalize"] is True
    assert get_method("della_linear").global_params["normalize"] is False
    assert get_method("task_arithmetic").global_params["normalize"] is False
    assert get_method("linear").global_params["normalize"] is True
    assert get_method("breadcrumbs").model_params["gamma"] == 0.01


# --- selection ------------------------------------------------------------------------------


def test_rank_range_mask_with_ties_is_a_stable_sort_slice() -> None:
    mags = T([2.0, 1.0, 2.0, 2.0, 3.0, 1.0])
    # stable ascending order: idx 1, 5, 0, 2, 3, 4 ; ranks [2, 4) -> idx 0, 2
    assert rank_range_mask(mags, 2, 4).tolist() == [True, False, True, False, False, False]
    assert rank_range_mask(mags, 0, 6).all()
    assert not rank_range_mask(mags, 3, 3).any()


def test_top_k_mask_keeps_earliest_among_equal_magnitudes() -> None:
    assert top_k_mask(T([1.0, -1.0, 1.0, 1.0]), 2).tolist() == [True, True, False, False]
    assert top_k_mask(T([0.5, -3.0, 2.0, 0.1]), 2).tolist() == [False, True, True, False]


def test_top_k_mask_matches_a_full_sort() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(37, 53, generator=gen)
    for k in (1, 10, 999, 37 * 53):
        ref = torch.zeros(x.numel(), dtype=torch.bool)
        ref[torch.argsort(x.abs().reshape(-1), descending=True)[:k]] = True
        assert torch.equal(top_k_mask(x, k).reshape(-1), ref)
        with full_sort_ties():
            assert torch.equal(top_k_mask(x, k).reshape(-1), ref)


def test_magnitude_keeps_max_1_int_density_n() -> None:
    x = T([0.1, -0.4, 0.3, 0.2])
    assert magnitude(x, 0.5).tolist() == pytest.approx([0.0, -0.4, 0.3, 0.0])
    assert magnitude(x, 0.1).tolist() == pytest.approx([0.0, -0.4, 0.0, 0.0])  # at least one
    assert magnitude(x, 1.0) is x


# --- linear / task arithmetic ------------------------------------------------------------------


def test_linear_normalized_and_not() -> None:
    a, b = T([1.0, 2.0]), T([3.0, 6.0])
    assert close(linear([a, b], [1.0, 3.0]), [2.5, 5.0])
    assert close(linear([a, b], [1.0, 3.0], normalize=False), [10.0, 20.0])
    assert close(linear([a]), [1.0, 2.0])  # a single model


def test_linear_computes_bf16_inputs_in_fp32() -> None:
    a, b = T([1.0, 2.0], dtype=torch.bfloat16), T([2.0, 3.0], dtype=torch.bfloat16)
    out = linear([a, b], [1.0, 1.0])
    assert out.dtype == torch.float32 and close(out, [1.5, 2.5])


def test_task_arithmetic() -> None:
    base = T([1.0, 1.0, 1.0])
    t1, t2 = T([2.0, 0.0, 1.0]), T([1.0, 3.0, 1.0])
    assert close(task_arithmetic(base, [t1, t2], [1.0, 0.5]), [2.0, 1.0, 1.0])
    assert close(task_arithmetic(base, [t1, t2], [1.0, 0.5], lambda_=2.0), [3.0, 1.0, 1.0])
    assert close(task_arithmetic(base, [t1, t2], [1.0, 0.5], normalize=True), [5 / 3, 1.0, 1.0])


# --- TIES -------------------------------------------------------------------------------------


def test_ties_trim_elect_disjoint_mean() -> None:
    base = torch.zeros(4)
    t1, t2 = T([3.0, -1.0, 2.0, -0.5]), T([-1.0, 2.0, -3.0, -4.0])
    # trimmed: d1 = [3, 0, 2, 0], d2 = [0, 0, -3, -4]; weighted sums [6, 0, 1, -4]
    # elected signs [+, + (tie), +, -]; agreeing weights [2, 0 -> 1, 2, 1]
    assert close(ties(base, [t1, t2], [2.0, 1.0], [0.5, 0.5]), [3.0, 0.0, 2.0, -4.0])
    unnormalized = ties(base, [t1, t2], [2.0, 1.0], [0.5, 0.5], normalize=False)
    assert close(unnormalized, [6.0, 0.0, 4.0, -4.0])


def test_ties_sign_vote_tie_goes_positive() -> None:
    base = T([0.0])
    assert close(ties(base, [T([1.0]), T([-1.0])], [1.0, 1.0], [1.0, 1.0]), [1.0])


def test_ties_elects_from_weighted_deltas() -> None:
    base = T([0.0])
    # unweighted the vote is 2 vs -1 (positive); weighted 2*1 vs -1*3 (negative)
    assert close(ties(base, [T([2.0]), T([-1.0])], [1.0, 3.0], [1.0, 1.0]), [-1.0])


def test_ties_all_zero_deltas_and_single_model() -> None:
    base = T([1.0, -2.0, 3.0])
    assert close(ties(base, [base.clone(), base.clone()], [1.0, 1.0], [0.5, 0.5]), base)
    t1 = T([2.0, -2.0, 0.0])
    assert close(ties(base, [t1], [0.7], [1.0]), t1)  # density 1, one model, normalized


def test_ties_density_one_is_sign_elected_mean() -> None:
    base = torch.zeros(3)
    t1, t2 = T([1.0, 2.0, -1.0]), T([3.0, -1.0, -3.0])
    assert close(ties(base, [t1, t2], [1.0, 1.0], [1.0, 1.0]), [2.0, 2.0, -2.0])


def test_ties_bf16_keeps_dtype() -> None:
    base = torch.zeros(4, dtype=torch.bfloat16)
    t1 = T([3.0, -1.0, 2.0, -0.5], dtype=torch.bfloat16)
    t2 = T([-1.0, 2.0, -3.0, -4.0], dtype=torch.bfloat16)
    out = ties(base, [t1, t2], [2.0, 1.0], [0.5, 0.5])
    assert out.dtype == torch.bfloat16 and close(out, [3.0, 0.0, 2.0, -4.0])


# --- DARE -------------------------------------------------------------------------------------


def test_dare_density_one_is_task_arithmetic() -> None:
    base, t1, t2 = T([1.0, 2.0]), T([2.0, 2.0]), T([0.0, 5.0])
    assert close(dare(base, [t1, t2], [1.0, 1.0], [1.0, 1.0]), [1.0, 5.0])


def test_dare_rescales_to_the_l1_norm_and_keeps_density() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(200, 100, generator=gen)
    out = random_drop(x, 0.3, generator=gen)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.3) < 0.02
    assert out.abs().sum().item() == pytest.approx(x.abs().sum().item(), rel=1e-5)
    factor = out[kept] / x[kept]
    assert torch.allclose(factor, factor[0].expand_as(factor), rtol=1e-5)
    plain = random_drop(x, 0.3, rescale=False, generator=torch.Generator().manual_seed(1))
    assert torch.equal(plain[plain != 0], x[plain != 0])


def test_dare_is_reproducible_with_a_seeded_generator() -> None:
    base, t1 = torch.zeros(1000), torch.ones(1000)
    run = [
        dare(base, [t1], [1.0], [0.5], generator=torch.Generator().manual_seed(7), ties=True)
        for _ in range(2)
    ]
    assert torch.equal(run[0], run[1])
    assert run[0].sum().item() == pytest.approx(1000.0)  # L1 rescale; not normalized


def test_dare_all_zero_delta_is_left_alone() -> None:
    base = T([1.0, 2.0, 3.0])
    assert close(dare(base, [base.clone()], [1.0], [0.5]), base)


# --- breadcrumbs ----------------------------------------------------------------------------


def test_breadcrumbs_keeps_the_middle_of_the_sorted_magnitudes() -> None:
    x = torch.arange(1.0, 11.0)  # n=10, density .5 -> 5 kept, gamma .1 -> top 1 dropped
    assert outliers(x, 0.5, 0.1).tolist() == [0, 0, 0, 0, 5, 6, 7, 8, 9, 0]
    # gamma beyond 1 - density: nothing small dropped, the top 5 go
    assert outliers(x, 0.5, 0.8).tolist() == [1, 2, 3, 4, 5, 0, 0, 0, 0, 0]
    base = torch.zeros(10)
    assert close(breadcrumbs(base, [x], [2.0], [0.5], [0.1]), [0, 0, 0, 0, 10, 12, 14, 16, 18, 0])


def test_breadcrumbs_ties_elects_signs() -> None:
    base = torch.zeros(2)
    out = breadcrumbs(base, [T([1.0, -1.0]), T([-3.0, -1.0])], [1.0, 1.0], [1.0, 1.0],
                      [0.0, 0.0], ties=True)  # fmt: skip
    assert close(out, [-3.0, -2.0])  # not normalized by default


# --- DELLA ------------------------------------------------------------------------------------


def test_della_probabilities_rank_per_row() -> None:
    p = rank_keep_probabilities(T([[1.0, -3.0, 2.0], [5.0, 4.0, 6.0]]), 0.5, 0.2)
    assert close(p, [[0.3, 0.7, 0.5], [0.5, 0.3, 0.7]])
    assert close(rank_keep_probabilities(T([4.0, 1.0]), 0.5, 0.1), [0.6, 0.4])  # 1-D: one row


def test_della_density_one_and_bad_epsilon() -> None:
    base, t1, t2 = torch.zeros(2), T([1.0, -2.0]), T([3.0, 2.0])
    assert close(della(base, [t1, t2], [1.0, 1.0], [1.0, 1.0]), [2.0, 2.0])
    with pytest.raises(ValueError, match="epsilon"):
        della(base, [t1], [1.0], [0.5], [0.6])


def test_della_keeps_large_magnitudes_more_often() -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(400, 200, generator=gen)
    out = della(torch.zeros_like(x), [x], [1.0], [0.5], [0.3], ties=False, generator=gen)
    ranks = x.abs().argsort(dim=1).argsort(dim=1)
    low = (out != 0)[ranks < 20].float().mean().item()
    high = (out != 0)[ranks >= 180].float().mean().item()
    assert 0.17 < low < 0.27 and 0.73 < high < 0.83
    assert out.abs().sum().item() == pytest.approx(x.abs().sum().item(), rel=1e-5)


# --- SLERP / NuSLERP ----------------------------------------------------------------------------


def test_slerp_quarter_circle_and_endpoints() -> None:
    v0, v1 = T([1.0, 0.0]), T([0.0, 1.0])
    assert close(slerp(0.5, v0, v1), [R2, R2])
    assert close(slerp(0.0, v0, v1), [1.0, 0.0])
    assert close(slerp(1.0, v0, v1), [0.0, 1.0])
    # unnormalized inputs: the angle from the directions, the interpolation on the vectors
    assert close(slerp(0.5, T([2.0, 0.0]), v1), [2 * R2, R2])


def test_slerp_falls_back_to_lerp_when_colinear() -> None:
    assert close(slerp(0.25, T([1.0, 1.0]), T([2.0, 2.0])), [1.25, 1.25])


def test_slerp_bf16_in_fp32() -> None:
    out = slerp(0.5, T([1.0, 0.0], dtype=torch.bfloat16), T([0.0, 1.0], dtype=torch.bfloat16))
    assert out.dtype == torch.float32 and close(out, [R2, R2])


def test_nuslerp_weights_base_and_rows() -> None:
    v0, v1 = T([1.0, 0.0]), T([0.0, 1.0])
    assert close(nuslerp([v0, v1], [1.0, 1.0]), [R2, R2])
    assert close(nuslerp([v0, v1], [1.0, 0.0]), [1.0, 0.0])
    base = T([1.0, 1.0])
    assert close(nuslerp([T([2.0, 1.0]), T([1.0, 2.0])], [1.0, 1.0], base), [1 + R2, 1 + R2])
    m0, m1 = T([[1.0, 0.0], [1.0, 0.0]]), T([[0.0, 1.0], [1.0, 0.0]])
    # along the last dim: row 0 a quarter circle, row 1 colinear (lerp)
    assert close(nuslerp([m0, m1], [1.0, 1.0], flatten=False), [[R2, R2], [1.0, 0.0]])
    # row_wise (as mergekit's flag behaves): along the first dim
    assert close(nuslerp([m0.T, m1.T], [1.0, 1.0], flatten=False, row_wise=True), [[R2, 1.0],
                 [R2, 0.0]])  # fmt: skip
    with pytest.raises(ValueError, match="exactly two"):
        nuslerp([v0], [1.0])


# --- model stock / passthrough / TSV --------------------------------------------------------------


def test_model_stock_ratio_from_the_mean_cosine() -> None:
    base = torch.zeros(2)
    assert close(model_stock(base, [T([1.0, 0.0]), T([0.0, 1.0])]), [0.0, 0.0])  # cos 0 -> t 0
    c = R2
    t = 2 * c / (1 + c)  # N = 2, cos = 1/sqrt(2); average = [1, .5]
    assert close(model_stock(base, [T([1.0, 0.0]), T([1.0, 1.0])]), [t, t / 2], 1e-6)
    with pytest.raises(ValueError, match="at least two"):
        model_stock(base, [T([1.0, 0.0])])


def test_model_stock_three_models_and_filter_wise() -> None:
    base = torch.zeros(3)
    ts = [T([1.0, 0.0, 0.0]), T([0.0, 1.0, 0.0]), T([1.0, 1.0, 0.0])]
    cos = (0 + R2 + R2) / 3
    t = 3 * cos / (1 + 2 * cos)
    assert close(model_stock(base, ts), [t * 2 / 3, t * 2 / 3, 0.0], 1e-6)
    rows = model_stock(torch.zeros(2, 2), [T([[1.0, 0], [1, 0]]), T([[0.0, 1], [1, 0]])],
                       filter_wise=True)  # fmt: skip
    assert close(rows, [[0.0, 0.0], [1.0, 0.0]])  # row 0: cos 0 -> base; row 1: cos 1 -> mean


def test_passthrough_scale() -> None:
    x = T([1.0, -2.0])
    assert passthrough(x) is x
    assert close(passthrough(x, 0.5), [0.5, -1.0])


def test_tsv_orthogonal_tasks_and_rank_selection() -> None:
    base = torch.zeros(2, 2)
    d1, d2 = T([[3.0, 0.0], [0.0, 0.0]]), T([[0.0, 0.0], [0.0, 2.0]])
    assert close(tsv(base, [d1, d2]), [[3.0, 0.0], [0.0, 2.0]], 1e-5)
    assert close(tsv(base, [d1, d2], alpha=0.5), [[1.5, 0.0], [0.0, 1.0]], 1e-5)
    assert tsv_rank((64, 32), 4) == 8 and tsv_rank((64, 32), 4, 0.5) == 16
    assert tsv_rank((3, 3), 8) == 1
    assert close(tsv(torch.zeros(2), [T([1.0, 2.0]), T([3.0, 0.0])]), [2.0, 1.0])  # 1-D: mean


def test_tsv_decorrelates_overlapping_subspaces() -> None:
    gen = torch.Generator().manual_seed(0)
    base = torch.zeros(16, 16)
    tasks = [torch.randn(16, 16, generator=gen) for _ in range(4)]
    out = tsv(base, tasks)
    assert torch.isfinite(out).all()
    assert torch.linalg.matrix_rank(out) <= 16


# --- method classes through TensorInputs --------------------------------------------------------


def test_method_classes_read_resolved_parameters() -> None:
    base = torch.zeros(4)
    inputs = TensorInputs(
        tensors=[T([3.0, -1.0, 2.0, -0.5]), T([-1.0, 2.0, -3.0, -4.0])],
        base=base,
        model_params=[{"weight": 2.0, "density": 0.5}, {"weight": 1.0, "density": 0.5}],
        params={"normalize": True, "lambda": 1.0, "rescale": False, "int8_mask": False},
    )
    assert close(get_method("ties").merge_tensor(inputs), [3.0, 0.0, 2.0, -4.0])
    slerp_inputs = TensorInputs([T([0.0, 1.0])], T([1.0, 0.0]), [{}], {"t": 0.5})
    assert close(get_method("slerp").merge_tensor(slerp_inputs), [R2, R2])
