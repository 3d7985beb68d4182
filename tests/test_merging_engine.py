"""The streaming merge driver and its mergekit YAML, on tiny Llama models saved by transformers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
yaml = pytest.importorskip("yaml")

from safetensors.torch import load_file  # noqa: E402
from splice.models.merging import ConfigError, linear, merge, ties  # noqa: E402
from splice.models.merging.config import gradient_value, lookup, parse_config  # noqa: E402
from splice.models.merging.io import ModelReader, parse_size, write_tensors  # noqa: E402


def _config() -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
        tie_word_embeddings=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    base = transformers.LlamaForCausalLM(_config())
    state = {k: v.clone() for k, v in base.state_dict().items()}
    paths = {"base": root / "base"}
    base.save_pretrained(paths["base"])
    (paths["base"] / "tokenizer_config.json").write_text('{"model_max_length": 32}')
    for i in range(2):
        gen = torch.Generator().manual_seed(10 + i)
        model = transformers.LlamaForCausalLM(_config())
        model.load_state_dict({k: v + 0.05 * torch.randn(v.shape, generator=gen)
                               for k, v in state.items()})  # fmt: skip
        paths[f"ft{i}"] = root / f"ft{i}"
        model.save_pretrained(paths[f"ft{i}"])
    paths["bin"] = root / "ft0-bin"
    model.save_pretrained(paths["bin"], safe_serialization=False)
    return paths


def _state(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def _finite_logits(path: Path) -> torch.nn.Module:
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.arange(8).reshape(1, 8)).logits
    assert torch.isfinite(logits).all()
    return model


def test_linear_merge_is_exact_and_loads(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = {"merge_method": "linear", "models": [
        {"model": str(models["ft0"]), "parameters": {"weight": 0.25}},
        {"model": str(models["ft1"]), "parameters": {"weight": 0.75}}]}  # fmt: skip
    report = merge(cfg, tmp_path / "out")
    a, b, out = _state(models["ft0"]), _state(models["ft1"]), _state(tmp_path / "out")
    assert set(out) == set(a) and report.tensors == len(a)
    for key in a:
        assert torch.equal(out[key], linear([a[key], b[key]], [0.25, 0.75]))
    _finite_logits(tmp_path / "out")


def test_ties_yaml_cli_with_small_shards(models: dict[str, Path], tmp_path: Path) -> None:
    from click.testing import CliRunner

    from splice.cli import main

    cfg = tmp_path / "ties.yaml"
    cfg.write_text(yaml.safe_dump({
        "merge_method": "ties", "base_model": str(models["base"]), "dtype": "float32",
        "models": [{"model": str(models["ft0"]), "parameters": {"weight": 1.0, "density": 0.5}},
                   {"model": str(models["ft1"]), "parameters": {"weight": 0.5, "density": 0.3}}],
    }))  # fmt: skip
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["merge-weights", str(cfg), str(out), "--shard-size", "40KB"])
    assert result.exit_code == 0, result.output
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    base, a, b = (_state(models[k]) for k in ("base", "ft0", "ft1"))
    got = _state(out)
    assert (out / "tokenizer_config.json").exists()  # copied from the base model
    for key in base:
        assert torch.equal(got[key], ties(base[key], [a[key], b[key]], [1.0, 0.5], [0.5, 0.3]))
    _finite_logits(out)


def test_gradients_and_filters_follow_the_layers(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = {
        "merge_method": "slerp",
        "base_model": str(models["base"]),
        "models": [{"model": str(models["base"])}, {"model": str(models["ft0"])}],
        "parameters": {"t": [{"filter": "mlp", "value": 1.0}, {"value": [0.0, 1.0]}]},
    }
    merge(cfg, tmp_path / "out")  # fmt: skip
    base, ft, out = _state(models["base"]), _state(models["ft0"]), _state(tmp_path / "out")
    q = "model.layers.{}.self_attn.q_proj.weight"
    assert torch.allclose(out[q.format(0)], base[q.format(0)], atol=1e-6)  # t = 0
    assert torch.allclose(out[q.format(2)], ft[q.format(2)], atol=1e-6)  # t = 1
    mlp = "model.layers.0.mlp.up_proj.weight"
    assert torch.allclose(out[mlp], ft[mlp], atol=1e-6)  # the filter wins
    assert torch.allclose(out["model.norm.weight"], base["model.norm.weight"], atol=1e-6)
    _finite_logits(tmp_path / "out")


def test_passthrough_slices_stack_layers(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = {"merge_method": "passthrough", "slices": [
        {"sources": [{"model": str(models["ft0"]), "layer_range": [0, 2]}]},
        {"sources": [{"model": str(models["ft1"]), "layer_range": [1, 3]}]}]}  # fmt: skip
    report = merge(cfg, tmp_path / "out")
    assert report.layers == 4
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["num_hidden_layers"] == 4
    a, b, out = _state(models["ft0"]), _state(models["ft1"]), _state(tmp_path / "out")
    k = "model.layers.{}.mlp.down_proj.weight"
    assert torch.equal(out[k.format(1)], a[k.format(1)])
    assert torch.equal(out[k.format(2)], b[k.format(1)])
    assert torch.equal(out[k.format(3)], b[k.format(2)])
    assert torch.equal(out["model.embed_tokens.weight"], a["model.embed_tokens.weight"])
    assert torch.equal(out["lm_head.weight"], b["lm_head.weight"])
    _finite_logits(tmp_path / "out")


def test_bin_input_and_dtype_conversion(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = {"merge_method": "task_arithmetic", "base_model": str(models["base"]),
           "out_dtype": "bfloat16", "models": [{"model": str(models["bin"])}]}  # fmt: skip
    merge(cfg, tmp_path / "out")
    out = _state(tmp_path / "out")
    ft = _state(models["ft1"])  # ft0-bin holds the last fine-tune's weights
    key = "model.layers.1.self_attn.v_proj.weight"
    assert out[key].dtype == torch.bfloat16
    assert torch.equal(out[key], ft[key].to(torch.bfloat16))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    _finite_logits(tmp_path / "out")


def test_model_stock_dare_della_tsv_run_and_load(models: dict[str, Path], tmp_path: Path) -> None:
    two = [{"model": str(models["ft0"]), "parameters": {"density": 0.5}},
           {"model": str(models["ft1"]), "parameters": {"density": 0.5}}]  # fmt: skip
    for method in ("model_stock", "dare_ties", "della", "breadcrumbs_ties", "tsv", "nuslerp"):
        models_ = two if method not in ("model_stock", "tsv", "nuslerp") else [
            {"model": m["model"]} for m in two]  # fmt: skip
        cfg = {"merge_method": method, "base_model": str(models["base"]), "models": models_}
        merge(cfg, tmp_path / method, seed=1)
        _finite_logits(tmp_path / method)
    first = _state(tmp_path / "dare_ties")
    merge({"merge_method": "dare_ties", "base_model": str(models["base"]), "models": two},
          tmp_path / "again", seed=1)  # fmt: skip
    assert all(torch.equal(first[k], v) for k, v in _state(tmp_path / "again").items())


def test_mismatches_are_reported_by_tensor_name(models: dict[str, Path], tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    state = _state(models["ft0"])
    state["model.layers.0.mlp.up_proj.weight"] = torch.zeros(3, 3)
    del state["model.norm.weight"]
    write_tensors(odd, state.items())
    cfg = {"merge_method": "linear", "models": [{"model": str(models["ft1"])}, {"model": str(odd)}]}
    with pytest.raises(ValueError) as err:
        merge(cfg, tmp_path / "out")
    assert "model.layers.0.mlp.up_proj.weight" in str(err.value)
    assert "model.norm.weight" in str(err.value)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"merge_method": "ties", "models": [{"model": "x"}], "colour": 1}, "'colour'"),
        ({"merge_method": "ties", "models": [{"model": "x", "weight": 1}]}, "'weight'"),
        ({"merge_method": "linear"}, "models / slices"),
        ({"models": [{"model": "x"}]}, "merge_method"),
        (
            {"merge_method": "linear", "models": [{"model": "x", "parameters": {"w": {}}}]},
            "models[0].parameters.w",
        ),
        (
            {"merge_method": "linear", "tokenizer": {"source": "union"}, "models": ["x"]},
            "'tokenizer'",
        ),
        ({"merge_method": "linear", "slices": [{"sources": [{"model": "x"}]}]}, "layer_range"),
    ],
)
def test_bad_configs_name_the_key(cfg: dict, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(cfg)
    assert needle in str(err.value)


def test_impossible_configs_are_refused(models: dict[str, Path], tmp_path: Path) -> None:
    a, b = str(models["ft0"]), str(models["ft1"])
    cases = [
        ({"merge_method": "ties", "models": [{"model": a}]}, "base_model"),
        ({"merge_method": "slerp", "base_model": a, "models": [{"model": a}, {"model": b},
          {"model": str(models["base"])}], "parameters": {"t": 0.5}}, "at most 1"),
        ({"merge_method": "ties", "base_model": a, "models": [{"model": b}],
          "parameters": {"densty": 0.5}}, "parameters.densty"),
        ({"merge_method": "nosuch", "models": [{"model": a}]}, "unknown method"),
        ({"merge_method": "linear", "dtype": "float13", "models": [{"model": a}]}, "dtype"),
    ]  # fmt: skip
    for cfg, needle in cases:
        with pytest.raises(ValueError) as err:
            merge(cfg, tmp_path / "out")
        assert needle in str(err.value), cfg


def test_parameter_resolution() -> None:
    assert gradient_value([0.0, 1.0], 0.25) == pytest.approx(0.25)
    assert gradient_value([0.0, 1.0, 0.0], 0.5) == pytest.approx(1.0)
    assert gradient_value([0.3, 1.0], None) == 0.3  # non-layer tensors: the first value
    chain = [{"weight": [{"filter": "attn", "value": 2.0}]}, {"weight": 0.5}]
    assert lookup("weight", chain, 1.0, "layers.0.self_attn.q_proj.weight", 0.0) == 2.0
    assert lookup("weight", chain, 1.0, "layers.0.mlp.up_proj.weight", 0.0) == 0.5
    assert lookup("density", chain, 1.0, "x", 0.0) == 1.0


def test_reader_and_sizes(models: dict[str, Path]) -> None:
    reader = ModelReader(models["ft0"])
    state = _state(models["ft0"])
    for name in reader.names():
        assert torch.equal(reader.read(name), state[name])
    reader.close()
    assert parse_size("2GB") == 2 * 10**9 and parse_size("1GiB") == 2**30
    assert parse_size("5B") == 5 * 10**9 and parse_size(1000) == 1000
