"""The KV-cache methods' adapters (issue 16): the transformers cache in ``generate`` on a real
tiny Llama (built from a config, no downloads), and serving's ``KVCache.compressed``; every
adapter gives the numpy core's cache on the same input."""

from __future__ import annotations

import numpy as np
import pytest
from splice.models.merging.cache import (
    Budget,
    CacheInputs,
    attention_scores,
    cache_method_names,
    get_cache_method,
)
from splice.models.serving.lm import KVCache

PROMPT = 24
HEADS, KV_HEADS, HIDDEN = 4, 2, 64


@pytest.fixture(scope="module")
def model():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=101,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=256,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs several times faster on one thread
    yield transformers.LlamaForCausalLM(config).eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prompt(model):
    import torch

    return torch.randint(3, 101, (1, PROMPT), generator=torch.Generator().manual_seed(1))


def cache_for(name: str, budget, model, **kw):
    from splice.models.merging.cache.hf import CompressedCache

    needs_queries = get_cache_method(name).query_use != "never"
    return CompressedCache(name, budget, model=model if needs_queries else None, **kw)


def greedy(model, prompt, cache, new: int, **kw):
    import torch

    with torch.no_grad():
        return model.generate(
            prompt, cache=cache, max_new_tokens=new, min_new_tokens=new, do_sample=False, **kw
        )


@pytest.mark.parametrize("name", ["streaming_llm", "h2o"])
def test_uncompressed_cache_generates_the_plain_tokens(model, prompt, name: str) -> None:
    from transformers import DynamicCache

    plain = greedy(model, prompt, DynamicCache(), 20)
    with cache_for(name, 1000, model) as cache:
        ours = greedy(model, prompt, cache, 20)
    assert ours.tolist() == plain.tolist()
    assert cache.get_seq_length() == cache.stored_length(1) == PROMPT + 19
    assert cache.layers[0].compressions == 0


@pytest.mark.parametrize("name", cache_method_names())
def test_stored_length_stays_at_the_budget(model, prompt, name: str) -> None:
    from transformers import LogitsProcessor

    seen: list[tuple[int, list[int]]] = []

    class Record(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append((cache.get_seq_length(), [cache.stored_length(i) for i in range(2)]))
            return scores

    with cache_for(name, 16, model) as cache:
        out = greedy(model, prompt, cache, 64, logits_processor=[Record()])
    assert out.shape[1] == PROMPT + 64 and len(seen) == 64
    assert seen == [(PROMPT + step, [16, 16]) for step in range(64)]
    assert cache.layers[1].compressions == 64  # after the prompt and every new token
    positions = cache.positions(0)
    assert positions.shape == (1, KV_HEADS, 16)
    assert (np.diff(positions, axis=-1) > 0).all()
    assert positions.min() >= 0 and positions.max() <= PROMPT + 62  # the last token is not read


def test_a_ratio_budget_follows_the_tokens_seen(model, prompt) -> None:
    from transformers import LogitsProcessor

    budget = Budget.from_compression_ratio(0.5)
    seen: list[tuple[int, int]] = []

    class Record(LogitsProcessor):
        def __call__(self, input_ids, scores):
            seen.append((budget.size(cache.get_seq_length()), cache.stored_length(0)))
            return scores

    with cache_for("streaming_llm", budget, model) as cache:
        greedy(model, prompt, cache, 8, logits_processor=[Record()])
    assert [stored for _, stored in seen] == [want for want, _ in seen]
    assert seen[0] == (PROMPT // 2, PROMPT // 2) and seen[-1][1] == (PROMPT + 7) // 2


@pytest.mark.parametrize("name", ["h2o", "kvmerger", "streaming_llm"])
@pytest.mark.parametrize("step", [1, 3])
def test_positions_stay_true_after_compression(model, prompt, name: str, step: int) -> None:
    import torch
    from transformers import DynamicCache

    def copy_of(cache) -> DynamicCache:
        copy = DynamicCache()
        for i in range(2):
            copy.update(cache.layers[i].keys.clone(), cache.layers[i].values.clone(), i)
        return copy

    nxt = torch.tensor([[5, 6, 7][:step]])
    with torch.no_grad(), cache_for(name, 10, model) as cache:
        model(prompt, cache=cache)
        assert cache.stored_length(0) == 10 and cache.get_seq_length() == PROMPT
        after_prompt = cache.positions(0)[0, 0].tolist()
        manual = copy_of(cache)
        naive = copy_of(cache)
        ours = model(nxt, cache=cache).logits
    true_positions = torch.arange(PROMPT, PROMPT + step)[None]
    want = model(nxt, cache=manual, position_ids=true_positions).logits
    torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-5)
    wrong = model(nxt, cache=naive).logits  # positions from 10: what a plain cache would use
    assert not torch.allclose(ours, wrong, atol=1e-3)
    assert cache.get_seq_length() == PROMPT + step and cache.stored_length(0) == 10
    if name == "streaming_llm":  # 4 sinks and the newest, before and after the step
        assert after_prompt == [0, 1, 2, 3, *range(PROMPT - 6, PROMPT)]
        newest = PROMPT + step
        assert cache.positions(0)[0, 0].tolist() == [0, 1, 2, 3, *range(newest - 6, newest)]


def test_recorded_queries_give_the_models_attention(model, prompt) -> None:
    import copy

    import torch

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    with torch.no_grad(), cache_for("h2o", 1000, eager) as cache:
        out = eager(prompt, cache=cache, output_attentions=True)
    for layer in range(2):
        queries = torch.cat(cache.layers[layer].queries, dim=2)[0].numpy()  # (4, 24, 16)
        keys = cache.layers[layer].keys[0].numpy()  # (2, 24, 16)
        per_head = np.repeat(keys, HEADS // KV_HEADS, axis=0)  # one kv head per query head
        ours = attention_scores(per_head, queries)
        np.testing.assert_allclose(ours, out.attentions[layer][0].numpy(), atol=1e-5)
    assert not eager.model.layers[0].self_attn._forward_pre_hooks  # closed


@pytest.mark.parametrize("name", ["kvmerger", "h2o", "cam", "snapkv", "random"])
def test_adapters_give_the_cores_cache(model, prompt, name: str) -> None:
    import torch

    with torch.no_grad():
        with cache_for("h2o", 1000, model) as reference:  # records keys and queries, no compression
            model(prompt, cache=reference)
        with cache_for(name, 10, model) as hf:
            model(prompt, cache=hf)
    method = get_cache_method(name)
    uses_queries = method.query_use != "never"
    keys = [reference.layers[i].keys.numpy() for i in range(2)]  # (1, 2, 24, 16) each
    values = [reference.layers[i].values.numpy() for i in range(2)]
    queries = [torch.cat(reference.layers[i].queries, dim=2).numpy() for i in range(2)]
    served = KVCache(
        keys=tuple(keys),
        values=tuple(values),
        mask=np.ones((1, PROMPT), dtype=np.int64),
        next_position=np.array([PROMPT]),
    ).compressed(name, 10, queries=queries if uses_queries else None)
    for i in range(2):
        core = method(
            CacheInputs(
                keys[i][0], values[i][0], queries=queries[i][0] if uses_queries else None, layer=i
            ),
            10,
        )
        np.testing.assert_array_equal(hf.layers[i].keys[0].numpy(), core.keys)
        np.testing.assert_array_equal(hf.layers[i].values[0].numpy(), core.values)
        np.testing.assert_array_equal(hf.positions(i)[0], core.positions)
        np.testing.assert_array_equal(served.keys[i][0], core.keys)
        np.testing.assert_array_equal(served.values[i][0], core.values)
    assert served.mask.tolist() == [[1] * 10] and served.next_position.tolist() == [PROMPT]


def test_serving_compresses_the_attended_entries_only() -> None:
    rng = np.random.default_rng(2)
    keys = tuple(rng.normal(size=(1, 2, 12, 4)).astype(np.float32) for _ in range(3))
    values = tuple(rng.normal(size=(1, 2, 12, 4)).astype(np.float32) for _ in range(3))
    mask = np.array([[0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]])  # left padding: 9 tokens
    logits = rng.normal(size=(1, 7)).astype(np.float32)
    cache = KVCache(keys, values, mask, np.array([9]), logits)
    out = cache.compressed("streaming_llm", Budget(keep_ratio=0.5), queries=None)
    assert out.length == 4 and out.mask.tolist() == [[1, 1, 1, 1]]
    assert out.next_position.tolist() == [9] and out.last_logits is logits
    method = get_cache_method("streaming_llm")
    for i in range(3):
        core = method(CacheInputs(keys[i][0, :, 3:], values[i][0, :, 3:], layer=i), 4)
        np.testing.assert_array_equal(out.keys[i][0], core.keys)
        np.testing.assert_array_equal(out.values[i][0], core.values)
    np.testing.assert_array_equal(out.keys[0][0, :, 0], keys[0][0, :, 3])  # a sink: token 0
    np.testing.assert_array_equal(out.keys[0][0, :, 3], keys[0][0, :, 11])  # the newest
    with pytest.raises(ValueError, match="needs queries"):
        cache.compressed("h2o", 4)
    with pytest.raises(ValueError, match="one row"):
        cache.select([0, 0]).compressed("random", 4)


def test_a_compressed_serving_cache_reads_on_with_true_positions(model, prompt, tmp_path) -> None:
    """Through the exported ONNX graph, as ``CodeLM.forward`` feeds it: the compressed cache's
    next logits are PyTorch's with the same kept entries at their true positions."""
    import copy

    import torch
    from splice.models.serving.lm import present_name
    from splice.models.serving.sessions import open_session
    from splice.models.training.lm_export import export_onnx_graph
    from transformers import DynamicCache

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    export_onnx_graph(eager, tmp_path / "lm.onnx")
    session = open_session(tmp_path / "lm.onnx")
    outputs = ["logits"] + [present_name(i, kind) for i in range(2) for kind in ("key", "value")]
    blank = np.zeros((1, KV_HEADS, 0, HIDDEN // HEADS), dtype=np.float32)
    cache = KVCache((blank, blank), (blank, blank), np.zeros((1, 0), np.int64), np.zeros(1, int))
    ids = prompt.numpy()
    logits, *presents = session.run(outputs, cache.feeds(ids, np.ones_like(ids)))
    cache = cache.extended(presents, np.ones_like(ids), logits)
    small = cache.compressed("kvmerger", 10)
    step = np.array([[5, 6]])
    served, *_ = session.run(outputs, small.feeds(step, np.ones_like(step)))
    manual = DynamicCache()
    for i in range(2):
        manual.update(torch.from_numpy(small.keys[i]), torch.from_numpy(small.values[i]), i)
    with torch.no_grad():
        want = model(torch.from_numpy(step), cache=manual, position_ids=torch.tensor([[24, 25]]))
    np.testing.assert_allclose(served, want.logits.numpy(), atol=1e-4)
    assert small.feeds(step, np.ones_like(step))["position_ids"].tolist() == [[24, 25]]


@pytest.mark.parametrize("name", ["h2o", "snapkv", "cam", "ems"])
def test_the_graph_gives_serving_the_queries_the_transformers_cache_reads(
    model, prompt, tmp_path, name: str
) -> None:
    """The exported graph's ``query.{i}`` outputs are the rotated queries the transformers
    adapter records, so a method that reads queries keeps the same entries on both paths."""
    import copy

    import torch
    from splice.models.serving.lm import present_name, query_name
    from splice.models.serving.sessions import open_session
    from splice.models.training.lm_export import export_onnx_graph

    eager = copy.deepcopy(model)
    eager.set_attn_implementation("eager")
    export_onnx_graph(eager, tmp_path / "lm.onnx")
    session = open_session(tmp_path / "lm.onnx")
    presents = [present_name(i, kind) for i in range(2) for kind in ("key", "value")]
    blank = np.zeros((1, KV_HEADS, 0, HIDDEN // HEADS), dtype=np.float32)
    cache = KVCache((blank, blank), (blank, blank), np.zeros((1, 0), np.int64), np.zeros(1, int))
    ids = prompt.numpy()
    logits, *rest = session.run(
        ["logits", *presents, query_name(0), query_name(1)], cache.feeds(ids, np.ones_like(ids))
    )
    graph_queries = rest[4:]
    served = cache.extended(rest[:4], np.ones_like(ids), logits).compressed(
        name, 10, queries=graph_queries
    )
    with torch.no_grad(), cache_for(name, 10, model) as hf:
        model(prompt, cache=hf)
    with torch.no_grad(), cache_for("h2o", 1000, model) as reference:
        model(prompt, cache=reference)
    for i in range(2):
        recorded = torch.cat(reference.layers[i].queries, dim=2).numpy()
        assert graph_queries[i].shape == recorded.shape == (1, HEADS, PROMPT, HIDDEN // HEADS)
        np.testing.assert_allclose(graph_queries[i], recorded, atol=1e-5)
        np.testing.assert_array_equal(served.keys[i].shape, hf.layers[i].keys.shape)
        np.testing.assert_allclose(served.keys[i], hf.layers[i].keys.numpy(), atol=1e-5)
        np.testing.assert_allclose(served.values[i], hf.layers[i].values.numpy(), atol=1e-5)
