"""The fast paths of the merging engine give, bit for bit, what the plain formulations give:
the one-model-at-a-time combine against the stacked one (mergekit's), radix selection against
``kthvalue`` and a stable sort, in-place against allocating, and buffers reused across tensors.
"""

from __future__ import annotations

import itertools

import pytest

torch = pytest.importorskip("torch")

from splice.models.merging import workspace  # noqa: E402
from splice.models.merging.engine import merge  # noqa: E402
from splice.models.merging.generalized import (  # noqa: E402
    _combine_stacked,
    combine,
    generalized_task_arithmetic,
    magnitude_sparsifier,
    random_sparsifier,
)
from splice.models.merging.io import ModelReader, write_tensors  # noqa: E402
from splice.models.merging.methods.linear import linear  # noqa: E402
from splice.models.merging.methods.ties import ties  # noqa: E402
from splice.models.merging.sparsify import (  # noqa: E402
    _radix_select,
    magnitude,
    random_drop,
    top_k_mask,
)

INT_OF = {2: torch.int16, 4: torch.int32, 8: torch.int64}


def bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(INT_OF[t.element_size()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(bits(a), bits(b))


def deltas_like(n: int, dtype: torch.dtype, gen: torch.Generator) -> torch.Tensor:
    """Small values with exact zeros, negative zeros and repeated magnitudes."""
    x = torch.randn(n, generator=gen) * 0.01
    r = torch.rand(n, generator=gen)
    x[r < 0.1] = 0.0
    x[(r >= 0.1) & (r < 0.2)] = -0.0
    x[(r >= 0.2) & (r < 0.25)] = 0.005
    return x.to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
def test_combine_matches_the_stacked_formulation_bit_for_bit(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(0)
    weight_sets = [[0.6, 0.4, 0.3], [1.0, -1.0, 0.5], [1e-9, 0.5, -0.5]]
    for count, weights, consensus, normalize, lambda_ in itertools.product(
        (1, 2, 3), weight_sets, (True, False), (True, False), (1.0, 0.7)
    ):
        base = deltas_like(3000, dtype, gen)
        deltas = [deltas_like(3000, dtype, gen) for _ in range(count)]
        ref = _combine_stacked(
            base, [d.clone() for d in deltas], weights[:count], consensus, normalize, lambda_
        )
        kept = [d.clone() for d in deltas]
        out = combine(
            base,
            kept,
            weights[:count],
            consensus=consensus,
            normalize=normalize,
            lambda_=lambda_,
        )
        assert same_bits(out, ref), (count, weights, consensus, normalize, lambda_)
        assert all(same_bits(a, b) for a, b in zip(kept, deltas, strict=True))  # untouched


def test_radix_select_is_kthvalue_with_exact_counts() -> None:
    gen = torch.Generator().manual_seed(1)
    for trial in range(20):
        n = int(torch.randint(4096, 60000, (1,), generator=gen))
        values = torch.randn(n, generator=gen).abs() * 10.0 ** int(
            torch.randint(-6, 3, (1,), generator=gen)
        )
        if trial % 3 == 0:
            values = values.to(torch.bfloat16).float()  # many ties
        if trial % 4 == 0:
            values[: n // 3] = 0.0
        k = int(torch.randint(1, n + 1, (1,), generator=gen))
        value, below, equal = _radix_select(values, k, workspace.Workspace())
        ref = torch.kthvalue(values, k).values
        assert value.item() == ref.item()
        assert below == int((values < ref).sum()) and equal == int((values == ref).sum())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_top_k_mask_is_a_stable_descending_sort(dtype: torch.dtype) -> None:
    gen = torch.Generator().manual_seed(2)
    x = (torch.randn(20000, generator=gen) * 0.01).to(dtype)
    for k in (1, 7, 5000, 10000, 19999):
        ref = torch.zeros(x.numel(), dtype=torch.bool)
        ref[torch.argsort(x.float().abs(), descending=True, stable=True)[:k]] = True
        assert torch.equal(top_k_mask(x, k), ref)


def test_sparsifiers_in_place_match_allocating() -> None:
    gen = torch.Generator().manual_seed(3)
    x = deltas_like(50000, torch.float32, gen)
    for rescale in (False, True):
        ref = magnitude(x, 0.3, rescale=rescale)
        assert same_bits(magnitude(x.clone(), 0.3, rescale=rescale, inplace=True), ref)
        first = random_drop(x, 0.4, rescale, torch.Generator().manual_seed(5))
        again = random_drop(x.clone(), 0.4, rescale, torch.Generator().manual_seed(5), inplace=True)
        assert same_bits(first, again)


def test_in_place_merges_match_and_public_functions_leave_inputs_alone() -> None:
    gen = torch.Generator().manual_seed(4)
    base = torch.randn(64, 128, generator=gen)
    tensors = [base + 0.01 * torch.randn(64, 128, generator=gen) for _ in range(3)]
    copies = [t.clone() for t in tensors]
    ref = ties(base, tensors, [0.5, 0.3, 0.2], [0.4, 0.5, 0.6])
    assert all(torch.equal(a, b) for a, b in zip(tensors, copies, strict=True))
    owned = [t.clone() for t in tensors]
    with workspace.active():
        out = generalized_task_arithmetic(
            base,
            owned,
            [0.5, 0.3, 0.2],
            sparsifier=magnitude_sparsifier([0.4, 0.5, 0.6]),
            consensus=True,
            normalize=True,
            inplace=True,
        )
        # a second merge in the same workspace leaves the first result alone
        generalized_task_arithmetic(
            base,
            [t.clone() for t in tensors],
            [1.0, 1.0, 1.0],
            sparsifier=random_sparsifier([0.5] * 3, generator=torch.Generator().manual_seed(0)),
            consensus=True,
            inplace=True,
        )
    assert same_bits(out, ref)
    lin = linear([t.clone() for t in tensors], [0.2, 0.3, 0.5], inplace=True)
    assert same_bits(lin, linear(tensors, [0.2, 0.3, 0.5]))


def test_read_into_a_buffer(tmp_path) -> None:
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    write_tensors(tmp_path, [("w", t)])
    reader = ModelReader(tmp_path)
    buf = torch.empty(100, dtype=torch.uint8)
    out = reader.read("w", buf)
    reader.close()
    assert torch.equal(out, t) and out.data_ptr() == buf.data_ptr()


def test_merge_is_the_same_with_any_thread_count(tmp_path) -> None:
    gen = torch.Generator().manual_seed(6)
    shapes = {"model.embed_tokens.weight": (300, 64), "model.norm.weight": (64,)}
    for i in range(2):
        shapes[f"model.layers.{i}.mlp.up_proj.weight"] = (128, 64)
    base = {k: torch.randn(s, generator=gen) for k, s in shapes.items()}
    models = []
    for j in range(3):
        path = tmp_path / f"m{j}"
        noise = {k: 0.01 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
        write_tensors(path, [(k, v + noise[k] if j else v) for k, v in base.items()])
        models.append(str(path))
    config = {
        "merge_method": "ties",
        "base_model": models[0],
        "models": [
            {"model": models[1], "parameters": {"weight": 0.6, "density": 0.5}},
            {"model": models[2], "parameters": {"weight": 0.4, "density": 0.3}},
        ],
    }
    outs = []
    for threads in (1, 2):
        merge(config, tmp_path / f"out{threads}", threads=threads)
        outs.append(read_all(tmp_path / f"out{threads}", shapes))
    inputs = [read_all(m, shapes) for m in models]
    for name in shapes:
        assert same_bits(outs[0][name], outs[1][name])
        ref = ties(inputs[0][name], [inputs[1][name], inputs[2][name]], [0.6, 0.4], [0.5, 0.3])
        assert same_bits(outs[0][name], ref)


def read_all(path, names) -> dict:
    reader = ModelReader(path)
    try:
        return {k: reader.read(k) for k in names}
    finally:
        reader.close()
