"""Merging a MoE model's experts (``splice merge-experts``): groupings, alignment and weights by
hand on small tensors; whole merges of tiny Mixtral and Qwen2-MoE models from YAML through the
command, loaded back in transformers."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("scipy")

from click.testing import CliRunner  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from splice.models.merging.config import ConfigError  # noqa: E402
from splice.models.merging.experts import (  # noqa: E402
    EXPERT_METHODS,
    align_neurons,
    cluster_groups,
    dominant_groups,
    low_rank_sparse,
    merge_group,
    permute_expert,
    reduce_experts,
    usage_weights,
)
from splice.models.merging.moe import (  # noqa: E402
    ExpertWeights,
    expert_activation,
    expert_function,
    find_moe_blocks,
    live_expert,
    read_experts,
    swiglu,
    write_experts,
)
from splice.models.merging.reduction import REPORT  # noqa: E402

from splice.cli import main  # noqa: E402

#: Real text, as calibration.
CALIB = Path(__file__).resolve().parents[1] / "models" / "merging" / "experts.py"


def _mixtral(experts: int = 8) -> transformers.MixtralConfig:
    return transformers.MixtralConfig(
        vocab_size=257, hidden_size=32, intermediate_size=24, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
        num_local_experts=experts, num_experts_per_tok=2, eos_token_id=256, bos_token_id=None,
        pad_token_id=None, tie_word_embeddings=False, output_router_logits=True,
    )  # fmt: skip


def _qwen2_moe() -> transformers.Qwen2MoeConfig:
    return transformers.Qwen2MoeConfig(
        vocab_size=257, hidden_size=32, intermediate_size=48, moe_intermediate_size=24,
        shared_expert_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, num_experts=8, num_experts_per_tok=2,
        eos_token_id=256, bos_token_id=None, pad_token_id=None, tie_word_embeddings=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def moe_models(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("moe")
    paths = {}
    for name, config, cls in (
        ("mixtral", _mixtral(), transformers.MixtralForCausalLM),
        ("qwen2_moe", _qwen2_moe(), transformers.Qwen2MoeForCausalLM),
    ):
        torch.manual_seed(0)
        model = cls(config)
        paths[name] = root / name
        model.save_pretrained(paths[name])
        byte_tokenizer(paths[name])
    return paths


def _load(path: Path):
    return transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


def _yaml(tmp_path: Path, model: Path, method: str, n: int = 4, **params: object) -> Path:
    data = {
        "model": str(model),
        "method": method,
        "num_experts": n,
        "calibration": {"path": str(CALIB), "tokens": 512, "seq_len": 64},
    }
    if params:
        data["parameters"] = params
    path = tmp_path / f"{method}.yaml"
    path.write_text(json.dumps(data))  # JSON is YAML
    return path


# --- by hand -----------------------------------------------------------------------------------


def test_dominant_groups_follow_usage_and_router_similarity() -> None:
    frequency = torch.tensor([0.4, 0.1, 0.3, 0.2])
    # router-logit columns: expert 1 moves with expert 2, expert 3 with expert 0
    logits = torch.tensor([[1.0, 0.0, 0.0, 0.9], [0.0, 1.0, 1.0, 0.1], [1.0, 0.2, 0.1, 1.0]])
    groups = dominant_groups(frequency, logits, 2)
    assert groups == [[0, 3], [2, 1]]
    assert usage_weights(frequency, groups[0]) == pytest.approx([0.4 / 0.6, 0.2 / 0.6])
    assert usage_weights(frequency, groups[1]) == pytest.approx([0.75, 0.25])
    assert usage_weights(torch.zeros(4), [1, 2]) == [0.5, 0.5]


def test_cluster_groups_find_the_obvious_clusters() -> None:
    features = torch.tensor([[0.0, 0.0], [10.0, 10.0], [0.1, 0.0], [10.0, 9.9], [0.0, 0.2]])
    frequency = torch.tensor([0.1, 0.2, 0.3, 0.1, 0.3])
    groups = cluster_groups(features, frequency, 2)
    # members most-used first (index order on ties); groups by their smallest index
    assert groups == [[2, 4, 0], [1, 3]]
    assert cluster_groups(features, frequency, 5) == [[0], [1], [2], [3], [4]]


def test_a_permutation_of_neurons_keeps_the_function_and_alignment_undoes_it() -> None:
    torch.manual_seed(1)
    model = transformers.MixtralForCausalLM(_mixtral(4)).eval()
    block = find_moe_blocks(model)[0]
    weights, apply = read_experts(block), expert_function(block)
    x = torch.randn(6, 32)
    perm = torch.randperm(24)
    shuffled = permute_expert(weights.expert(1), perm)
    single = ExpertWeights(*(t.unsqueeze(0) for t in shuffled))
    assert torch.allclose(apply(weights, 1, x), apply(single, 0, x), atol=1e-6)
    found = align_neurons(weights.expert(1), shuffled)
    assert torch.equal(found, torch.argsort(perm))  # the inverse permutation
    # merging an expert with its shuffled copy: aligned -> the expert itself; not -> a blur
    both = ExpertWeights(
        *(torch.stack([a, b]) for a, b in zip(weights.expert(1), shuffled, strict=True))
    )
    aligned = merge_group(both, [0, 1], [0.5, 0.5], align=True)
    blurred = merge_group(both, [0, 1], [0.5, 0.5], align=False)
    for got, want in zip(aligned, weights.expert(1), strict=True):
        assert torch.allclose(got, want, atol=1e-7)
    assert not torch.allclose(blurred[0], weights.expert(1)[0], atol=1e-3)


def test_calibration_reads_the_experts_in_place() -> None:
    """live_expert gives views of a float32 model's own fused expert weights (calibration holds
    no second copy of every expert), equal to read_experts' copies and applied alike."""
    torch.manual_seed(2)
    fused = find_moe_blocks(transformers.MixtralForCausalLM(_mixtral(4)).eval())[0]
    copies = read_experts(fused)
    storage = fused.experts.gate_up_proj.untyped_storage().data_ptr()
    for e in range(4):
        live = live_expert(fused, e)
        assert all(torch.equal(a, b) for a, b in zip(live, copies.expert(e), strict=True))
        assert all(t.untyped_storage().data_ptr() != copies.gate.untyped_storage().data_ptr()
                   for t in live)  # fmt: skip
        assert live[0].untyped_storage().data_ptr() == storage  # a view, not a copy
    x = torch.randn(5, live_expert(fused, 0)[0].shape[1])
    assert torch.allclose(
        swiglu(expert_activation(fused), live_expert(fused, 2), x),
        expert_function(fused)(copies, 2, x),
    )


def test_low_rank_plus_sparse_fits() -> None:
    torch.manual_seed(2)
    low = torch.randn(20, 3) @ torch.randn(3, 16)
    # no sparse part: the best rank-2 approximation (Eckart-Young)
    form = low_rank_sparse(low, rank=2, density=0.0)
    tail = torch.linalg.svdvals(low.double())[2:]
    assert float((form.dense - low).norm()) == pytest.approx(float(tail.norm()), rel=1e-6)
    assert not form.sparse.any() and form.parameters == 20 * 2 + 2 * 16
    # a sparse part holds the largest residuals: the error can only shrink
    spikes = torch.zeros(20, 16)
    spikes[3, 4], spikes[10, 1], spikes[17, 15] = 4.0, -3.5, 3.0
    matrix = low + spikes
    plain = low_rank_sparse(matrix, rank=2, density=0.0)
    fitted = low_rank_sparse(matrix, rank=2, density=0.05)
    assert int((fitted.sparse != 0).sum()) == round(0.05 * 320)
    assert (fitted.dense - matrix).norm() < 0.8 * (plain.dense - matrix).norm()
    assert fitted.parameters == 20 * 2 + 2 * 16 + 2 * 16


def test_write_experts_in_the_one_module_per_expert_layout() -> None:
    """transformers 4's Mixtral block (and remote-code models): a ModuleList of w1/w3/w2."""

    class Expert(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w1, self.w3 = torch.nn.Linear(8, 6, bias=False), torch.nn.Linear(8, 6, bias=False)
            self.w2 = torch.nn.Linear(6, 8, bias=False)

    class Block(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.num_experts = 4
            self.gate = torch.nn.Linear(8, 4, bias=False)
            self.experts = torch.nn.ModuleList(Expert() for _ in range(4))

    holder = torch.nn.Module()
    holder.block = Block()
    (block,) = find_moe_blocks(holder)
    weights = read_experts(block)
    assert weights.gate.shape == (4, 6, 8) and weights.down.shape == (4, 8, 6)
    assert torch.equal(weights.up[2], holder.block.experts[2].w3.weight)
    gate, up, down = live_expert(block, 2)  # the module's own weights, not copies
    assert gate.data_ptr() == holder.block.experts[2].w1.weight.data_ptr()
    assert up.data_ptr() == holder.block.experts[2].w3.weight.data_ptr()
    assert down.data_ptr() == holder.block.experts[2].w2.weight.data_ptr()
    kept = ExpertWeights(weights.gate[[3, 1]], weights.up[[3, 1]], weights.down[[3, 1]])
    write_experts(block, kept, holder.block.gate.weight[[3, 1]].detach())
    assert len(holder.block.experts) == 2 and holder.block.num_experts == 2
    assert torch.equal(holder.block.experts[0].w2.weight, weights.down[3])
    assert holder.block.gate.weight.shape == (2, 8) and holder.block.gate.out_features == 2


def test_find_moe_blocks_refuses_a_dense_model() -> None:
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    with pytest.raises(ValueError, match="no mixture-of-experts blocks"):
        find_moe_blocks(transformers.LlamaForCausalLM(config))


def test_prune_keeps_the_most_used_experts_unchanged() -> None:
    torch.manual_seed(3)
    model = transformers.MixtralForCausalLM(_mixtral()).eval()
    original = copy.deepcopy(model)
    chunks = torch.randint(0, 256, (4, 32))
    report = reduce_experts(model, chunks, EXPERT_METHODS.get("prune"), 3)
    for layer, (block, before) in enumerate(
        zip(find_moe_blocks(model), find_moe_blocks(original), strict=True)
    ):
        freq = torch.tensor(report.layers[layer]["frequency"])
        kept = sorted(sorted(range(8), key=lambda e: (-float(freq[e]), e))[:3])
        assert [g[0] for g in report.layers[layer]["groups"]] == kept
        assert torch.equal(block.router.weight, before.router.weight[kept])
        assert torch.equal(block.experts.down_proj, before.experts.down_proj[kept])
    assert report.experts_after == 3 and model.config.num_local_experts == 3


# --- whole merges through the command ----------------------------------------------------------


@pytest.mark.parametrize("method", ["mc_smoe", "hc_smoe", "prune", "average"])
@pytest.mark.parametrize("arch", ["mixtral", "qwen2_moe"])
def test_merge_experts_command_writes_a_loadable_smaller_model(
    moe_models: dict[str, Path], tmp_path: Path, method: str, arch: str
) -> None:
    source = moe_models[arch]
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["merge-experts", str(_yaml(tmp_path, source, method)), str(out)]
    )
    assert result.exit_code == 0, result.output
    assert f"{method}: 8 -> 4 experts per layer" in result.output
    model = _load(out)
    count = "num_local_experts" if arch == "mixtral" else "num_experts"
    assert getattr(model.config, count) == 4
    blocks = find_moe_blocks(model)
    assert len(blocks) == 2 and all(b.count == 4 for b in blocks)
    assert blocks[0].experts.gate_up_proj.shape == (4, 48, 32)
    ids = torch.tensor([list(b"def merge(a, b):\n")])
    with torch.no_grad():
        assert torch.isfinite(model(ids).logits).all()
    generated = model.generate(ids, max_new_tokens=3, do_sample=False)
    assert generated.shape == (1, ids.shape[1] + 3)
    report = json.loads((out / REPORT).read_text())
    assert report["method"] == method and len(report["layers"]) == 2
    for layer in report["layers"]:
        members = sorted(e for g in layer["groups"] for e in g)
        assert len(layer["groups"]) == 4
        assert len(members) == 4 if method == "prune" else members == list(range(8))
        assert all(sum(w) == pytest.approx(1.0, abs=1e-5) for w in layer["weights"])
    assert (out / "tokenizer.json").is_file()
    if arch == "qwen2_moe":  # the shared expert is untouched
        original = _load(source)
        assert torch.equal(
            model.model.layers[0].mlp.shared_expert.up_proj.weight,
            original.model.layers[0].mlp.shared_expert.up_proj.weight,
        )


def test_mc_smoe_output_is_the_aligned_usage_weighted_merge(
    moe_models: dict[str, Path], tmp_path: Path
) -> None:
    source, out = moe_models["mixtral"], tmp_path / "out"
    result = CliRunner().invoke(
        main, ["merge-experts", str(_yaml(tmp_path, source, "mc_smoe")), str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / REPORT).read_text())
    original, merged = find_moe_blocks(_load(source)), find_moe_blocks(_load(out))
    # on disk: the one-module-per-expert keys transformers writes for Mixtral
    keys = load_file(out / "model.safetensors").keys()
    assert "model.layers.0.block_sparse_moe.experts.3.w1.weight" in keys
    assert not any(".experts.4." in k for k in keys)
    for layer, (before, after) in enumerate(zip(original, merged, strict=True)):
        weights = read_experts(before)
        for new, (group, ws) in enumerate(
            zip(report["layers"][layer]["groups"], report["layers"][layer]["weights"], strict=True)
        ):
            leader = weights.expert(group[0])
            expected = [torch.zeros_like(t) for t in leader]
            for e, w in zip(group, ws, strict=True):
                member = weights.expert(e)
                if e != group[0]:
                    member = permute_expert(member, align_neurons(leader, member))
                for acc, part in zip(expected, member, strict=True):
                    acc += w * part
            got = read_experts(after).expert(new)
            for g, x in zip(got, expected, strict=True):
                assert torch.allclose(g, x, atol=1e-5)
            assert torch.equal(after.router.weight[new], before.router.weight[group[0]])


def test_mc_smoe_compression_reports_its_memory(
    moe_models: dict[str, Path], tmp_path: Path
) -> None:
    config = _yaml(
        tmp_path, moe_models["mixtral"], "mc_smoe", compress=True, rank=0.25, density=0.05
    )
    result = CliRunner().invoke(main, ["merge-experts", str(config), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert "low-rank + sparse form" in result.output
    report = json.loads((tmp_path / "out" / REPORT).read_text())
    assert 0 < report["compressed_expert_parameters"] < report["expert_parameters_after"]
    assert report["expert_parameters_after"] * 2 == report["expert_parameters_before"]
    with torch.no_grad():
        assert torch.isfinite(_load(tmp_path / "out")(torch.tensor([[1, 2, 3]])).logits).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown key 'colour'"),
        ({"method": "fancy"}, "unknown expert method 'fancy'"),
        ({"parameters": {"rank_ratio": 2}}, "unknown key 'rank_ratio' for mc_smoe"),
        ({"num_experts": 8}, "num_experts 8 must be between 1 and 7"),
        ({"num_experts": 1}, "fewer than the experts per token"),
        ({"num_experts": "four"}, "expected a positive whole number"),
        ({"calibration": None}, "mc_smoe needs calibration text"),
        ({"calibration": {"path": "x", "size": 3}}, "calibration: unknown key 'size'"),
    ],
)
def test_bad_configurations_get_one_line(
    moe_models: dict[str, Path], tmp_path: Path, change: dict, message: str
) -> None:
    data = json.loads(_yaml(tmp_path, moe_models["mixtral"], "mc_smoe").read_text())
    data.update(change)
    if data.get("calibration") is None:
        data.pop("calibration")
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps(data))
    result = CliRunner().invoke(main, ["merge-experts", str(config), str(tmp_path / "out")])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_a_dense_model_is_refused(tmp_path: Path, byte_tokenizer) -> None:
    config = transformers.LlamaConfig(
        vocab_size=257, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    transformers.LlamaForCausalLM(config).save_pretrained(tmp_path / "dense")
    byte_tokenizer(tmp_path / "dense")
    yaml = _yaml(tmp_path, tmp_path / "dense", "prune")
    result = CliRunner().invoke(main, ["merge-experts", str(yaml), str(tmp_path / "out")])
    assert result.exit_code == 1 and "no mixture-of-experts blocks" in result.output
    with pytest.raises(ConfigError, match="not a model folder"):
        from splice.models.merging.reduction import parse_reduction

        parse_reduction(
            {"model": str(tmp_path), "method": "prune", "num_experts": 2},
            "num_experts",
            EXPERT_METHODS,
        )


def test_mc_smoe_can_lead_and_weigh_by_saliency() -> None:
    from splice.models.merging.routing import RoutingStats

    logits = torch.tensor([[1.0, 0.0, 0.9, 0.0], [0.0, 1.0, 0.1, 1.0], [1.0, 0.1, 1.0, 0.2]])
    stats = RoutingStats(
        frequency=torch.tensor([0.4, 0.3, 0.2, 0.1]),
        saliency=torch.tensor([1.0, 0.5, 30.0, 20.0]),
        mean_output=torch.zeros(4, 2),
        logits=logits,
        tokens=3,
    )
    experts = ExpertWeights(torch.zeros(4, 2, 3), torch.zeros(4, 2, 3), torch.zeros(4, 3, 2))
    by_usage = EXPERT_METHODS.get("mc_smoe").plan(stats, experts, 2)
    by_saliency = EXPERT_METHODS.get("mc_smoe", score="saliency").plan(stats, experts, 2)
    assert by_usage.groups == [[0, 2], [1, 3]]
    assert by_saliency.groups == [[2, 0], [3, 1]]
    assert by_saliency.weights[0] == pytest.approx([30 / 31, 1 / 31])
    with pytest.raises(ValueError, match="score 'size'"):
        EXPERT_METHODS.get("mc_smoe", score="size").plan(stats, experts, 2)
