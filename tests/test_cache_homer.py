"""HOMER-style hierarchical prefill (issue 16) on a real tiny Llama built from a config (no
downloads): exact for one chunk, bounded cache and activations for many, positions within the
model's range, and the pruning step keeping what the score says."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from splice.models.merging.cache.homer import (  # noqa: E402
    Chunk,
    HomerTrace,
    hierarchical_nats,
    hierarchical_prefill,
    layer_groups,
    prune_chunk,
    prune_indices,
)

CHUNK, LAYERS, MAX_POSITIONS = 16, 4, 128


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=101,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=MAX_POSITIONS,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs several times faster on one thread
    yield transformers.LlamaForCausalLM(config).eval()
    torch.set_num_threads(threads)


def tokens(n: int, seed: int = 1):
    return torch.randint(3, 101, (1, n), generator=torch.Generator().manual_seed(seed))


def test_one_chunk_is_the_plain_forward(model) -> None:
    ids = tokens(CHUNK - 3)
    cache, next_position, logits = hierarchical_prefill(model, ids, chunk_len=CHUNK)
    with torch.no_grad():
        plain = model(ids, use_cache=True)
    assert next_position == ids.shape[1] == cache.get_seq_length()
    torch.testing.assert_close(logits, plain.logits[:, -1], rtol=0, atol=1e-6)
    assert len(cache.layers) == len(plain.cache.layers) == LAYERS
    for ours, theirs in zip(cache.layers, plain.cache.layers, strict=True):
        torch.testing.assert_close(ours.keys, theirs.keys, rtol=0, atol=1e-6)
        torch.testing.assert_close(ours.values, theirs.values, rtol=0, atol=1e-6)


def test_eight_chunks_keep_the_budget_and_continue(model) -> None:
    trace = HomerTrace()
    cache, next_position, logits = hierarchical_prefill(
        model, tokens(8 * CHUNK), chunk_len=CHUNK, budget=CHUNK // 2, trace=trace
    )
    # the root is two children of CHUNK // 2 each, in every layer (propagative refinement)
    assert [cache.stored_length(i) for i in range(LAYERS)] == [CHUNK] * LAYERS
    assert next_position == CHUNK and cache.get_seq_length() == CHUNK
    assert sorted({layer for layer, _ in trace.runs}) == list(range(LAYERS))
    assert trace.runs[-1][0] == LAYERS - 1  # the root ends at the last layer
    assert trace.longest <= 2 * CHUNK and torch.isfinite(logits).all()

    new = tokens(3, seed=2)
    with torch.no_grad():
        explicit = model(
            new,
            cache=cache,
            use_cache=True,
            position_ids=next_position + torch.arange(3)[None],
        ).logits
    assert torch.isfinite(explicit).all()
    assert cache.stored_length(0) == CHUNK + 3
    # the cache reports the next position itself: a plain forward without position ids agrees
    again, _, _ = hierarchical_prefill(model, tokens(8 * CHUNK), chunk_len=CHUNK)
    with torch.no_grad():
        implicit = model(new, cache=again, use_cache=True).logits
    torch.testing.assert_close(implicit, explicit, rtol=0, atol=1e-5)


def test_generate_continues_from_the_cache(model) -> None:
    ids = tokens(4 * CHUNK)
    cache, next_position, logits = hierarchical_prefill(model, ids, chunk_len=CHUNK)
    first = logits.argmax(-1, keepdim=True)  # (1, 1)
    manual, step = [int(first)], first
    with torch.no_grad():
        for _ in range(3):
            step = model(step, cache=cache, use_cache=True).logits[:, -1].argmax(-1, keepdim=True)
            manual.append(int(step))
    again, _, _ = hierarchical_prefill(model, ids, chunk_len=CHUNK)
    # generate drops the first get_seq_length() = next_position ids as cached: placeholders
    prompt = torch.cat([torch.zeros(1, next_position, dtype=torch.long), first], dim=1)
    with torch.no_grad():
        out = model.generate(prompt, cache=again, max_new_tokens=3, do_sample=False)
    assert out[0, next_position:].tolist() == manual


@pytest.mark.parametrize("chunks", [1, 2, 4, 8])
def test_processed_length_stays_bounded(model, chunks: int) -> None:
    trace = HomerTrace()
    hierarchical_prefill(model, tokens(chunks * CHUNK), chunk_len=CHUNK, trace=trace)
    assert trace.longest <= 2 * CHUNK
    assert trace.max_position < CHUNK


def test_inputs_beyond_the_models_positions(model) -> None:
    seen: list[int] = []
    hook = model.model.rotary_emb.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(int(kwargs["position_ids"].max())),
        with_kwargs=True,
    )
    try:
        n, chunk = MAX_POSITIONS + 72, 32  # 7 chunks of 29
        cache, next_position, logits = hierarchical_prefill(model, tokens(n), chunk_len=chunk)
        with torch.no_grad():
            out = model(tokens(4, seed=3), cache=cache, use_cache=True)
    finally:
        hook.remove()
    assert seen and max(seen) < MAX_POSITIONS
    assert next_position <= chunk and cache.get_seq_length() == next_position + 4
    assert int(cache.positions.max()) < next_position
    assert torch.isfinite(logits).all() and torch.isfinite(out.logits).all()


def test_prune_indices_keep_the_highest_scores_and_the_last() -> None:
    scores = np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.05])
    assert prune_indices(scores, 3, protect_last=1).tolist() == [1, 3, 5]
    assert prune_indices(scores, 3, protect_last=0).tolist() == [1, 2, 3]
    assert prune_indices(scores, 6, protect_last=1).tolist() == list(range(6))


def test_prune_chunk_keeps_the_scored_entries_in_every_layer() -> None:
    n, dim = 6, 2
    hidden = torch.arange(n, dtype=torch.float32).view(1, n, 1).expand(1, n, dim)
    keys = torch.arange(n, dtype=torch.float32).view(1, 1, n, 1).expand(1, 2, n, dim)
    node = Chunk(
        hidden=hidden,
        positions=torch.arange(10, 10 + n)[None],
        kv=[(keys, -keys), (keys + 100, -keys - 100)],
        scores=np.array([0.1, 0.9, 0.3, 0.8, 0.2, 0.05]),
    )
    kept = prune_chunk(node, keep=3, window=1)
    assert kept.hidden[0, :, 0].tolist() == [1, 3, 5]
    assert kept.positions[0].tolist() == [11, 13, 15]
    for layer, (k, v) in enumerate(kept.kv):
        assert k.shape == (1, 2, 3, dim)
        assert k[0, 1, :, 0].tolist() == [1 + 100 * layer, 3 + 100 * layer, 5 + 100 * layer]
        assert torch.equal(v, -k)
    assert prune_chunk(node, keep=n, window=1) is node


def test_layer_groups_end_at_the_last_layer() -> None:
    assert layer_groups(4, 4) == [range(1), range(1, 2), range(2, 3), range(3, 4)]
    assert layer_groups(32, 4, warmup=12) == [
        range(17),
        range(17, 22),
        range(22, 27),
        range(27, 32),
    ]
    assert layer_groups(6, 1) == [range(6)]
    with pytest.raises(ValueError, match="tree levels"):
        layer_groups(4, 5)


def test_a_text_read_through_homer(model) -> None:
    """hierarchical_nats: with room for the whole text, the plain forward's loss (chunk by
    chunk); longer, a finite loss with no position beyond a chunk and a step."""
    ids = tokens(40)[0].tolist()
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].double(), -1)
    plain = -float(logp.gather(1, torch.tensor(ids[1:])[:, None]).sum())
    assert abs(hierarchical_nats(model, ids, chunk_len=64, step=8) - plain) < 1e-6
    assert abs(hierarchical_nats(model, ids, chunk_len=CHUNK, step=8) - plain) > 1e-3
    seen: list[int] = []
    hook = model.model.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(int(kwargs["position_ids"].max())),
        with_kwargs=True,
    )
    try:
        long = tokens(8 * CHUNK, seed=4)[0].tolist()  # 8 chunks: the tree's 4 levels
        nats = hierarchical_nats(model, long, chunk_len=CHUNK, step=8)
    finally:
        hook.remove()
    assert np.isfinite(nats) and 0 < nats / (len(long) - 1) < 10
    assert max(seen) < CHUNK + 8
    with pytest.raises(ValueError):
        hierarchical_nats(model, ids, chunk_len=0)
