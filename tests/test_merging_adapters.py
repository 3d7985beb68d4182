"""LoRA adapter merging in delta space: PEFT's ``cat`` as the exact reference, SVD re-factoring,
MergeRepair's continual fold and the ``merge-adapters`` command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")
pytest.importorskip("yaml")

from safetensors.torch import load_file  # noqa: E402
from splice.models.merging import merge_adapters  # noqa: E402
from splice.models.merging.adapters import LoraAdapter, refactor  # noqa: E402

TARGETS = ["q_proj", "v_proj", "down_proj"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("adapters")
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
    )  # fmt: skip
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(config).save_pretrained(root / "base")
    paths = {"base": root / "base"}
    for i, rank in enumerate((2, 4, 3)):
        torch.manual_seed(100 + i)
        model = transformers.AutoModelForCausalLM.from_pretrained(root / "base")
        lora = peft.LoraConfig(r=rank, lora_alpha=2 * rank + i, target_modules=TARGETS,
                               init_lora_weights=False, use_rslora=i == 2)  # fmt: skip
        peft.get_peft_model(model, lora).save_pretrained(root / f"a{i}")
        paths[f"a{i}"] = root / f"a{i}"
    return paths


def _peft_delta(path: Path, base: Path) -> dict[str, torch.Tensor]:
    model = transformers.AutoModelForCausalLM.from_pretrained(base)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    merged = peft.PeftModel.from_pretrained(model, path).merge_and_unload().state_dict()
    return {k: merged[k] - ref[k] for k in merged if not torch.equal(merged[k], ref[k])}


def test_delta_matches_peft_merge_and_unload(setup: dict[str, Path]) -> None:
    for name in ("a0", "a2"):  # a2 uses rsLoRA scaling
        adapter = LoraAdapter.load(setup[name])
        reference = _peft_delta(setup[name], setup["base"])
        assert len(reference) == len(adapter.modules)
        for module in adapter.modules:
            key = module.removeprefix("base_model.model.") + ".weight"
            assert torch.allclose(adapter.delta(module), reference[key], atol=1e-6)


def test_linear_full_matches_peft_cat(setup: dict[str, Path], tmp_path: Path) -> None:
    weights = [0.7, 0.4]
    cfg = {
        "merge_method": "linear",
        "base_model": str(setup["base"]),
        "output": "full",
        "parameters": {"normalize": False},
        "models": [
            {"model": str(setup["a0"]), "parameters": {"weight": weights[0]}},
            {"model": str(setup["a1"]), "parameters": {"weight": weights[1]}},
        ],
    }
    merge_adapters(cfg, tmp_path / "full")  # fmt: skip
    model = transformers.AutoModelForCausalLM.from_pretrained(setup["base"])
    pm = peft.PeftModel.from_pretrained(model, setup["a0"], adapter_name="x")
    pm.load_adapter(setup["a1"], adapter_name="y")
    pm.add_weighted_adapter(["x", "y"], weights, "cat", combination_type="cat")
    pm.set_adapter("cat")
    pm.delete_adapter("x")
    pm.delete_adapter("y")
    reference = pm.merge_and_unload().state_dict()
    ours = load_file(tmp_path / "full" / "model.safetensors")
    assert set(ours) <= set(reference)
    for key, value in ours.items():
        assert torch.allclose(value, reference[key], atol=1e-6), key
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "full").eval()
    with torch.no_grad():
        assert torch.isfinite(loaded(torch.arange(6).reshape(1, 6)).logits).all()


def test_lora_output_refactors_exactly_at_full_rank(setup: dict[str, Path], tmp_path: Path) -> None:
    cfg = {"merge_method": "linear",
           "models": [{"model": str(setup["a0"])}, {"model": str(setup["a1"])}]}  # fmt: skip
    report = merge_adapters(cfg, tmp_path / "lora")
    assert report.rank == 6 and report.max_error < 1e-5  # sum of the ranks: exact
    out = LoraAdapter.load(tmp_path / "lora")
    a0, a1 = LoraAdapter.load(setup["a0"]), LoraAdapter.load(setup["a1"])
    for module in a0.modules:
        expected = (a0.delta(module) + a1.delta(module)) / 2
        assert torch.allclose(out.delta(module), expected, atol=1e-6)
    low = merge_adapters(cfg, tmp_path / "low", rank=1)
    assert low.rank == 1 and 0.05 < low.max_error < 1.0
    config = json.loads((tmp_path / "low" / "adapter_config.json").read_text())
    assert config["r"] == 1 and config["lora_alpha"] == 1
    model = transformers.AutoModelForCausalLM.from_pretrained(setup["base"])
    peft.PeftModel.from_pretrained(model, tmp_path / "low")  # loads in PEFT


def test_continual_fold_has_per_step_weights(setup: dict[str, Path], tmp_path: Path) -> None:
    cfg = {"merge_method": "linear", "mode": "continual",
           "models": [{"model": str(setup[f"a{i}"])} for i in range(3)]}  # fmt: skip
    merge_adapters(cfg, tmp_path / "fold")
    out = LoraAdapter.load(tmp_path / "fold")
    ads = [LoraAdapter.load(setup[f"a{i}"]) for i in range(3)]
    for module in ads[0].modules:
        d = [a.delta(module) for a in ads]
        assert torch.allclose(out.delta(module), d[0] / 4 + d[1] / 4 + d[2] / 2, atol=1e-6)
    cfg["models"][2]["parameters"] = {"weight": 1.0, "previous_weight": 2.0}
    merge_adapters(cfg, tmp_path / "fold2")
    out = LoraAdapter.load(tmp_path / "fold2")
    for module in ads[0].modules:
        d = [a.delta(module) for a in ads]
        expected = (2 * (d[0] + d[1]) / 2 + d[2]) / 3
        assert torch.allclose(out.delta(module), expected, atol=1e-6)


def test_ties_in_delta_space_and_cli(setup: dict[str, Path], tmp_path: Path) -> None:
    import yaml
    from click.testing import CliRunner

    from splice.cli import main

    cfg = tmp_path / "ties.yaml"
    cfg.write_text(yaml.safe_dump({
        "merge_method": "ties", "models": [
            {"model": str(setup["a0"]), "parameters": {"density": 0.5}},
            {"model": str(setup["a1"]), "parameters": {"density": 0.5}}]}))  # fmt: skip
    result = CliRunner().invoke(main, ["merge-adapters", str(cfg), str(tmp_path / "o"),
                                       "--rank", "8"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "relative reconstruction error" in result.output
    assert (tmp_path / "o" / "adapter_model.safetensors").exists()


def test_refactor_error_is_the_svd_tail() -> None:
    m = torch.diag(torch.tensor([3.0, 4.0, 0.0]))
    a, b, err = refactor(m, 1)
    assert torch.allclose(b @ a, torch.diag(torch.tensor([0.0, 4.0, 0.0])), atol=1e-6)
    assert err == pytest.approx(3 / 5)


def test_bad_adapter_configs(setup: dict[str, Path], tmp_path: Path) -> None:
    a0 = str(setup["a0"])
    with pytest.raises(ValueError, match="base_model"):
        merge_adapters({"merge_method": "linear", "output": "full", "models": [a0]}, tmp_path)
    with pytest.raises(ValueError, match="mode"):
        merge_adapters({"merge_method": "linear", "mode": "zigzag", "models": [a0]}, tmp_path)
    with pytest.raises(ValueError, match="adapter_config.json"):
        merge_adapters({"merge_method": "linear", "models": [str(setup["base"])]}, tmp_path)
