"""Data-aware merging (``fisher``, ``regmean``): the math by construction, and whole YAML merges
of tiny Llama models with a byte-level tokenizer, statistics from calibration text."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from splice.models.merging import ConfigError, fisher_merge, get_method, regmean  # noqa: E402
from splice.models.merging import merge as engine_merge  # noqa: E402
from splice.models.merging.calibration import (  # noqa: E402
    Calibration,
    calibration_chunks,
    load_texts,
)
from splice.models.merging.data_aware import collect_statistics, merge, prepare  # noqa: E402
from splice.models.merging.registry import TensorInputs  # noqa: E402

#: Real text of the repository, as calibration.
CALIB = Path(__file__).resolve().parents[1] / "models" / "merging" / "methods" / "linear.py"


def _config() -> transformers.LlamaConfig:
    return transformers.LlamaConfig(
        vocab_size=257, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        tie_word_embeddings=False, eos_token_id=256, bos_token_id=None, pad_token_id=None,
    )  # fmt: skip


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, byte_tokenizer) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    paths = {}
    for i in range(2):
        torch.manual_seed(i)
        model = transformers.LlamaForCausalLM(_config())
        paths[f"m{i}"] = root / f"m{i}"
        model.save_pretrained(paths[f"m{i}"])
        byte_tokenizer(paths[f"m{i}"])
    return paths


def _state(path: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(path.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def _finite_logits(path: Path) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.arange(8).reshape(1, 8)).logits
    assert logits.shape == (1, 8, 257) and torch.isfinite(logits).all()


def _yaml(method: str, a: Path, b: Path, **params: object) -> dict:
    return {
        "merge_method": method,
        "models": [{"model": str(a), "parameters": {"weight": 1.0}}, {"model": str(b)}],
        "parameters": {"calibration": str(CALIB), "tokens": 384, **params},
    }


# --- the math, by construction -------------------------------------------------------------------


def test_regmean_is_the_least_squares_solution() -> None:
    rng = np.random.default_rng(0)
    out_f, in_f = 3, 5
    weights = [rng.normal(size=(out_f, in_f)) for _ in range(3)]  # W_i (out, in)
    inputs = [rng.normal(size=(n, in_f)) for n in (7, 11, 4)]  # X_i (n_i, in)
    # min_W sum_i ||X_i W^T - X_i W_i^T||^2, by numpy's least squares on the stacked rows.
    x = np.concatenate(inputs)
    y = np.concatenate([xi @ wi.T for xi, wi in zip(inputs, weights, strict=True)])
    expected = np.linalg.lstsq(x, y, rcond=None)[0].T  # (out, in)
    grams = [torch.from_numpy(xi.T @ xi) for xi in inputs]
    tensors = [torch.from_numpy(w).float() for w in weights]
    got = regmean(tensors, grams, alpha=1.0)
    assert got.shape == (out_f, in_f) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)
    # Weights scale a model's rows: weight 2 is that model's inputs counted twice.
    x2 = np.concatenate([inputs[0], inputs[0], inputs[1], inputs[2]])
    y2 = np.concatenate([x2[: 2 * 7] @ weights[0].T, y[7:]])
    expected2 = np.linalg.lstsq(x2, y2, rcond=None)[0].T
    got2 = regmean(tensors, grams, [2.0, 1.0, 1.0], alpha=1.0)
    np.testing.assert_allclose(got2.numpy(), expected2, atol=1e-5)


def test_regmean_alpha_zero_is_a_per_input_weighted_average() -> None:
    gen = torch.Generator().manual_seed(1)
    tensors = [torch.randn(4, 3, generator=gen) for _ in range(2)]
    grams = [torch.diag(torch.tensor([1.0, 2.0, 3.0])), torch.diag(torch.tensor([3.0, 2.0, 1.0]))]
    got = regmean(tensors, [g + 0.5 for g in grams], alpha=0.0)  # off-diagonals dropped
    d0, d1 = torch.tensor([1.5, 2.5, 3.5]), torch.tensor([3.5, 2.5, 1.5])
    expected = (tensors[0] * d0 + tensors[1] * d1) / (d0 + d1)  # column j weighted by G_jj
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(regmean([tensors[0]], [grams[0]]), tensors[0])  # one model: itself
    with pytest.raises(ValueError, match="Gram"):
        regmean(tensors, [torch.eye(4), torch.eye(4)])


def test_fisher_weighted_average() -> None:
    gen = torch.Generator().manual_seed(2)
    a, b = torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)
    f = torch.rand(5, 4, generator=gen) + 0.1
    torch.testing.assert_close(fisher_merge([a, b], [f, f]), (a + b) / 2)
    torch.testing.assert_close(fisher_merge([a, b], [f, f], [3.0, 1.0]), (3 * a + b) / 4)
    # Model 0 insensitive on a mask: those entries come from model 1, the others are mixed.
    mask = torch.rand(5, 4, generator=gen) < 0.5
    got = fisher_merge([a, b], [torch.where(mask, 0.0, f), f])
    torch.testing.assert_close(got[mask], b[mask])
    torch.testing.assert_close(got[~mask], ((a + b) / 2)[~mask])
    # Nobody sensitive (all zero): the weighted average.
    zero = torch.zeros(5, 4)
    torch.testing.assert_close(fisher_merge([a, b], [zero, zero], [1.0, 3.0]), (a + 3 * b) / 4)


def test_methods_without_statistics_average_with_a_warning() -> None:
    a, b = torch.ones(3, 2), 3 * torch.ones(3, 2)
    for name in ("fisher", "regmean"):
        method = get_method(name)
        inputs = TensorInputs([a, b], None, [{"weight": 1.0, "statistics": ""}] * 2,
                              dict(method.global_params))  # fmt: skip
        with pytest.warns(UserWarning, match="no statistics"):
            torch.testing.assert_close(method.merge_tensor(inputs), 2 * torch.ones(3, 2))
        inputs.params = {**inputs.params, "calibration": "calib.txt"}
        with pytest.raises(ValueError, match="data_aware.merge"):
            method.merge_tensor(inputs)


# --- statistics from calibration text ------------------------------------------------------------


def test_calibration_chunks_and_texts(models: dict[str, Path], tmp_path: Path) -> None:
    tok = transformers.AutoTokenizer.from_pretrained(models["m0"])
    calib = Calibration(["abc", "defgh"], tokens=7, seq_len=3)
    chunks = calibration_chunks(tok, calib, None)
    # "abc" <eos> "defgh" <eos>, the first 7 tokens, in chunks of 3 (the tail dropped).
    assert chunks.tolist() == [tok("abc")["input_ids"], [256, *tok("de")["input_ids"]]]
    (tmp_path / "b.txt").write_text("second")
    (tmp_path / "a.md").write_text("first")
    (tmp_path / "skip.bin").write_bytes(b"\0")
    assert load_texts(tmp_path) == ["first", "second"]
    assert load_texts(["x", "y"]) == ["x", "y"]


def test_statistics_files(models: dict[str, Path], tmp_path: Path) -> None:
    calib = Calibration(load_texts(CALIB), tokens=256, seq_len=64)
    fisher = collect_statistics(models["m0"], calib, "fisher", tmp_path / "f.safetensors")
    names = dict(transformers.LlamaForCausalLM(_config()).named_parameters())
    assert set(fisher) == set(names)
    assert all(fisher[n].shape == p.shape and (fisher[n] >= 0).all() for n, p in names.items())
    assert any(f.sum() > 0 for f in fisher.values())
    again = collect_statistics(models["m0"], calib, "fisher")  # deterministic
    assert all(torch.equal(fisher[n], again[n]) for n in fisher)
    grams = collect_statistics(models["m0"], calib, "regmean", tmp_path / "g.safetensors")
    q = grams["model.layers.0.self_attn.q_proj.weight"]
    assert q.shape == (32, 32) and torch.allclose(q, q.T)
    assert grams["lm_head.weight"].shape == (32, 32)
    assert "model.embed_tokens.weight" not in grams  # not a linear layer
    with safe_open(str(tmp_path / "g.safetensors"), framework="pt") as f:
        assert f.metadata()["count"] == "256" and f.metadata()["kind"] == "regmean"


# --- whole merges --------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["fisher", "regmean"])
def test_yaml_merge_loads_and_self_merge_is_identity(
    method: str, models: dict[str, Path], tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    report = merge(_yaml(method, models["m0"], models["m1"]), tmp_path / "out", cache_dir=cache)
    assert report.method == method and report.tensors > 0
    _finite_logits(tmp_path / "out")
    files = sorted(cache.glob(f"{method}-*.safetensors"))
    assert len(files) == 2  # one per model, reused by the next merges
    stamps = [os.stat(f).st_mtime_ns for f in files]
    merged, m0, m1 = _state(tmp_path / "out"), _state(models["m0"]), _state(models["m1"])
    norm = "model.layers.0.input_layernorm.weight"
    if method == "regmean":  # a linear weight is RegMean of the models' weights and Grams
        cfg = prepare(_yaml(method, models["m0"], models["m1"]), cache_dir=cache)
        stats = [entry.parameters["statistics"] for entry in cfg.models or []]
        name = "model.layers.1.mlp.down_proj.weight"
        grams = []
        for path in stats:
            with safe_open(path, framework="pt") as f:
                grams.append(f.get_tensor(name) / int(f.metadata()["count"]))
        expected = regmean([m0[name], m1[name]], grams, alpha=0.9)
        torch.testing.assert_close(merged[name], expected, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(merged[norm], (m0[norm] + m1[norm]) / 2)  # averaged
    else:
        name = "model.layers.1.mlp.down_proj.weight"
        lo = torch.minimum(m0[name], m1[name]) - 1e-6
        hi = torch.maximum(m0[name], m1[name]) + 1e-6
        assert ((merged[name] >= lo) & (merged[name] <= hi)).all()  # a convex combination
        assert not torch.allclose(merged[name], (m0[name] + m1[name]) / 2, atol=1e-4)
    # The same model twice gives the model back (its statistics from the cache).
    merge(_yaml(method, models["m0"], models["m0"]), tmp_path / "self", cache_dir=cache)
    assert [os.stat(f).st_mtime_ns for f in files] == stamps
    selfed = _state(tmp_path / "self")
    assert set(selfed) == set(m0)
    for key, value in m0.items():
        torch.testing.assert_close(selfed[key], value, atol=1e-4, rtol=1e-4)


def test_configuration_errors(models: dict[str, Path], tmp_path: Path) -> None:
    cfg = _yaml("fisher", models["m0"], models["m1"])
    del cfg["parameters"]["calibration"]
    with pytest.raises(ConfigError, match="parameters.calibration"):
        prepare(cfg, cache_dir=tmp_path)
    bad = _yaml("regmean", models["m0"], models["m1"], tokens="many")
    with pytest.raises(ConfigError, match="parameters.tokens"):
        prepare(bad, cache_dir=tmp_path)
    unknown = _yaml("regmean", models["m0"], models["m1"], calibrate=1)
    with pytest.raises(ConfigError, match="calibrate"):
        engine_merge(unknown, tmp_path / "x")
    # The engine alone, given calibration text but no statistics, says what to run.
    with pytest.raises(ValueError, match="data_aware.merge"):
        engine_merge(_yaml("regmean", models["m0"], models["m1"]), tmp_path / "y")


def test_the_merge_command_computes_statistics_first(
    models: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    import yaml

    config = tmp_path / "regmean.yaml"
    config.write_text(yaml.safe_dump(_yaml("regmean", models["m0"], models["m1"])))
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    done = subprocess.run(
        [sys.executable, "-m", "splice", "merge-weights", str(config), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("regmean: wrote")
    _finite_logits(tmp_path / "out")
