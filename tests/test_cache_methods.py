"""KV-cache methods (issue 16): each on small hand-computed tensors (which entries are kept or
merged, with which weights), the budget, attention statistics and a contract over the
registry. Numpy only."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from splice.models.merging.cache import (
    CACHE_METHODS,
    EMS,
    H2O,
    Budget,
    CacheInputs,
    CaM,
    KVMerger,
    RandomEviction,
    SnapKV,
    StreamingLLM,
    attention_scores,
    cache_method_names,
    compress_layer,
    get_cache_method,
)
from splice.models.merging.cache.cam import cam_merge
from splice.models.merging.cache.ems import global_local_scores
from splice.models.merging.cache.kvmerger import gaussian_weights, merging_sets
from splice.models.merging.cache.snapkv import max_pool


def softmax(logits: list[float]) -> list[float]:
    exps = [math.exp(x) for x in logits]
    return [e / sum(exps) for e in exps]


def inputs_for(keys, values=None, **kw) -> CacheInputs:
    keys = np.asarray(keys, dtype=np.float64)
    if keys.ndim == 2:
        keys = keys[None]
    if values is None:
        values = keys * 10 + 1
    values = np.asarray(values, dtype=np.float64).reshape(keys.shape)
    for name in ("attention", "queries"):
        if name in kw and kw[name] is not None:
            kw[name] = np.asarray(kw[name], dtype=np.float64)
    return CacheInputs(keys=keys, values=values, **kw)


# ---------------------------------------------------------------- budget and statistics


def test_budget_sizes_follow_kvpress_and_stay_in_range() -> None:
    for ratio in (0.0, 0.1, 0.25, 0.3, 0.5, 0.7, 0.9, 0.95):
        budget = Budget.from_compression_ratio(ratio)
        for n in range(1, 60):
            kvpress = int(n * (1 - ratio))  # kvpress's own float expression
            assert budget.size(n) == max(1, kvpress), (ratio, n)
    assert Budget(entries=16).size(100) == 16
    assert Budget(entries=16).size(5) == 5
    assert Budget(entries=16).size(0) == 0
    assert Budget(keep_ratio=0.01).size(10) == 1
    for bad in (
        lambda: Budget(),
        lambda: Budget(keep_ratio=0.5, entries=3),
        lambda: Budget(keep_ratio=0.0),
        lambda: Budget(entries=0),
        lambda: Budget.from_compression_ratio(1.0),
    ):
        with pytest.raises(ValueError):
            bad()


def test_attention_scores_group_heads_and_mask_the_future() -> None:
    keys = np.array([[[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]])  # 1 kv head, n=3, d=2
    queries = np.array([[[2.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [0.0, 0.0]]])  # 2 query heads, w=2
    scale = 1 / math.sqrt(2)
    expected = np.zeros((2, 2, 3))
    for head in range(2):
        for i in range(2):
            visible = 3 - 2 + i + 1  # query i is entry 1 + i: it sees entries 0..1+i
            logits = [scale * float(queries[head, i] @ keys[0, j]) for j in range(visible)]
            expected[head, i, :visible] = softmax(logits)
    got = attention_scores(keys, queries)
    np.testing.assert_allclose(got[0], expected.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(
        attention_scores(keys, queries, group="sum")[0], expected.sum(axis=0), atol=1e-12
    )
    assert got[0, 0, 2] == 0.0  # the first query does not see the last entry
    full = attention_scores(keys, queries, causal=False)
    assert full[0, 0, 2] > 0


# ---------------------------------------------------------------- eviction methods


def test_streaming_llm_keeps_sinks_and_recent() -> None:
    keys = np.arange(20.0).reshape(1, 10, 2)
    out = StreamingLLM(sinks=2)(inputs_for(keys), Budget(entries=6))
    assert out.positions.tolist() == [[0, 1, 6, 7, 8, 9]]
    np.testing.assert_array_equal(out.keys[0], keys[0, [0, 1, 6, 7, 8, 9]])
    # a budget at or below the sinks keeps budget - 1 sinks and the newest entry
    out = StreamingLLM(sinks=4)(inputs_for(keys), Budget(entries=3))
    assert out.positions.tolist() == [[0, 1, 9]]


def test_random_is_reproducible_per_seed_and_layer() -> None:
    rng = np.random.default_rng(1)
    keys = rng.normal(size=(3, 40, 4))
    first = RandomEviction(seed=7)(inputs_for(keys), 10)
    again = RandomEviction(seed=7)(inputs_for(keys), 10)
    np.testing.assert_array_equal(first.positions, again.positions)
    other_seed = RandomEviction(seed=8)(inputs_for(keys), 10)
    other_layer = RandomEviction(seed=7)(inputs_for(keys, layer=1), 10)
    assert not np.array_equal(first.positions, other_seed.positions)
    assert not np.array_equal(first.positions, other_layer.positions)
    assert not np.array_equal(first.positions[0], first.positions[1])  # heads draw apart
    for head in range(3):
        np.testing.assert_array_equal(first.keys[head], keys[head, first.positions[head]])


def test_h2o_keeps_recent_and_heavy_hitters_per_head() -> None:
    keys = np.arange(24.0).reshape(2, 6, 2)
    attention = [[0.1, 0.5, 0.05, 0.3, 0.0, 0.05], [0.4, 0.0, 0.0, 0.1, 0.3, 0.2]]
    out = H2O(recent=0.5)(inputs_for(keys, attention=attention), 4)
    # the last 2 entries, plus the 2 earlier entries with the most attention, per head
    assert out.positions.tolist() == [[1, 3, 4, 5], [0, 3, 4, 5]]
    np.testing.assert_array_equal(out.keys[1], keys[1, [0, 3, 4, 5]])


def test_h2o_scores_come_from_the_queries() -> None:
    # d=1: a query of 1 gives logits equal to the keys; entry 1 stands out
    keys = np.array([[[0.0], [4.0], [0.0], [1.0], [0.0], [0.0]]])
    queries = np.array([[[1.0]]])
    out = H2O(recent=0.5)(inputs_for(keys, queries=queries), 4)
    assert out.positions.tolist() == [[1, 3, 4, 5]]
    with pytest.raises(ValueError, match="needs queries"):
        H2O()(inputs_for(keys), 4)


def test_snapkv_pools_window_attention() -> None:
    np.testing.assert_array_equal(
        max_pool(np.array([[1.0, 5, 2, 0, 0, 3]]), 3), [[5.0, 5, 5, 2, 3, 3]]
    )
    keys = np.arange(16.0).reshape(1, 8, 2)
    attention = [[0.1, 0.9, 0.1, 0.0, 0.3, 0.0, 0.5, 0.5]]
    plain = SnapKV(window=2, kernel=1)(inputs_for(keys, attention=attention), 4)
    assert plain.positions.tolist() == [[1, 4, 6, 7]]  # window 6, 7 + the top-2 before it
    pooled = SnapKV(window=2, kernel=3)(inputs_for(keys, attention=attention), 4)
    assert pooled.positions.tolist() == [[0, 1, 6, 7]]  # pooled [.9 .9 .9 .3 .3 .3]: ties go early


def test_snapkv_reads_only_the_observation_window() -> None:
    rng = np.random.default_rng(3)
    keys, queries = rng.normal(size=(2, 12, 4)), rng.normal(size=(4, 5, 4))
    window = queries[:, -3:]
    got = SnapKV(window=3, kernel=1)(inputs_for(keys, queries=queries), 6)
    attention = attention_scores(keys, window).sum(axis=1)  # (2, 12)
    want = SnapKV(window=3, kernel=1)(inputs_for(keys, attention=attention), 6)
    np.testing.assert_array_equal(got.positions, want.positions)
    assert (got.positions[:, -3:] == [9, 10, 11]).all()


# ---------------------------------------------------------------- KVMerger

# keys whose neighbours are similar: cos(0,1)=.894, cos(2,3)=.995, cos(3,4)=.982, cos(1,2)=.447
MERGE_KEYS = np.array([[1.0, 0.0], [1.0, 0.5], [0.0, 1.0], [0.1, 1.0], [0.3, 1.0], [1.0, 1.0]])


def plan_of(keep: int, scores=None, *, heavy: int = 0, threshold: float = 0.75):
    scores = None if scores is None else np.asarray(scores, dtype=np.float64)
    plan = merging_sets(MERGE_KEYS, scores, keep, recent=1, heavy=heavy, threshold=threshold)
    return plan.group.tolist(), plan.pivots.tolist()


def test_kvmerger_sets_take_the_most_similar_links_the_budget_needs() -> None:
    # keep 3 of 6 with the newest protected: all three similar links merge
    assert plan_of(3) == ([0, 0, 1, 1, 1, 2], [1, 4, 5])
    # keep 4: the two most similar links (2-3, 3-4)
    assert plan_of(4) == ([0, 1, 2, 2, 2, 3], [0, 1, 4, 5])
    # keep 5: only the most similar one
    assert plan_of(5) == ([0, 1, 2, 2, 3, 4], [0, 1, 3, 4, 5])


def test_kvmerger_evicts_when_similar_links_run_out() -> None:
    # only 2-3 clears 0.99: one merge, then the two oldest free sets go (key-only)
    assert plan_of(3, threshold=0.99) == ([-1, -1, 0, 0, 1, 2], [3, 4, 5])
    # with attention the weakest sets go ({0}: .05, {4}: .2) and pivots follow attention
    scores = [0.05, 0.3, 0.1, 0.15, 0.2, 0.2]
    assert plan_of(3, scores, threshold=0.99) == ([-1, 0, 1, 1, -1, 2], [1, 3, 5])


def test_kvmerger_protects_heavy_entries() -> None:
    # key-only: the first entry is protected (a sink); 0-1 can no longer merge
    assert plan_of(3, heavy=1) == ([0, -1, 1, 1, 1, 2], [0, 4, 5])
    # with attention: the most attended non-recent entry is protected instead
    # (entry 2); both free runs merge, then the weaker ({3, 4}: .15) is evicted
    scores = [0.1, 0.15, 0.5, 0.1, 0.05, 0.1]
    assert plan_of(3, scores, heavy=1) == ([0, 0, 1, -1, -1, 2], [1, 2, 5])


def test_kvmerger_merges_with_gaussian_weights_around_the_pivot() -> None:
    sigma = 0.2
    values = np.arange(12.0).reshape(6, 2) ** 2
    out = KVMerger(recent=0.34, heavy=0.0, sigma=sigma)(
        inputs_for(MERGE_KEYS, values), Budget(entries=3)
    )
    assert out.positions.tolist() == [[1, 4, 5]]

    def kernel(i: int, pivot: int) -> float:
        return math.exp(-float(((MERGE_KEYS[i] - MERGE_KEYS[pivot]) ** 2).sum()) / (2 * sigma**2))

    for slot, (members, pivot) in enumerate((([0, 1], 1), ([2, 3, 4], 4), ([5], 5))):
        raw = [kernel(i, pivot) for i in members]
        weights = [r / sum(raw) for r in raw]
        pairs = list(zip(weights, members, strict=True))
        np.testing.assert_allclose(out.keys[0, slot], sum(w * MERGE_KEYS[i] for w, i in pairs))
        np.testing.assert_allclose(out.values[0, slot], sum(w * values[i] for w, i in pairs))
    plan = merging_sets(MERGE_KEYS, None, 3, recent=1, heavy=0, threshold=0.75)
    weights = gaussian_weights(MERGE_KEYS, plan, sigma)
    assert weights[1] == 1 / (1 + kernel(0, 1))  # the pivot weighs most
    assert weights[0] < weights[1]


def test_kvmerger_uses_queries_for_pivots_when_given() -> None:
    # d=2 query along the first axis: entry 0 gets more attention than entry 1 in set {0, 1}
    queries = np.array([[[3.0, -3.0]]])
    out = KVMerger(recent=0.34, heavy=0.0)(inputs_for(MERGE_KEYS, queries=queries), 3)
    assert out.positions[0, 0] == 0
    key_only = KVMerger(recent=0.34, heavy=0.0)(inputs_for(MERGE_KEYS), 3)
    assert key_only.positions[0, 0] == 1


# ---------------------------------------------------------------- CaM


def test_cam_merges_evicted_values_into_following_kept_ones() -> None:
    values = np.array([[[1.0], [2.0], [4.0], [8.0], [16.0], [32.0]]])
    scores = np.array([[0.1, 0.2, 0.3, 0.2, 0.4, 0.0]])
    kept = np.array([[1, 3, 4]])
    # entry 0 -> targets 1, 3: p = .1 / mean(.2, .2) = .5; entry 2 -> 3, 4: p = .3 / .3 = 1;
    # entry 5 has no kept entry after it: dropped
    uniform = np.array([[0.4, 0.0, 0.99, 0.0, 0.0, 0.0]])
    merged = cam_merge(values, scores, kept, 2, uniform)
    np.testing.assert_allclose(merged[0, :, 0], [2 + 1 / 2, 8 + 1 / 2 + 4 / 2, 16 + 4 / 2])
    uniform[0, 0] = 0.6  # above p = .5: entry 0 is not merged
    merged = cam_merge(values, scores, kept, 2, uniform)
    np.testing.assert_allclose(merged[0, :, 0], [2, 8 + 4 / 2, 16 + 4 / 2])
    # a window running past the end: the one target there is takes the whole value
    merged = cam_merge(values, scores, np.array([[0, 1, 4]]), 2, np.zeros((1, 6)))
    np.testing.assert_allclose(merged[0, :, 0], [1, 2, 16 + 4 + 8])


def test_cam_keeps_h2o_entries_and_their_keys() -> None:
    rng = np.random.default_rng(5)
    keys, values = rng.normal(size=(2, 16, 4)), rng.normal(size=(2, 16, 4))
    attention = rng.random((2, 16))
    cam = CaM(recent=0.5, window=3, seed=1)(inputs_for(keys, values, attention=attention), 6)
    h2o = H2O(recent=0.5)(inputs_for(keys, values, attention=attention), 6)
    np.testing.assert_array_equal(cam.positions, h2o.positions)
    np.testing.assert_array_equal(cam.keys, h2o.keys)  # values only are merged
    assert not np.allclose(cam.values, h2o.values)
    again = CaM(recent=0.5, window=3, seed=1)(inputs_for(keys, values, attention=attention), 6)
    np.testing.assert_array_equal(cam.values, again.values)


# ---------------------------------------------------------------- EMS


def test_ems_global_local_score() -> None:
    keys = np.array([[[0.0], [1.0], [2.0]]])  # d=1, scale 1: logits are q * k
    queries = np.array([[[1.0], [2.0]]])  # the queries of entries 1 and 2
    first = softmax([0.0, 1.0])  # entry 1 sees entries 0, 1
    second = softmax([0.0, 2.0, 4.0])  # entry 2 sees all three
    global_mean = [(first[0] + second[0]) / 2, (first[1] + second[1]) / 2, second[2]]
    local_mean = second  # local_window 1: the last query alone
    want = [
        0.25 * g / sum(global_mean) + 0.75 * lo / sum(local_mean)
        for g, lo in zip(global_mean, local_mean, strict=True)
    ]
    got = global_local_scores(keys, queries, local_window=1, local_weight=0.75)
    np.testing.assert_allclose(got[0], want, atol=1e-12)


EMS_KEYS = np.array([[1.0, 0.0], [0.0, 1.0], [0.9, 0.1], [0.1, 0.9], [-1.0, 0.0]])


def test_ems_merges_evicted_into_similar_centres_and_drops_the_rest() -> None:
    values = np.arange(10.0).reshape(5, 2)
    scores = [0.4, 0.3, 0.1, 0.1, 0.1]
    out = EMS(threshold=0.5)(inputs_for(EMS_KEYS, values, attention=[scores]), 2)
    assert out.positions.tolist() == [[0, 1]] and out.valid is None
    # 2 joins centre 0 and 3 joins centre 1 (score-weighted); 4 resembles neither: zero class
    np.testing.assert_allclose(out.keys[0, 0], (0.4 * EMS_KEYS[0] + 0.1 * EMS_KEYS[2]) / 0.5)
    np.testing.assert_allclose(out.values[0, 1], (0.3 * values[1] + 0.1 * values[3]) / 0.4)
    strict = EMS(threshold=0.999)(inputs_for(EMS_KEYS, values, attention=[scores]), 2)
    np.testing.assert_allclose(strict.keys[0], EMS_KEYS[[0, 1]])  # nothing similar enough


def test_ems_heads_keep_what_their_scores_need() -> None:
    keys = np.stack([EMS_KEYS, EMS_KEYS])
    scores = [[0.4, 0.3, 0.1, 0.1, 0.1], [0.96, 0.01, 0.01, 0.01, 0.01]]
    out = EMS(coverage=0.9, threshold=2.0)(inputs_for(keys, attention=scores), 3)
    # head 0 needs 4 entries for 90% (more than the budget: 3); head 1 one
    assert out.valid.tolist() == [[True, True, True], [True, False, False]]
    assert out.positions.tolist() == [[0, 1, 2], [0, -1, -1]]
    np.testing.assert_array_equal(out.keys[1, 1:], 0.0)
    nothing = EMS(coverage=0.0)(inputs_for(keys, attention=scores), 3)
    assert not nothing.valid.any()
    with pytest.raises(ValueError, match="padded"):
        compress_layer(keys[None], keys[None], EMS(coverage=0.9), 3, attention=np.array(scores))


# ---------------------------------------------------------------- registry contract


def random_layer(seed: int = 0, heads: int = 2, group: int = 2, n: int = 24, dim: int = 8):
    rng = np.random.default_rng(seed)
    keys = rng.normal(size=(heads, n, dim)).astype(np.float32)
    values = rng.normal(size=(heads, n, dim)).astype(np.float32)
    queries = rng.normal(size=(heads * group, 6, dim)).astype(np.float32)
    return keys, values, queries


@pytest.mark.parametrize("name", sorted(CACHE_METHODS))
def test_every_method_keeps_the_contract(name: str) -> None:
    method = get_cache_method(name)
    assert method.name == name and method.describe()
    assert set(method.parameters()) == {f for f in vars(method)}
    keys, values, queries = random_layer()
    before = keys.copy(), values.copy()
    heads, n, dim = keys.shape
    for budget in (Budget(entries=1), Budget(entries=7), Budget.from_compression_ratio(0.5)):
        layer = CacheInputs(keys, values, queries=queries, layer=2)
        out = method(layer, budget)
        keep = budget.size(n)
        assert out.keys.shape == out.values.shape == (heads, keep, dim)
        assert out.keys.dtype == np.float32 and out.positions.shape == (heads, keep)
        valid = np.ones((heads, keep), bool) if out.valid is None else out.valid
        for head in range(heads):
            kept = out.positions[head][valid[head]]
            assert ((kept >= 0) & (kept < n)).all() and (np.diff(kept) > 0).all()
        again = method(CacheInputs(keys, values, queries=queries, layer=2), budget)
        np.testing.assert_array_equal(out.keys, again.keys)
        np.testing.assert_array_equal(out.values, again.values)
    np.testing.assert_array_equal(keys, before[0])  # inputs untouched
    np.testing.assert_array_equal(values, before[1])
    whole = method(CacheInputs(keys, values, queries=queries), Budget(entries=n))
    assert whole.keys is keys and whole.positions.tolist() == [list(range(n))] * heads
    if method.query_use == "required":
        with pytest.raises(ValueError, match="needs queries"):
            method(CacheInputs(keys, values), 5)
    else:
        assert method(CacheInputs(keys, values), 5).size == 5


def test_registry_names_and_errors() -> None:
    assert cache_method_names() == sorted(
        ["streaming_llm", "random", "h2o", "snapkv", "kvmerger", "cam", "ems"]
    )
    assert get_cache_method("streaming_llm", sinks=2).sinks == 2
    with pytest.raises(ValueError, match="known"):
        get_cache_method("nope")
    with pytest.raises(ValueError, match="no parameter"):
        get_cache_method("h2o", sinks=2)
    with pytest.raises(ValueError):
        KVMerger(sigma=0)


def test_compress_layer_is_the_method_on_batch_one_arrays() -> None:
    keys, values, queries = random_layer(4)
    out = compress_layer(keys[None], values[None], "h2o", 9, queries=queries[None], layer=3)
    want = H2O()(CacheInputs(keys, values, queries=queries, layer=3), 9)
    np.testing.assert_array_equal(out.keys, want.keys)
    np.testing.assert_array_equal(out.positions, want.positions)
    with pytest.raises(ValueError, match="batch|1, kv_heads"):
        compress_layer(keys, values, "h2o", 9)


def test_the_package_and_serving_do_not_import_torch() -> None:
    code = (
        "import sys, splice.models.merging.cache, splice.models.serving.lm; "
        "print(sorted({'torch', 'transformers'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_snapkv_pools_as_torch_avg_pool1d_and_refuses_unknown_pooling() -> None:
    torch = pytest.importorskip("torch")
    from splice.models.merging.cache.snapkv import avg_pool

    scores = np.random.default_rng(0).random((3, 17))
    for kernel in (1, 3, 5, 7):
        want = torch.nn.functional.avg_pool1d(
            torch.from_numpy(scores)[:, None], kernel, stride=1, padding=kernel // 2
        )[:, 0].numpy()
        assert np.allclose(avg_pool(scores, kernel), want, atol=1e-12)
    with pytest.raises(ValueError, match="pooling"):
        get_cache_method("snapkv", pooling="mean")


def test_scatter_add_sums_repeated_indices_as_add_at() -> None:
    from splice.models.merging.cache.base import scatter_add

    rng = np.random.default_rng(5)
    rows = rng.integers(0, 3, size=(3, 40))  # (heads, n): broadcast with the slots below
    slots = rng.integers(0, 7, size=(3, 40))
    data = rng.normal(size=(3, 40, 4))
    want, got = np.zeros((3, 7, 4)), np.zeros((3, 7, 4))
    np.add.at(want, (rows, slots), data)
    scatter_add(got, (rows, slots), data)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    flat_want, flat_got = np.ones(5), np.ones(5)
    index = np.array([4, 0, 4, 4, 2])
    np.add.at(flat_want, index, 2.0)
    scatter_add(flat_got, (index,), np.full(5, 2.0))
    np.testing.assert_array_equal(flat_got, flat_want)
    scatter_add(flat_got, (np.array([], dtype=int),), np.zeros(0))  # nothing to add
    np.testing.assert_array_equal(flat_got, flat_want)
    with pytest.raises(ValueError, match="contiguous"):
        scatter_add(np.zeros((4, 4))[:, ::2], (np.array([0]),), np.ones(2))


def test_attention_scores_are_causal_over_the_last_entries() -> None:
    rng = np.random.default_rng(6)
    keys, queries = rng.normal(size=(2, 9, 4)), rng.normal(size=(4, 3, 4))
    probs = attention_scores(keys, queries)  # (2, 3, 9): queries of entries 6, 7, 8
    assert probs.shape == (2, 3, 9)
    np.testing.assert_allclose(probs.sum(axis=-1), 1.0)
    assert (probs[:, 0, 7:] == 0).all() and (probs[:, 1, 8:] == 0).all()
    assert (probs[:, 2] > 0).all() and (probs[:, 0, :7] > 0).all()
    logits = np.einsum("hgwd,hnd->hgwn", queries.reshape(2, 2, 3, 4), keys) / 2.0
    dense = np.exp(logits - logits.max(-1, keepdims=True))
    visible = np.arange(9)[None] <= (6 + np.arange(3))[:, None]
    dense = np.where(visible, dense, 0.0)
    np.testing.assert_allclose(probs, (dense / dense.sum(-1, keepdims=True)).mean(axis=1))
