"""Layer merging (``mka``, ``shortgpt``, ``laco``, ``average``): the math on small tensors, the
model surgery in memory, and whole YAML reductions of tiny Llama, Qwen2 and Mixtral models with
a byte-level tokenizer, calibration text from the repository."""

from __future__ import annotations

import copy
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")
yaml = pytest.importorskip("yaml")

from conftest import save_byte_tokenizer  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from splice.models.merging.config import ConfigError  # noqa: E402
from splice.models.merging.layers import (  # noqa: E402
    LAYER_METHODS,
    block_influence,
    block_influences,
    combine,
    decoder_layers,
    diffusion_embedding,
    laco_weights,
    matrix_entropy,
    merge_layers,
    mka_similarity,
    parse_layers,
    reduce_layers,
    sources_after,
)
from splice.models.merging.reduction import REPORT  # noqa: E402

torch.set_num_threads(1)

#: Real text of the repository, as calibration.
CALIB = Path(__file__).resolve().parents[1] / "models" / "merging" / "methods" / "linear.py"
LAYERS = 6
SMALL = dict(
    vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    tie_word_embeddings=False, eos_token_id=256, bos_token_id=None, pad_token_id=None,
)  # fmt: skip


def _llama() -> Any:
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**SMALL)).eval()


def _save(model: Any, folder: Path) -> Path:
    model.save_pretrained(folder)
    save_byte_tokenizer(folder)
    return folder


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_llama(), tmp_path_factory.mktemp("llama") / "model")


@pytest.fixture(scope="module")
def chunks() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (8, 32), generator=gen)


def _state(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def _yaml(tmp_path: Path, model: Path, method: str, **params: Any) -> Path:
    config = {"model": str(model), "method": method, "num_layers": 4,
              "calibration": {"path": str(CALIB), "tokens": 512, "seq_len": 32}}  # fmt: skip
    if params:
        config["parameters"] = params
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _replay(original: dict[str, torch.Tensor], steps: list[dict]) -> list[dict[str, torch.Tensor]]:
    """The layers' tensors after ``steps``, computed here from the original tensors (float64)."""
    prefix = "model.layers."
    layers: list[dict[str, torch.Tensor]] = [{} for _ in range(LAYERS)]
    for key, value in original.items():
        if key.startswith(prefix):
            index, name = key[len(prefix) :].split(".", 1)
            layers[int(index)][name] = value.double()
    for step in steps:
        start, end = step["positions"][0], step["positions"][-1] + 1
        if step["action"] == "drop":
            del layers[start]
            continue
        group = layers[start:end]
        merged = {n: sum(w * g[n] for w, g in zip(step["weights"], group, strict=True))
                  for n in group[0]}  # fmt: skip
        layers[start:end] = [merged]
    return layers


def _check_output(out: Path, source: Path, vocab: int = 257) -> dict:
    """The written model: 4 layers that load, finite logits, generation with a cache, every layer
    equal to the replayed steps on the source's tensors, the rest unchanged; its report."""
    report = json.loads((out / REPORT).read_text())
    model = transformers.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    assert model.config.num_hidden_layers == 4 and len(model.model.layers) == 4
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2, 3]
    with torch.no_grad():
        logits = model(torch.arange(8).reshape(1, 8)).logits
    assert logits.shape == (1, 8, vocab) and torch.isfinite(logits).all()
    assert model.generate(torch.arange(5)[None], max_new_tokens=3, do_sample=False).shape == (1, 8)
    original, written = _state(source), _state(out)
    expected = _replay(original, report["steps"])
    assert len(expected) == 4
    for index, layer in enumerate(expected):
        for name, value in layer.items():
            got = written[f"model.layers.{index}.{name}"]
            torch.testing.assert_close(got, value.to(got.dtype), rtol=1e-5, atol=1e-6)
    assert not any(k.startswith("model.layers.4.") for k in written)
    for key, value in original.items():
        if not key.startswith("model.layers."):
            assert torch.equal(written[key], value)
    assert report["layers_before"] == LAYERS and report["layers_after"] == 4
    assert report["parameters_after"] < report["parameters_before"]
    kept = [i for s in report["sources"] for i in s]
    dropped = [
        i for step in report["steps"] if step["action"] == "drop" for i in step["sources"][0]
    ]
    assert sorted(kept + dropped) == list(range(LAYERS))  # each original layer once
    return report


# --- the math on small tensors -------------------------------------------------------------------


def test_block_influence_by_hand() -> None:
    h_in = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[3.0, 4.0], [1.0, 1.0]]])  # (2, 2, 2)
    h_out = torch.tensor([[[2.0, 0.0], [1.0, 0.0]], [[3.0, 4.0], [-1.0, -1.0]]])
    # cosines: 1, 0, 1, -1 -> mean 1/4 -> BI 3/4
    assert block_influence(h_in, h_out) == pytest.approx(0.75)
    assert block_influence(h_in, h_in) == pytest.approx(0.0)
    assert block_influence(torch.zeros(1, 2), torch.ones(1, 2)) == pytest.approx(1.0)  # no NaN


def test_block_influences_match_transformers_hidden_states(chunks: torch.Tensor) -> None:
    model = _llama()
    scores = block_influences(model, chunks)
    with torch.no_grad():
        states = model(chunks, output_hidden_states=True).hidden_states
    # hidden_states[l] enters layer l; the last entry is after the final norm, so stop before it.
    for layer in range(LAYERS - 1):
        expected = block_influence(states[layer], states[layer + 1])
        assert scores[layer] == pytest.approx(expected, abs=1e-6)
    assert len(scores) == LAYERS and all(0 <= s <= 2 for s in scores)


def test_laco_collapse_is_its_formula() -> None:
    layers = list(_llama().model.layers)[:3]
    assert laco_weights(2) == [0.0, 1.0] and laco_weights(3) == [-1.0, 1.0, 1.0]
    merged = combine(layers, laco_weights(3)).state_dict()
    t = [layer.state_dict() for layer in layers]
    for name, value in merged.items():
        # θ* = θ_l + (θ_{l+1} - θ_l) + (θ_{l+2} - θ_l)
        expected = t[0][name] + (t[1][name] - t[0][name]) + (t[2][name] - t[0][name])
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-6)
    two = combine(layers[:2], laco_weights(2)).state_dict()
    assert all(torch.equal(two[n], t[1][n]) for n in two)  # C = 2 keeps the later layer
    assert combine(layers[:2], [1.0, 0.0]) is not layers[0]  # a copy


def test_average_pairs_from_the_back() -> None:
    model = _llama()
    original = [copy.deepcopy(layer.state_dict()) for layer in model.model.layers]
    model, steps = reduce_layers(model, None, "average", 4)
    assert [(s.action, s.positions, s.weights) for s in steps] == [
        ("merge", [4, 5], [0.5, 0.5]),
        ("merge", [2, 3], [0.5, 0.5]),
    ]
    assert sources_after(LAYERS, steps) == [[0], [1], [2, 3], [4, 5]]
    name = "mlp.down_proj.weight"
    got = model.model.layers[3].state_dict()[name]
    torch.testing.assert_close(got, (original[4][name] + original[5][name]) / 2)
    assert torch.equal(model.model.layers[1].state_dict()[name], original[1][name])
    # Beyond one sweep: the pairs start again from the back of the current layers.
    _, steps = reduce_layers(_llama(), None, "average", 2)
    assert [s.positions for s in steps] == [[4, 5], [2, 3], [0, 1], [1, 2]]
    assert sources_after(LAYERS, steps) == [[0, 1], [2, 3, 4, 5]]


def test_mka_similarity() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 2, generator=gen, dtype=torch.float64)
    b = torch.randn(400, 2, generator=gen, dtype=torch.float64)
    near = a + 0.1 * torch.randn(400, 2, generator=gen, dtype=torch.float64)
    assert mka_similarity(a, a) == pytest.approx(1.0, abs=1e-12)
    assert mka_similarity(a, 3 * a + 1) == pytest.approx(1.0, abs=1e-9)  # same geometry
    assert mka_similarity(a, b) < 0.15  # independent
    assert mka_similarity(a, near) > 0.7 > mka_similarity(a, b)
    assert mka_similarity(a, b) == pytest.approx(mka_similarity(b, a), abs=1e-12)
    assert mka_similarity(a, near) == pytest.approx(mka_similarity(near, a), abs=1e-12)
    constant = torch.zeros(400, 2, dtype=torch.float64)
    assert mka_similarity(constant, constant) == 1.0
    assert mka_similarity(constant, a) == 0.0
    # Von Neumann entropy by hand: identity/n has entropy log n, a rank-one matrix 0.
    assert matrix_entropy(torch.eye(4)) == pytest.approx(torch.log(torch.tensor(4.0)).item())
    assert matrix_entropy(torch.ones(4, 4)) == pytest.approx(0.0, abs=1e-12)


def test_diffusion_embedding_of_points_on_a_line() -> None:
    x = torch.arange(10, dtype=torch.float64).reshape(10, 1)
    emb = diffusion_embedding(x, 3)
    assert emb.shape == (10, 3) and emb.dtype == torch.float64 and torch.isfinite(emb).all()
    # Each column is an eigenvector of P = D^-1 K (K: Gaussian kernel, median bandwidth).
    d2 = (x - x.T) ** 2
    i, j = torch.triu_indices(10, 10, 1)
    kernel = torch.exp(-d2 / d2[i, j].median())
    p = kernel / kernel.sum(1, keepdim=True)
    for col in emb.T:
        value = float(col @ (p @ col) / (col @ col))
        torch.testing.assert_close(p @ col, value * col, rtol=1e-9, atol=1e-9)
    # Orthogonal to the constant one in the stationary measure; the first is monotone on a line.
    assert torch.allclose(kernel.sum(1) @ emb, torch.zeros(3, dtype=torch.float64), atol=1e-9)
    first = emb[:, 0] * torch.sign(emb[-1, 0] - emb[0, 0])
    assert (first[1:] > first[:-1]).all()
    # Eigenvalue scaling: the columns' magnitudes decrease.
    norms = emb.norm(dim=0)
    assert (norms[1:] <= norms[:-1] + 1e-12).all()
    assert diffusion_embedding(torch.ones(5, 3), 8).eq(0).all()  # coinciding points, capped at n-1
    assert diffusion_embedding(torch.ones(5, 3), 8).shape == (5, 4)


# --- surgery in memory ---------------------------------------------------------------------------


def test_laco_greedy_from_the_back(chunks: torch.Tensor) -> None:
    method = LAYER_METHODS.get(
        "laco", threshold=-1.0, layers_per_merge=2, interval=1
    )  # all accepted
    model, steps = reduce_layers(_llama(), chunks, method, 4)
    assert [(s.positions, s.weights) for s in steps] == [([4, 5], [0.0, 1.0]), ([3, 4], [0.0, 1.0])]
    assert [layer.self_attn.layer_idx for layer in model.model.layers] == [0, 1, 2, 3]
    out = model.generate(torch.arange(5)[None], max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 8)
    # Nothing accepted: each pass takes its most similar candidate.
    method = LAYER_METHODS.get("laco", threshold=1.01, layers_per_merge=2, interval=1)
    _, steps = reduce_layers(_llama(), chunks, method, 4)
    assert len(steps) == 2 and all(-1 <= s.score < 1.01 for s in steps)
    # C capped by the target: 6 -> 5 with C = 3 merges two layers.
    method = LAYER_METHODS.get("laco", threshold=-1.0, layers_per_merge=3)
    _, steps = reduce_layers(_llama(), chunks, method, 5)
    assert [(s.positions, s.weights) for s in steps] == [([4, 5], [0.0, 1.0])]
    _, steps = reduce_layers(_llama(), chunks, method, 4)
    assert [(s.positions, s.weights) for s in steps] == [([3, 4, 5], [-1.0, 1.0, 1.0])]


def test_shortgpt_drops_the_lowest_influence(chunks: torch.Tensor) -> None:
    scores = block_influences(_llama(), chunks)
    model, steps = reduce_layers(_llama(), chunks, "shortgpt", 3)
    dropped = sorted(range(LAYERS), key=lambda i: scores[i])[:3]
    assert [s.sources[0][0] for s in steps] == dropped
    assert [s.score for s in steps] == pytest.approx([scores[i] for i in dropped])
    assert all(s.action == "drop" and s.weights is None for s in steps)
    kept = [i for i in range(LAYERS) if i not in dropped]
    reference = _llama()
    for new, old in zip(model.model.layers, kept, strict=True):
        ref = reference.model.layers[old].state_dict()
        assert all(torch.equal(v, ref[k]) for k, v in new.state_dict().items())


def test_mka_merges_the_most_similar_adjacent_pair(chunks: torch.Tensor) -> None:
    method = LAYER_METHODS.get("mka", samples=64, components=4)
    model, steps = reduce_layers(_llama(), chunks, method, 4)
    assert len(steps) == 2 and model.config.num_hidden_layers == 4
    for step in steps:
        s = step.score
        assert step.action == "merge" and len(step.positions) == 2 and 0 <= s <= 1
        assert step.weights == pytest.approx([1 / (1 + s), s / (1 + s)])
    again = reduce_layers(_llama(), chunks, method, 4)[1]
    assert [(s.positions, s.score) for s in again] == [(s.positions, s.score) for s in steps]


def test_reduce_refuses() -> None:
    with pytest.raises(ValueError, match="num_layers"):
        reduce_layers(_llama(), None, "average", LAYERS)
    with pytest.raises(ValueError, match="num_layers"):
        reduce_layers(_llama(), None, "average", 0)
    with pytest.raises(ValueError, match="calibration"):
        reduce_layers(_llama(), None, "mka", 4)
    with pytest.raises(ValueError, match="model.model.layers"):
        decoder_layers(torch.nn.Linear(2, 2))
    layers = list(_llama().model.layers)
    with pytest.raises(ValueError, match="differ"):
        combine([layers[0], torch.nn.Linear(2, 2)], [0.5, 0.5])


# --- whole reductions from YAML ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "params"),
    [("average", {}), ("shortgpt", {}), ("laco", {"threshold": 0.9}), ("mka", {"samples": 128})],
)
def test_yaml_reduction(method: str, params: dict, llama: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    report = merge_layers(_yaml(tmp_path, llama, method, **params), out)
    assert report.method == method and report.layers_after == 4
    assert report.out_dir == str(out.resolve()) and report.seconds > 0
    written = _check_output(out, llama)
    assert written["steps"] == [asdict(s) for s in report.steps]
    assert written["parameters"] == {**LAYER_METHODS.methods[method].parameters, **params}
    assert written["calibration_tokens"] == (0 if method == "average" else 512)
    assert (out / "tokenizer.json").is_file()
    actions = {s["action"] for s in written["steps"]}
    assert actions == ({"drop"} if method == "shortgpt" else {"merge"})
    removed = sum(1 if s["action"] == "drop" else len(s["positions"]) - 1 for s in written["steps"])
    assert removed == 2


def test_per_layer_config_lists_follow_the_kept_layers(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        **SMALL, use_sliding_window=True, sliding_window=4, max_window_layers=3
    )
    source = _save(transformers.Qwen2ForCausalLM(config).eval(), tmp_path / "qwen")
    types = json.loads((source / "config.json").read_text())["layer_types"]
    assert types == ["full_attention"] * 3 + ["sliding_attention"] * 3
    cfg = {"model": str(source), "method": "average", "num_layers": 4}
    merge_layers(cfg, tmp_path / "out")
    _check_output(tmp_path / "out", source)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    # Layers [0], [1], [2, 3], [4, 5]: each keeps the type of its first original layer.
    assert written["layer_types"] == ["full_attention"] * 3 + ["sliding_attention"]


def test_mlp_only_layers_are_renumbered(tmp_path: Path) -> None:
    torch.manual_seed(0)
    moe = dict(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
               shared_expert_intermediate_size=16)  # fmt: skip
    config = transformers.Qwen2MoeConfig(**SMALL, **moe, mlp_only_layers=[1, 4, 5])
    source = _save(transformers.Qwen2MoeForCausalLM(config).eval(), tmp_path / "qwen_moe")
    merge_layers({"model": str(source), "method": "average", "num_layers": 4}, tmp_path / "out")
    _check_output(tmp_path / "out", source)
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["mlp_only_layers"] == [1, 3]  # layers [0], [1], [2, 3], [4, 5]
    # A dense layer and a sparse one cannot be averaged.
    config = transformers.Qwen2MoeConfig(**SMALL, **moe, mlp_only_layers=[5])
    with pytest.raises(ValueError, match="differ"):
        reduce_layers(transformers.Qwen2MoeForCausalLM(config), None, "average", 4)


def test_mixtral_layers_merge(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = transformers.MixtralConfig(**SMALL, num_local_experts=4, num_experts_per_tok=2)
    source = _save(transformers.MixtralForCausalLM(config).eval(), tmp_path / "mixtral")
    report = merge_layers(_yaml(tmp_path, source, "mka", samples=64), tmp_path / "out")
    assert report.layers_after == 4
    written = _check_output(tmp_path / "out", source)
    assert any("experts" in name for name in _state(tmp_path / "out"))
    assert len(written["steps"]) == 2


def test_configuration_refusals(llama: Path, tmp_path: Path) -> None:
    base = {"model": str(llama), "method": "mka", "num_layers": 4,
            "calibration": {"path": str(CALIB)}}  # fmt: skip
    assert parse_layers(base).parameters == {"samples": 512, "components": 8, "seed": 0}
    with pytest.raises(ConfigError, match="unknown key 'layers'"):
        parse_layers({**base, "layers": 3})
    with pytest.raises(ConfigError, match="unknown key 'sample'"):
        parse_layers({**base, "parameters": {"sample": 3}})
    with pytest.raises(ConfigError, match="unknown layer method 'prune'"):
        parse_layers({**base, "method": "prune"})
    for count in (LAYERS, LAYERS + 3):
        with pytest.raises(ConfigError, match=r"num_layers: expected 1 to 5 \(the model has 6"):
            parse_layers({**base, "num_layers": count})
    for count in (0, -1, "4"):
        with pytest.raises(ConfigError, match="num_layers: expected a positive whole number"):
            parse_layers({**base, "num_layers": count})
    for method in ("mka", "shortgpt", "laco"):
        without = {k: v for k, v in base.items() if k != "calibration"}
        with pytest.raises(ConfigError, match=f"calibration: {method} needs calibration"):
            parse_layers({**without, "method": method})
    assert parse_layers({**without, "method": "average"}).calibration is None
    with pytest.raises(ConfigError, match="parameters.interval"):
        parse_layers({**base, "method": "laco", "parameters": {"interval": 0}})
    with pytest.raises(ConfigError, match="parameters.threshold"):
        parse_layers({**base, "method": "laco", "parameters": {"threshold": "high"}})
    with pytest.raises(ConfigError, match="parameters.samples"):
        parse_layers({**base, "parameters": {"samples": 2}})
    text = _yaml(tmp_path, llama, "average").read_text().replace("num_layers: 4", "num_layers: 6")
    with pytest.raises(ConfigError, match="num_layers: expected 1 to 5"):  # YAML text
        merge_layers(text, tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_the_command(llama: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from splice.cli import main

    config = _yaml(tmp_path, llama, "average")
    result = CliRunner().invoke(main, ["merge-layers", str(config), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "average: 6 -> 4 layers" in result.output
    bad = tmp_path / "bad.yaml"
    bad.write_text(config.read_text().replace("num_layers: 4", "num_layers: 6"))
    result = CliRunner().invoke(main, ["merge-layers", str(bad), str(tmp_path / "out2")])
    assert result.exit_code == 1 and "num_layers: expected 1 to 5" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "out2").exists()
