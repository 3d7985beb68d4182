"""The merge-pattern classifier: save/load, loss, ONNX parity, training, resume, HF bodies, CLI."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the classifier needs PyTorch (the `train` extra)")
pytest.importorskip("transformers", reason="the classifier needs transformers (`train` extra)")

from splice.models.training.configuration import SpliceConfig  # noqa: E402
from splice.models.training.modeling import SpliceMergeModel, any_correct_loss  # noqa: E402
from splice.models.training.train import (  # noqa: E402
    CHECKPOINT,
    STATE_FILE,
    TrainOptions,
    load_arrays,
    train,
)

L = 16
TINY = {"vocab_size": 64, "hidden_size": 32, "num_layers": 1, "num_heads": 4, "max_position": L}


def synthetic(n: int, seed: int) -> dict[str, np.ndarray]:
    """Examples whose label depends only on which sides insert something.

    a|o (sequence 0) and b|o (sequence 2) either only keep base tokens (edit type 1) or also
    insert some (edit type 2): no insert -> BASE, ours only -> OURS (and OURS_MINUS_BASE, the
    same text here), theirs only -> THEIRS, both -> OURS_THEIRS. Chance is about 25%.
    """
    rng = np.random.default_rng(seed)
    shape = (n, 4, L)
    lengths = rng.integers(4, L + 1, size=(n, 4))
    mask = (np.arange(L)[None, None, :] < lengths[..., None]).astype(np.int32)
    ids = rng.integers(5, TINY["vocab_size"], size=shape).astype(np.int32) * mask
    edits = np.ones(shape, dtype=np.int32)
    ours, theirs = rng.random(n) < 0.5, rng.random(n) < 0.5
    for i in range(n):
        for seq, inserts in ((0, ours[i]), (2, theirs[i])):
            if inserts:
                pos = rng.choice(lengths[i, seq], size=2, replace=False)
                edits[i, seq, pos] = 2
    edits *= mask
    labels = np.zeros((n, 10), dtype=np.uint8)
    labels[ours & theirs, 3] = 1
    labels[ours & ~theirs, 0] = 1
    labels[ours & ~theirs, 5] = 1
    labels[~ours & theirs, 1] = 1
    labels[~ours & ~theirs, 2] = 1
    return {"input_ids": ids, "edit_ids": edits, "attention_mask": mask, "labels": labels}


def random_inputs(config: SpliceConfig, batch: int = 3) -> tuple[torch.Tensor, ...]:
    from splice.models.training.export import sample_inputs

    return sample_inputs(config, batch, L, seed=5)


def test_save_load_round_trip(tmp_path: Path) -> None:
    from transformers import AutoModel

    torch.manual_seed(0)
    model = SpliceMergeModel(SpliceConfig(**TINY)).eval()
    inputs = random_inputs(model.config)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, SpliceMergeModel)
    with torch.no_grad():
        before, after = model(*inputs).logits, loaded(*inputs).logits
    assert before.shape == (3, 10)
    assert torch.equal(before, after)
    assert torch.isfinite(before).all()  # inputs include an all-padding sequence


def test_any_correct_loss() -> None:
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]], requires_grad=True)
    labels = torch.tensor([[1, 1, 0], [0, 0, 0]])  # the second example has no valid pattern
    loss = any_correct_loss(logits, labels)
    p = torch.softmax(logits[0], dim=0)
    assert torch.allclose(loss, -torch.log(p[0] + p[1]))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1].abs().sum() == 0
    weighted = any_correct_loss(logits, labels, torch.tensor([3.0, 1.0, 1.0]))
    assert torch.allclose(weighted, loss)  # one weighted example: its weight cancels


def test_onnx_matches_pytorch(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    ort = pytest.importorskip("onnxruntime", reason="parity is checked with onnxruntime")
    from splice.models.training.export import INPUT_NAMES, export_onnx, sample_inputs

    torch.manual_seed(0)
    model = SpliceMergeModel(SpliceConfig(**TINY)).eval()
    model.save_pretrained(tmp_path / "model")
    report = export_onnx(tmp_path / "model", tmp_path / "model.onnx")
    assert report.max_abs_diff <= 1e-4
    session = ort.InferenceSession(str(report.path), providers=["CPUExecutionProvider"])
    for batch, length in ((1, 7), (5, L)):
        inputs = sample_inputs(model.config, batch, length, seed=batch)
        feeds = {n: t.numpy() for n, t in zip(INPUT_NAMES, inputs, strict=True)}
        (onnx_logits,) = session.run(["logits"], feeds)
        with torch.no_grad():
            torch_logits = model(*inputs).logits.numpy()
        assert onnx_logits.shape == (batch, 10)
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-4


def test_training_learns_a_simple_rule(tmp_path: Path) -> None:
    architecture = SpliceConfig(**TINY, dropout=0.0)
    options = TrainOptions(
        epochs=8, lr=3e-3, architecture=architecture, num_threads=1, progress=False
    )
    result = train(synthetic(768, seed=1), synthetic(128, seed=2), tmp_path, options)
    assert result.step == result.total_steps == 8 * 24
    assert result.best_accuracy >= 0.9, result.history  # chance is about 0.25
    best = SpliceMergeModel.from_pretrained(tmp_path)
    assert best.config.class_weights is not None and len(best.config.class_weights) == 10
    assert architecture.class_weights is None  # the caller's architecture is left as it was
    records = [json.loads(line) for line in (tmp_path / "history.jsonl").read_text().splitlines()]
    assert max(r["accuracy"] for r in records) == result.best_accuracy


def test_fine_tuning_starts_from_a_float16_model(tmp_path: Path) -> None:
    """--init from a model saved in float16 (as the shipped one) trains, with bf16 autocast too,
    and starts from its weights."""
    start = SpliceMergeModel(SpliceConfig(**TINY))
    start.half().save_pretrained(tmp_path / "fp16")
    options = TrainOptions(
        epochs=1, num_threads=1, progress=False, lr=1e-9, init_from=tmp_path / "fp16", bf16=True
    )
    result = train(synthetic(64, seed=5), synthetic(32, seed=6), tmp_path / "ft", options)
    assert result.step == 2
    tuned = SpliceMergeModel.from_pretrained(tmp_path / "ft")
    assert next(tuned.parameters()).dtype == torch.float32
    for (name, a), b in zip(start.state_dict().items(), tuned.state_dict().values(), strict=True):
        torch.testing.assert_close(a.float(), b, atol=1e-3, rtol=0, msg=name)


def test_time_budget_then_resume_continues(tmp_path: Path) -> None:
    data, val = synthetic(96, seed=3), synthetic(32, seed=4)
    options = TrainOptions(
        epochs=2,
        num_threads=1,
        progress=False,
        max_val_examples=16,
        architecture=SpliceConfig(**TINY),
    )
    stopped = train(data, val, tmp_path / "a", replace(options, max_minutes=0))
    assert stopped.stopped_by_time and stopped.step == 1
    state = torch.load(tmp_path / "a" / CHECKPOINT / STATE_FILE, weights_only=True)
    assert state["step"] == 1
    assert (tmp_path / "a" / "model.safetensors").exists()  # best model saved on the way out
    resumed = train(data, val, tmp_path / "a", replace(options, resume=True))
    assert not resumed.stopped_by_time
    assert resumed.step == resumed.total_steps == 6
    assert [r["step"] for r in resumed.history] == [1, 3, 6]
    # an uninterrupted run ends with the very same weights
    straight = train(data, val, tmp_path / "b", options)
    a = SpliceMergeModel.from_pretrained(tmp_path / "a" / CHECKPOINT).state_dict()
    b = SpliceMergeModel.from_pretrained(tmp_path / "b" / CHECKPOINT).state_dict()
    assert straight.step == 6
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_weight_average_is_kept_and_resumes_exactly(tmp_path: Path) -> None:
    data, val = synthetic(768, seed=1), synthetic(128, seed=2)
    options = TrainOptions(
        epochs=8,
        lr=3e-3,
        num_threads=1,
        progress=False,
        architecture=SpliceConfig(**TINY, dropout=0.0),
        ema_decay=0.9,
    )
    result = train(data, val, tmp_path / "ema", options)
    assert result.best_accuracy >= 0.9, result.history  # chance is about 0.25
    # the checkpoint holds the raw weights and, beside them, the average that was validated
    state = torch.load(tmp_path / "ema" / CHECKPOINT / STATE_FILE, weights_only=True)
    raw = SpliceMergeModel.from_pretrained(tmp_path / "ema" / CHECKPOINT).state_dict()
    assert any(not torch.equal(state["ema"][k], raw[k]) for k in raw)
    if result.best_step == result.step:
        kept = SpliceMergeModel.from_pretrained(tmp_path / "ema").state_dict()
        assert all(torch.allclose(kept[k], state["ema"][k]) for k in kept)
    # stopped after one step and resumed, the average ends where a straight run's does
    stopped = train(data, val, tmp_path / "a", replace(options, max_minutes=0))
    assert stopped.stopped_by_time
    train(data, val, tmp_path / "a", replace(options, resume=True))
    again = torch.load(tmp_path / "a" / CHECKPOINT / STATE_FILE, weights_only=True)
    assert all(torch.allclose(again["ema"][k], state["ema"][k], atol=1e-6) for k in raw)
    with pytest.raises(ValueError, match="decay"):
        replace(options, ema_decay=1.5)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ema_decay", 1.5, "decay"),
        ("ema_decay", 0.0, "decay"),
        ("mirror_rate", -0.1, "mirror_rate"),
        ("epochs", 0, "epochs"),
        ("batch_size", 0, "batch_size"),
        ("checkpoint_every", 0, "checkpoint_every"),
    ],
)
def test_train_options_reject_bad_values(field: str, value: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(TrainOptions(), **{field: value})


def test_cli_train_rejects_bad_options_in_one_line(tmp_path: Path) -> None:
    """A bad value fails before any example set is built or folder made, without a traceback."""
    from click.testing import CliRunner

    from splice.cli import main

    out = tmp_path / "out"
    args = ["train", "--data", str(tmp_path / "missing"), "--out", str(out), "--ema", "1.5"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.output.strip().splitlines() == ["Error: EMA decay must be in (0, 1), got 1.5"]
    assert not out.exists()


def test_hugging_face_body(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    bert_config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=L,
    )
    BertModel(bert_config).save_pretrained(tmp_path / "bert")
    bert = BertModel.from_pretrained(tmp_path / "bert")
    model = SpliceMergeModel(SpliceConfig(body=str(tmp_path / "bert"), max_position=L)).eval()
    assert model.config.hidden_size == 32 and model.config.vocab_size == 64
    for name, tensor in bert.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], tensor), name
    inputs = random_inputs(model.config)
    model.save_pretrained(tmp_path / "splice")
    loaded = SpliceMergeModel.from_pretrained(tmp_path / "splice").eval()
    with torch.no_grad():
        before, after = model(*inputs).logits, loaded(*inputs).logits
    assert torch.isfinite(before).all()
    assert torch.allclose(before, after, atol=1e-6)
    architecture = SpliceConfig(body=str(tmp_path / "bert"), max_position=L)
    options = TrainOptions(epochs=1, architecture=architecture, num_threads=1, progress=False)
    result = train(synthetic(64, seed=5), synthetic(32, seed=6), tmp_path / "run", options)
    assert result.step == 2 and (tmp_path / "run" / "model.safetensors").exists()


def test_cli_train_and_export(tmp_path: Path) -> None:
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    from click.testing import CliRunner

    from splice.cli import main

    for split, seed in (("train", 7), ("val", 8)):
        np.savez(tmp_path / f"{split}.npz", **synthetic(64, seed=seed))
    assert len(load_arrays(tmp_path / "train.npz")["labels"]) == 64
    out = tmp_path / "out"
    args = ["train", "--train-npz", str(tmp_path / "train.npz"), "--val-npz"]
    args += [str(tmp_path / "val.npz"), "--out", str(out), "--tokenizer", str(tmp_path / "none")]
    args += ["--epochs", "1", "--hidden", "32", "--layers", "1", "--max-len", str(L)]
    args += ["--threads", "1", "--bf16", "--ema", "0.9"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "best val accuracy" in result.output
    assert "ema" in torch.load(out / CHECKPOINT / STATE_FILE, weights_only=True)
    result = CliRunner().invoke(main, ["export-onnx", str(out), "--out", str(tmp_path / "m.onnx")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "m.onnx").exists() and "max |onnx - torch|" in result.output
