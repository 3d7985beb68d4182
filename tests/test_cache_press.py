"""The kvpress-style press (issue 16, section 2): on a real tiny Llama built from a config (no
downloads), ``with CachePress(...)(model): model(prefill)`` leaves the numpy core's cache of the
same keys, values and queries, at exactly its budget; ``compression_ratio`` means what it means
in kvpress (the fraction removed)."""

from __future__ import annotations

import inspect

import numpy as np
import pytest
from splice.models.merging.cache import Budget, cache_method_names, compress_layer, get_cache_method

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from splice.models.merging.cache.press import CachePress  # noqa: E402

PROMPT = 80
HEADS, KV_HEADS, HIDDEN, LAYERS = 4, 2, 64, 2


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=101,
        hidden_size=HIDDEN,
        intermediate_size=128,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=256,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield transformers.LlamaForCausalLM(config).eval()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prompt():
    return torch.randint(3, 101, (1, PROMPT), generator=torch.Generator().manual_seed(1))


def cache_kw(model) -> str:
    """The name the model's forward takes a cache by (``cache`` from transformers 5.2x)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def prefill(model, prompt, press: CachePress | None = None):
    """The cache after one forward of ``prompt``, under ``press`` when given."""
    cache = transformers.DynamicCache()
    with torch.no_grad(), press(model) if press is not None else _nothing():
        model(prompt, use_cache=True, **{cache_kw(model): cache})
    return cache


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.fixture(scope="module")
def reference(model, prompt):
    """Full keys/values per layer and the RoPE'd queries, captured independently of the press:
    the ``q_proj`` outputs through a hook, rotated with transformers' own RoPE function."""
    from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

    projected: dict[int, torch.Tensor] = {}
    hooks = [
        layer.self_attn.q_proj.register_forward_hook(
            lambda _m, _a, out, i=i: projected.__setitem__(i, out.detach())
        )
        for i, layer in enumerate(model.model.layers)
    ]
    try:
        cache = prefill(model, prompt)
    finally:
        for hook in hooks:
            hook.remove()
    positions = torch.arange(PROMPT)[None]
    cos, sin = model.model.rotary_emb(projected[0], positions)
    out = []
    for i in range(LAYERS):
        # (1, n, q_heads * d) -> (1, q_heads, n, d)
        q = projected[i].view(1, PROMPT, HEADS, -1).transpose(1, 2)
        q, _ = apply_rotary_pos_emb(q, q, cos, sin)
        out.append(
            (cache.layers[i].keys.numpy(), cache.layers[i].values.numpy(), q.float().numpy())
        )
    return out


@pytest.mark.parametrize("name", cache_method_names())
def test_press_leaves_the_cores_cache(model, prompt, reference, name: str) -> None:
    budget = Budget(keep_ratio=0.35)
    press = CachePress(name, budget, query_window=48)
    cache = prefill(model, prompt, press)
    method = get_cache_method(name)
    for layer, (keys, values, queries) in enumerate(reference):
        core = compress_layer(
            keys,
            values,
            method,
            budget,
            queries=queries[:, :, -48:] if method.query_use != "never" else None,
            layer=layer,
        )
        np.testing.assert_allclose(cache.layers[layer].keys[0].numpy(), core.keys, atol=1e-5)
        np.testing.assert_allclose(cache.layers[layer].values[0].numpy(), core.values, atol=1e-5)
        assert np.array_equal(press.positions[layer][0], core.positions)


@pytest.mark.parametrize("name", cache_method_names())
@pytest.mark.parametrize(
    "budget", [Budget(keep_ratio=0.1), Budget(keep_ratio=0.5), Budget(entries=17)]
)
def test_cache_is_exactly_at_its_budget(model, prompt, name: str, budget: Budget) -> None:
    cache = prefill(model, prompt, CachePress(name, budget))
    for layer in cache.layers:
        assert layer.keys.shape[2] == layer.values.shape[2] == budget.size(PROMPT)


def test_compression_ratio_is_the_fraction_removed(model, prompt) -> None:
    press = CachePress("streaming_llm", compression_ratio=0.25)
    assert press.budget == Budget(keep_ratio=0.75)
    assert press.compression_ratio == pytest.approx(0.25)
    cache = prefill(model, prompt, press)
    assert cache.layers[0].keys.shape[2] == int(PROMPT * (1 - 0.25))  # kvpress's rounding
    press.compression_ratio = 0.9  # kvpress's wrappers set it
    assert press.budget.keep_ratio == pytest.approx(0.1)
    fixed = CachePress("streaming_llm", 20)
    assert fixed.compression_ratio == 0.0  # no prefill yet: nothing removed
    prefill(model, prompt, fixed)
    assert fixed.compression_ratio == pytest.approx(1 - 20 / PROMPT)
    with pytest.raises(ValueError):
        CachePress("streaming_llm", 20, compression_ratio=0.5)


def test_hooks_leave_decoding_and_other_forwards_alone(model, prompt) -> None:
    press = CachePress("streaming_llm", 10)
    with press(model):
        cache = prefill(model, prompt)  # under the press: compressed
        with torch.no_grad():  # a decoding step under the press: not compressed again
            model(prompt[:, :1], position_ids=torch.tensor([[PROMPT]]), **{cache_kw(model): cache})
    assert cache.layers[0].keys.shape[2] == 11
    assert prefill(model, prompt).layers[0].keys.shape[2] == PROMPT  # hooks removed


def test_is_a_kvpress_press_where_kvpress_is_installed() -> None:
    kvpress = pytest.importorskip("kvpress")  # its own venv: scripts/kvpress_env.sh
    press = CachePress("kvmerger", compression_ratio=0.5)
    assert isinstance(press, kvpress.BasePress)
    assert press != CachePress("kvmerger", compression_ratio=0.5)  # not the fieldless dataclass eq
