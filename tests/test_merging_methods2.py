"""The rest of mergekit 0.1.5's weight methods and R-TSVM (issue 17) against hand-computed values,
plus a contract test over every registered method and a run of each through the YAML driver."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from splice.models.merging import (  # noqa: E402
    REGISTRY,
    arcee_fusion,
    get_method,
    karcher_mean,
    merge,
    method_names,
    multislerp,
    nearswap,
    r_tsvm,
    ram,
    sce,
    tsv,
)
from splice.models.merging.methods.arcee_fusion import fusion_threshold  # noqa: E402
from splice.models.merging.methods.r_tsvm import (  # noqa: E402
    DENSE_DENSITY,
    adaptive_rank,
    clip_outliers,
    effective_density,
)
from splice.models.merging.registry import TensorInputs  # noqa: E402

T = torch.tensor
R2 = math.sqrt(0.5)
NEW = ("multislerp", "karcher", "nearswap", "sce", "arcee_fusion", "ram", "ramplus_tl", "r_tsvm")


def close(a: torch.Tensor, b: list | torch.Tensor, tol: float = 1e-6) -> bool:
    return torch.allclose(a.double(), torch.as_tensor(b, dtype=torch.float64), atol=tol, rtol=0)


def run(name: str, tensors: list, base: Any = None, params: dict | None = None, **mp: Any):
    """``name``'s merge_tensor with its defaults, ``params`` and per-model ``mp`` lists."""
    method = get_method(name)
    model_params = [
        {k: (mp[k][i] if k in mp else v) for k, v in method.model_params.items()}
        for i in range(len(tensors))
    ]
    resolved = {**method.global_params, **(params or {})}
    return method.merge_tensor(TensorInputs(list(tensors), base, model_params, resolved))


# --- registry contract --------------------------------------------------------------------------


def test_new_methods_are_registered_with_mergekit_defaults() -> None:
    assert set(NEW) <= set(method_names()) == set(REGISTRY)
    assert get_method("multislerp").global_params == {"normalize_weights": True, "eps": 1e-8}
    assert get_method("karcher").global_params == {"max_iter": 10, "tol": 1e-5}
    assert get_method("nearswap").global_params == {"t": None}
    assert get_method("sce").global_params["select_topk"] == 1.0
    assert get_method("ram").global_params == {"epsilon": 1e-5}
    assert get_method("ramplus_tl").global_params == {"r": 0.1, "alpha": 0.2, "epsilon": 1e-5}
    assert get_method("arcee_fusion").global_params == {}


#: Parameters without a usable default, per method (what a YAML must give).
REQUIRED = {"slerp": {"t": 0.3}, "nearswap": {"t": 0.01}}


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_method_honours_the_contract(name: str) -> None:
    method = get_method(name)
    assert method.name == name and type(method) is REGISTRY[name]
    assert method.describe() and isinstance(method.describe(), str)
    assert set(method.model_params).isdisjoint(method.global_params)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 5, generator=gen)
    count = max(method.min_models, min(2, method.max_models or 2))
    tensors = [base + 0.1 * torch.randn(6, 5, generator=gen) for _ in range(count)]
    model_params = [
        {k: (1.0 if v is None else v) for k, v in method.model_params.items()} for _ in tensors
    ]
    params = {**method.global_params, **REQUIRED.get(name, {})}
    inputs = TensorInputs(
        tensors, None if method.requires_base is False else base, model_params, params, gen
    )
    out = method.merge_tensor(inputs)
    assert out.shape == base.shape and torch.isfinite(out).all()


# --- multislerp ---------------------------------------------------------------------------------


def test_multislerp_hand_values() -> None:
    x = T([3.0, -1.0, 2.0])
    assert close(multislerp([x, x, x], [0.2, 0.3, 0.5]), x, 1e-5)  # equal models: the model
    e1, e2 = T([1.0, 0.0]), T([0.0, 1.0])
    assert close(multislerp([e1, e2], [1.0, 1.0]), [R2, R2])  # the arc's midpoint
    assert close(multislerp([e1, 2 * e2], [1.0, 1.0]), [1.5 * R2, 1.5 * R2])  # mean norm
    assert close(multislerp([e1, e2], [1.0, 1.0], normalize_weights=False), [2 * R2, 2 * R2])
    base = T([10.0, 10.0])
    assert close(multislerp([base + e1, base + e2], [0.5, 0.5], base), [10 + R2, 10 + R2])
    assert multislerp([x], [0.3]) is x  # one model: itself
    # Antipodal with balancing weights: two models fall back to lerp, three refuse.
    assert close(multislerp([e1, -e1], [1.0, 1.0]), [0.0, 0.0])
    with pytest.raises(ValueError, match="antipodal"):
        multislerp([e1, -e1, T([0.0, 0.0])], [1.0, 1.0, 0.0])


def test_multislerp_needs_weights() -> None:
    with pytest.raises(ValueError, match="weight"):
        run("multislerp", [T([1.0, 0.0]), T([0.0, 1.0])])
    out = run("multislerp", [T([1.0, 0.0]), T([0.0, 1.0])], weight=[1.0, 1.0])
    assert close(out, [R2, R2])


# --- karcher ------------------------------------------------------------------------------------


def test_karcher_hand_values() -> None:
    e1, e2, e3 = T([1.0, 0.0, 0.0]), T([0.0, 1.0, 0.0]), T([0.0, 0.0, 1.0])
    x = T([3.0, -1.0, 2.0])
    assert close(karcher_mean([x, x]), x, 1e-5)
    assert close(karcher_mean([e1, e2]), [R2, R2, 0.0])
    assert close(karcher_mean([e1, 2 * e2]), [1.5 * R2, 1.5 * R2, 0.0])
    third = 1 / math.sqrt(3)
    assert close(karcher_mean([e1, e2, e3]), [third] * 3, 1e-5)
    # A zero tensor has no direction but counts in the mean norm.
    assert close(karcher_mean([e1, torch.zeros(3)]), [0.5, 0.0, 0.0])
    assert close(karcher_mean([torch.zeros(3), torch.zeros(3)]), [0.0] * 3)


def test_karcher_iterates_to_the_spherical_mean() -> None:
    # Unequal angles: the Karcher mean is not the normalized Euclidean mean.
    pts = [T([math.cos(a), math.sin(a)]) for a in (0.0, 0.2, 1.4)]
    out = karcher_mean(pts, max_iter=100, tol=1e-9)
    assert close(out, [math.cos(1.6 / 3), math.sin(1.6 / 3)], 1e-5)  # the mean angle
    euclid = torch.stack(pts).mean(0)
    assert not close(out / out.norm(), euclid / euclid.norm(), 1e-3)


def test_karcher_counts_the_base_as_an_input() -> None:
    e1, e2 = T([1.0, 0.0]), T([0.0, 1.0])
    assert close(run("karcher", [e1], e2), [R2, R2])
    with pytest.raises(ValueError):
        karcher_mean([e1, e2], max_iter=-1)


# --- nearswap -----------------------------------------------------------------------------------


def test_nearswap_hand_values() -> None:
    base, other = torch.zeros(3), T([0.05, 0.5, -2.0])
    # weights clamp(0.1 / |diff|, 0, 1) = [1, 0.2, 0.05]
    assert close(nearswap(base, other, 0.1), [0.05, 0.1, -0.1])
    assert close(nearswap(other, other.clone(), 0.1), other)
    assert close(run("nearswap", [other], base, {"t": 0.1}), [0.05, 0.1, -0.1])
    with pytest.raises(ValueError, match="'t' is required"):
        run("nearswap", [other], base)


# --- sce ----------------------------------------------------------------------------------------


def test_sce_hand_values() -> None:
    base = torch.zeros(3)
    t1, t2 = T([1.0, 2.0, -1.0]), T([3.0, -1.0, -1.0])
    # weights: mean squares 2 and 11/3 -> 6/17, 11/17; signs elected [+, +, -]
    assert close(sce(base, [t1, t2]), [39 / 17, 2.0, -1.0])
    # select_topk 0.5: variances [1, 2.25, 0], two non-zero -> only the middle entry stays
    assert close(sce(base, [t1, t2], select_topk=0.5), [0.0, 2.0, 0.0])
    assert close(sce(base, [t1], select_topk=1.0), t1)  # one model: itself
    assert close(sce(base, [t1, t2], select_topk=0.0), [0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="select_topk"):
        run("sce", [t1, t2], base, {"select_topk": 1.5})


# --- arcee_fusion -------------------------------------------------------------------------------


def test_arcee_fusion_keeps_only_outlier_changes() -> None:
    # quantiles of 9 sorted values at indices 2, 4, 6: 0.3, 0.5, 0.7 -> threshold 1.1
    diffs = T([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 5.0])
    assert close(fusion_threshold(diffs), [1.1], 1e-6)
    base = torch.zeros(9)
    other = diffs[torch.randperm(9, generator=torch.Generator().manual_seed(0))]
    out = arcee_fusion(base, other)
    assert close(out, torch.where(other == 5.0, other, base))
    assert close(arcee_fusion(other, other.clone()), other)
    assert close(run("arcee_fusion", [other], base), out)


def test_arcee_fusion_samples_large_tensors_reproducibly() -> None:
    big = torch.rand(1_000_003, generator=torch.Generator().manual_seed(1))
    a = fusion_threshold(big, torch.Generator().manual_seed(5))
    b = fusion_threshold(big, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and abs(float(a) - (0.5 + 1.5 * 0.5)) < 0.01


# --- ram / ramplus_tl ---------------------------------------------------------------------------


def test_ram_hand_values() -> None:
    base = torch.zeros(3)
    t1, t2 = T([1.0, 0.0, 2.0]), T([0.0, 3.0, 4.0])
    assert close(ram(base, [t1, t2]), [1.0, 3.0, 3.0])  # unique kept, shared averaged
    assert close(ram(base, [t1, t1.clone()]), t1)
    # below epsilon counts as unchanged and is dropped
    assert close(ram(base, [T([1e-6, 0.0, 2.0]), t2]), [0.0, 3.0, 3.0])
    # RAM+: each model has 1 shared and 1 unique entry -> rho 1 -> lambda 1 + 0.1 * 0.2
    assert close(ram(base, [t1, t2], plus=(0.1, 0.2)), [1.02, 3.06, 3.0])
    assert close(run("ramplus_tl", [t1, t2], base), [1.02, 3.06, 3.0])
    with pytest.raises(ValueError, match="epsilon"):
        run("ram", [t1, t2], base, {"epsilon": -1.0})


# --- r_tsvm -------------------------------------------------------------------------------------


def test_r_tsvm_pieces() -> None:
    x = T([1.0, -1.0, 1.0, -1.0, 100.0])
    clipped, rest = clip_outliers(x, 3.0)  # robust sd 1.4826 -> threshold 4.4478
    assert close(clipped, [1.0, -1.0, 1.0, -1.0, 3 * 1.4826], 1e-5)
    assert close(clipped + rest, x) and int((rest != 0).sum()) == 1
    sparse = torch.zeros(8, 8)
    sparse.view(-1)[:16] = T([1.0, -1.0] * 8)
    assert effective_density(sparse) == pytest.approx(0.25)
    assert effective_density(torch.ones(4, 4)) == pytest.approx(1.0)
    assert effective_density(torch.zeros(2, 2)) == 0.0
    assert adaptive_rank(torch.ones(8, 8), 4) == 4
    assert adaptive_rank(sparse, 4) == math.ceil(4 * 0.25 / DENSE_DENSITY) == 2


def test_r_tsvm_hand_values_and_tsv_limit() -> None:
    base = torch.zeros(2, 2)
    d1, d2 = T([[3.0, 0.0], [0.0, 0.0]]), T([[0.0, 0.0], [0.0, 2.0]])
    assert close(r_tsvm(base, [d1, d2]), [[3.0, 0.0], [0.0, 2.0]], 1e-5)
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(12, 10, generator=gen)
    tasks = [base + torch.randn(12, 10, generator=gen) for _ in range(3)]
    plain = r_tsvm(base, tasks, [0.5, 1.0, 2.0], outlier_k=None, adaptive=False)
    assert close(plain, tsv(base, tasks, [0.5, 1.0, 2.0]), 1e-5)  # no additions: TSV-Merge
    one = r_tsvm(base, tasks[:1], adaptive=False)  # one task at full rank: the model back
    assert close(one, tasks[0], 1e-4)
    assert close(r_tsvm(base, [base.clone(), base.clone()]), base)  # no change: the base
    assert close(r_tsvm(torch.zeros(2), [T([1.0, 2.0]), T([3.0, 0.0])]), [2.0, 1.0])  # 1-D


def test_r_tsvm_keeps_an_outlier_the_low_rank_part_would_lose() -> None:
    gen = torch.Generator().manual_seed(3)
    base = torch.zeros(16, 16)
    u, v = torch.randn(16, 1, generator=gen), torch.randn(1, 16, generator=gen)
    task = u @ v  # rank one ...
    task[5, 7] += 200.0  # ... plus one huge entry
    other = torch.randn(16, 1, generator=gen) @ torch.randn(1, 16, generator=gen)
    robust = r_tsvm(base, [task, other], sv_reduction=1 / 16)  # one singular triplet each
    plain = r_tsvm(base, [task, other], sv_reduction=1 / 16, outlier_k=None)
    # Without clipping the spike takes the task's only direction; with it the rank-1 part
    # survives and the spike comes back through the residual.
    assert float(robust[5, 7]) == pytest.approx(float(task[5, 7]), rel=0.05)
    mask = torch.ones(16, 16, dtype=torch.bool)
    mask[5, 7] = False
    err_robust = float((robust - task - other)[mask].norm())
    err_plain = float((plain - task - other)[mask].norm())
    assert err_robust < 0.5 * err_plain


def test_r_tsvm_validates_parameters() -> None:
    base, x = torch.zeros(3, 3), torch.ones(3, 3)
    with pytest.raises(ValueError, match="outlier_k"):
        run("r_tsvm", [x], base, {"outlier_k": 0.0})
    with pytest.raises(ValueError, match="sv_reduction"):
        run("r_tsvm", [x], base, {"sv_reduction": 0.0})
    with pytest.raises(ValueError, match="base"):
        run("r_tsvm", [x])


# --- through the YAML driver ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("tiny")
    gen = torch.Generator().manual_seed(0)
    base = {"a.weight": torch.randn(8, 6, generator=gen), "b.bias": torch.randn(6, generator=gen)}
    paths = {}
    for i, name in enumerate(("base", "ft0", "ft1")):
        state = {k: v + (0.05 * torch.randn(v.shape, generator=gen) if i else 0) for k, v in
                 base.items()}  # fmt: skip
        paths[name] = root / name
        paths[name].mkdir()
        save_file({k: v.contiguous() for k, v in state.items()}, paths[name] / "model.safetensors")
    return paths


@pytest.mark.parametrize("name", NEW)
def test_new_methods_run_from_yaml(name: str, tiny: dict[str, Path], tmp_path: Path) -> None:
    from safetensors.torch import load_file

    models: list[dict[str, Any]] = [{"model": str(tiny["ft0"])}, {"model": str(tiny["ft1"])}]
    params: dict[str, Any] = {}
    if name in ("nearswap", "arcee_fusion"):
        models = models[:1]
    if name == "nearswap":
        params = {"t": 0.02}
    if name == "multislerp":
        models = [
            dict(m, parameters={"weight": w}) for m, w in zip(models, (0.6, 0.4), strict=True)
        ]
    cfg = {"merge_method": name, "base_model": str(tiny["base"]), "models": models}
    if params:
        cfg["parameters"] = params
    merge(cfg, tmp_path / "out", seed=0)
    out = load_file(tmp_path / "out" / "model.safetensors")
    base = load_file(tiny["base"] / "model.safetensors")
    assert set(out) == set(base)
    assert all(torch.isfinite(v).all() and v.shape == base[k].shape for k, v in out.items())
    assert any(not torch.equal(v, base[k]) for k, v in out.items())
