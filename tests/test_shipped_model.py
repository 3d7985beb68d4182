"""The model shipped in ``models/shipped/``: complete, small, ONNX equal to PyTorch, and used by
the driver on real conflicts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from splice.resolver.chunks import split_lines
from splice.resolver.pipeline import find_hunks

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "shipped"
DATA = ROOT.parent / "shared" / "data" / "merges"
FILES = ("model.onnx", "model.safetensors", "config.json", "tokenizer.json", "calibration.json")


def _val_records(n: int) -> list[dict]:
    from splice.data.dataset import iter_records

    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    return list(iter_records(DATA, split="val", per_repo_limit=1, limit=n))


def test_the_package_holds_the_whole_model_within_25_mb() -> None:
    for name in (*FILES, "MODEL_CARD.md"):
        assert (SHIPPED / name).is_file(), name
    total = sum(p.stat().st_size for p in SHIPPED.iterdir() if p.is_file())
    assert total <= 25 * 1024 * 1024, f"{total / 2**20:.1f} MiB"
    calib = json.loads((SHIPPED / "calibration.json").read_text())
    assert 0.0 < calib["threshold"] <= 1.0 and 0.0 < calib["auto_threshold"] <= 1.0
    assert calib["validation"]["hunk_precision_at_threshold"] >= 0.95


def test_the_shipped_calibration_reranks_with_the_file_context() -> None:
    """The shipped calibration carries reranker weights for this version's features, the
    resolver loads them, and on real validation files they change some first choices."""
    from splice.models.serving.neural import NeuralResolver
    from splice.models.serving.rerank import FEATURES
    from splice.resolver.chunks import split_lines
    from splice.resolver.pipeline import find_hunks

    calib = json.loads((SHIPPED / "calibration.json").read_text())
    assert calib["rerank"]["features"] == list(FEATURES)
    resolver = NeuralResolver(SHIPPED)
    assert resolver.calibration.rerank == tuple(calib["rerank"]["weights"])
    changed = total = 0
    for rec in _val_records(12):
        texts = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        _, reports = find_hunks(*texts, rec.get("lang"), rec.get("path"))
        hunks = [r.hunk for r in reports]
        assert all(h.file is hunks[0].file is not None for h in hunks)
        plain = resolver.candidates_many(hunks, rerank=False)
        ranked = resolver.candidates_many(hunks)
        for a, b in zip(plain, ranked, strict=True):
            assert {c.lines for c in a} == {c.lines for c in b}  # same candidates, new order
            assert all(c.sure <= c.score + 1e-12 for c in b)
            total += 1
            changed += a[0].lines != b[0].lines
    assert total > 0 and changed > 0, (changed, total)


def test_onnx_equals_pytorch_on_real_pieces(tmp_path: Path) -> None:
    """The float32 export of the shipped weights equals PyTorch (<= 1e-4); the shipped int8 file
    picks the same top pattern for nearly every piece."""
    torch = pytest.importorskip("torch", reason="the PyTorch side needs torch")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    import shutil

    from splice.models.serving.encoding import encode_batch, encode_piece
    from splice.models.serving.neural import NeuralResolver
    from splice.models.serving.pieces import hunk_pieces
    from splice.models.training.export import export_onnx
    from splice.models.training.modeling import SpliceMergeModel

    fp32_dir = tmp_path / "fp32"
    fp32_dir.mkdir()
    for name in ("tokenizer.json", "calibration.json"):
        shutil.copy(SHIPPED / name, fp32_dir / name)
    export_onnx(SHIPPED, fp32_dir / "model.onnx")
    resolver = NeuralResolver(fp32_dir)
    pieces = []
    for rec in _val_records(6):
        texts = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        _, reports = find_hunks(*texts, rec.get("lang"), rec.get("path"))
        for r in reports:
            pieces.extend(hunk_pieces(r.hunk))
    assert pieces
    pieces = pieces[:32]
    onnx = resolver.logits(pieces)
    model = SpliceMergeModel.from_pretrained(str(SHIPPED)).float().eval()
    enc = [encode_piece(resolver.tokenizer, p.conflict, p.prefix, p.suffix, 128) for p in pieces]
    feeds = {k: torch.from_numpy(v) for k, v in encode_batch(enc).items()}
    with torch.no_grad():
        ref = model(**feeds).logits.double().numpy()
    assert np.abs(onnx - ref).max() <= 1e-4
    int8 = NeuralResolver(SHIPPED).logits(pieces)
    agree = (int8.argmax(axis=1) == ref.argmax(axis=1)).mean()
    assert agree >= 0.9 and np.abs(int8 - ref).max() < 0.5


def test_driver_uses_the_shipped_model_on_real_conflicts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SPLICE_MODEL_DIR"}
    resolved = 0
    for i, rec in enumerate(_val_records(8)):
        paths = []
        for side in ("base", "ours", "theirs"):
            p = tmp_path / f"{i}.{side}"
            p.write_text(rec[side], encoding="utf-8")
            paths.append(str(p))
        git = subprocess.run(
            ["git", "merge-file", "-p", paths[1], paths[0], paths[2]],
            capture_output=True,
            text=True,
            check=False,
        )
        out = subprocess.run(
            [sys.executable, "-m", "splice", "driver", *paths, "7", rec["path"]],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert out.returncode in (0, 1), out.stderr
        assert "model unavailable" not in out.stderr
        merged = Path(paths[1]).read_text(encoding="utf-8")
        if out.returncode == 1:
            assert "<<<<<<< " in merged and ">>>>>>> " in merged
        else:
            assert "<<<<<<< " not in merged
        left, git_left = merged.count("\n>>>>>>> "), git.stdout.count("\n>>>>>>> ")
        assert left <= git_left  # never more conflicts than git, and every one keeps its markers
        resolved += git_left - left
    print(f"{resolved} conflicts resolved by the shipped model")
