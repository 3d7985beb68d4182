"""The neural resolver served by onnxruntime, its calibration, and the driver's fallbacks.

A tiny random classifier (hidden 32, one layer) is built with PyTorch and exported to ONNX once
per module; tests that need it skip without torch. The resolver itself never imports torch.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import GitRepo
from splice.resolver.chunks import Conflict, split_lines
from splice.resolver.pipeline import decide, find_hunks
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "merges"
SHIPPED_TOKENIZER = ROOT / "models" / "shipped" / "tokenizer.json"
MAX_LEN = 128


def _real_hunks(n_files: int = 4) -> list[Hunk]:
    from splice.data.dataset import iter_records

    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    hunks: list[Hunk] = []
    for rec in iter_records(DATA, split="val", limit=n_files):
        texts = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        _, reports = find_hunks(*texts, rec.get("lang"), rec.get("path"))
        hunks.extend(r.hunk for r in reports)
    assert hunks
    return hunks


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random model exported to ONNX, with the shipped tokenizer and T = 1."""
    torch = pytest.importorskip("torch", reason="building the tiny model needs torch")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    from splice.models.training.configuration import SpliceConfig
    from splice.models.training.export import export_onnx
    from splice.models.training.modeling import SpliceMergeModel

    out = tmp_path_factory.mktemp("tiny_model")
    torch.manual_seed(0)
    config = SpliceConfig(
        vocab_size=8192, hidden_size=32, num_layers=1, num_heads=2, max_position=MAX_LEN
    )
    SpliceMergeModel(config).eval().save_pretrained(out / "hf")
    export_onnx(out / "hf", out / "model.onnx")
    shutil.copy(SHIPPED_TOKENIZER, out / "tokenizer.json")
    calib = {"temperature": 1.0, "threshold": 0.5, "token_weight": 0.5, "max_len": MAX_LEN}
    (out / "calibration.json").write_text(json.dumps(calib))
    return out


def test_resolver_answers_real_hunks(model_dir: Path) -> None:
    from splice.models.serving.neural import NeuralResolver

    resolver = NeuralResolver(model_dir)
    hunk = _real_hunks()[0]
    candidates = resolver.candidates(hunk)
    assert candidates and sum(c.score for c in candidates) <= 1.0 + 1e-9
    assert all(0.0 <= c.score <= 1.0 for c in candidates)
    res = resolver.resolve(hunk)
    assert res.chosen is not None and res.chosen == res.suggestions[0]
    assert 1 <= len(res.suggestions) <= 3
    assert sum(s.confidence for s in res.suggestions) <= 1.0 + 1e-9
    assert len({s.lines for s in res.suggestions}) == len(res.suggestions)
    confs = [s.confidence for s in res.suggestions]
    assert confs == sorted(confs, reverse=True)


def test_batching_equals_one_by_one(model_dir: Path) -> None:
    from splice.models.serving.neural import NeuralResolver

    resolver = NeuralResolver(model_dir)
    hunks = _real_hunks()[:12]
    many = resolver.resolve_many(hunks)
    assert len(many) == len(hunks)
    for hunk, batched in zip(hunks, many, strict=True):
        single = resolver.resolve(hunk)
        assert [s.lines for s in batched.suggestions] == [s.lines for s in single.suggestions]
        for a, b in zip(batched.suggestions, single.suggestions, strict=True):
            assert a.confidence == pytest.approx(b.confidence, abs=1e-5)
        assert len({s.lines for s in batched.suggestions}) == len(batched.suggestions)


def test_temperature_sharpens_or_flattens(model_dir: Path, tmp_path: Path) -> None:
    from splice.models.serving.neural import NeuralResolver

    hot = tmp_path / "hot"
    shutil.copytree(model_dir, hot, ignore=shutil.ignore_patterns("hf"))
    calib = json.loads((hot / "calibration.json").read_text())
    (hot / "calibration.json").write_text(json.dumps({**calib, "temperature": 50.0}))
    hunk = _real_hunks()[0]
    flat = NeuralResolver(hot).candidates(hunk)
    sharp = NeuralResolver(model_dir).candidates(hunk)
    assert flat[0].score <= sharp[0].score + 1e-9


def _with_rerank(model_dir: Path, dest: Path, weights: list[float], names=None) -> Path:
    from splice.models.serving.rerank import FEATURES

    shutil.copytree(model_dir, dest, ignore=shutil.ignore_patterns("hf"))
    calib = json.loads((dest / "calibration.json").read_text())
    calib["rerank"] = {"features": list(names or FEATURES), "weights": weights}
    (dest / "calibration.json").write_text(json.dumps(calib))
    return dest


def test_rerank_weights_from_the_calibration_reorder_candidates(
    model_dir: Path, tmp_path: Path
) -> None:
    """Zero weights keep the mixture's order; a large weight on is_theirs puts theirs first
    wherever it is a candidate; weights for other features are refused (model unavailable)."""
    from splice.models.serving.neural import ModelUnavailable, NeuralResolver
    from splice.models.serving.rerank import FEATURES

    hunks = _real_hunks()[:12]
    plain = NeuralResolver(model_dir).candidates_many(hunks)
    zero = _with_rerank(model_dir, tmp_path / "zero", [0.0] * len(FEATURES))
    same = NeuralResolver(zero).candidates_many(hunks)
    for a, b in zip(plain, same, strict=True):
        total = sum(c.score for c in a)
        assert [c.lines for c in a] == [c.lines for c in b]
        assert [c.score / total for c in a] == pytest.approx([c.score for c in b], abs=1e-9)
    w = [0.0] * len(FEATURES)
    w[FEATURES.index("is_theirs")] = 30.0
    theirs_first = NeuralResolver(_with_rerank(model_dir, tmp_path / "t", w))
    checked = 0
    for hunk, cands in zip(hunks, theirs_first.candidates_many(hunks), strict=True):
        key = "".join("".join(hunk.conflict.theirs).split())
        if any("".join("".join(c.lines).split()) == key for c in cands):
            assert "".join("".join(cands[0].lines).split()) == key
            checked += 1
        assert sum(c.score for c in cands) == pytest.approx(1.0)
    assert checked > 0
    with pytest.raises(ModelUnavailable, match="rerank"):
        NeuralResolver(_with_rerank(model_dir, tmp_path / "bad", [0.0, 1.0], names=["a", "b"]))


def test_resolver_does_not_import_torch(model_dir: Path) -> None:
    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    code = (
        "import sys\n"
        "from splice.data.dataset import iter_records\n"
        "from splice.resolver.chunks import split_lines\n"
        "from splice.resolver.pipeline import merge_file\n"
        "from splice.models.serving import load_resolver\n"
        f"rec = next(iter_records({str(DATA)!r}, split='val', limit=1))\n"
        "out = merge_file(rec['base'], rec['ours'], rec['theirs'], load_resolver('model'),\n"
        "                 path=rec.get('path'), min_confidence=0.0)\n"
        "assert out.hunks and out.hunks[0].resolution.chosen is not None\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok', out.resolved)\n"
    )
    env = {**os.environ, "SPLICE_MODEL_DIR": str(model_dir)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("ok")


def test_missing_or_corrupt_model_raises(tmp_path: Path) -> None:
    from splice.models.serving.neural import ModelUnavailable, NeuralResolver

    with pytest.raises(ModelUnavailable, match="missing"):
        NeuralResolver(tmp_path / "nowhere")
    corrupt = _corrupt_dir(tmp_path / "corrupt")
    with pytest.raises(ModelUnavailable):
        NeuralResolver(corrupt)


def _corrupt_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    shutil.copy(SHIPPED_TOKENIZER, path / "tokenizer.json")
    (path / "model.onnx").write_bytes(b"not an onnx model\n")
    (path / "calibration.json").write_text('{"temperature": 1.0}')
    return path


# ----------------------------------------------------------------------------- the git driver

# ours only changed whitespace: token-merge resolves it at its default threshold
WS = (
    "def f():\n    return call(alpha, beta)  \n",
    "def f():\n    return call(alpha, beta)\n",
    "def f():\n    return call(alpha2, beta)  \n",
)


def _notices(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "model unavailable" in line]


def test_driver_falls_back_from_a_corrupt_model(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLICE_MODEL_DIR", str(_corrupt_dir(tmp_path / "corrupt")))
    git_repo.use_driver("--resolver model")
    git_repo.conflict_branches({"f.py": WS})
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git_repo.read("f.py") == b"def f():\n    return call(alpha2, beta)\n"
    notices = _notices(proc.stderr)
    assert len(notices) == 1, proc.stderr
    assert notices[0].startswith("splice: model unavailable (")
    assert notices[0].endswith("): using token-merge")
    assert "Traceback" not in proc.stderr
    assert "splice: f.py: 1 of 1 conflict resolved" in proc.stderr


def test_driver_fallback_keeps_conflicts_and_exit_1(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLICE_MODEL_DIR", str(tmp_path / "missing"))
    git_repo.use_driver("--resolver model")
    git_repo.conflict_branches({"f.py": ("a = 0\n", "a = 1\n", "a = 2\n")})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert b"<<<<<<<" in git_repo.read("f.py")
    assert len(_notices(proc.stderr)) == 1, proc.stderr


def test_auto_is_silent_without_a_model(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLICE_MODEL_DIR", str(tmp_path / "missing"))
    git_repo.use_driver()  # the default resolver, "auto"
    git_repo.conflict_branches({"f.py": WS})
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not _notices(proc.stderr)
    assert "splice: f.py: 1 of 1 conflict resolved" in proc.stderr


def test_auto_says_so_when_the_model_is_broken(
    git_repo: GitRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLICE_MODEL_DIR", str(_corrupt_dir(tmp_path / "corrupt")))
    git_repo.use_driver()
    git_repo.conflict_branches({"f.py": WS})
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(_notices(proc.stderr)) == 1, proc.stderr


def test_driver_uses_a_working_model(
    git_repo: GitRepo, model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPLICE_MODEL_DIR", str(model_dir))
    git_repo.use_driver("--resolver model --min-confidence 0")
    git_repo.conflict_branches({"f.py": ("a = 0\n", "a = 1\n", "a = 2\n")})
    proc = git_repo.merge()
    assert not _notices(proc.stderr), proc.stderr
    assert proc.returncode == 0, proc.stdout + proc.stderr  # every answer applied at 0
    assert "splice: f.py: 1 of 1 conflict resolved" in proc.stderr


# ----------------------------------------------------------------------------- the pipeline


class _Scripted(Resolver):
    """A resolver with fixed suggestions, counting how it is called."""

    name = "scripted"

    def __init__(self, suggestions: tuple[Suggestion, ...]) -> None:
        self.suggestions = suggestions
        self.calls: list[str] = []

    def resolve(self, hunk: Hunk) -> Resolution:
        self.calls.append("resolve")
        return Resolution(self.suggestions[0], self.suggestions)

    def resolve_many(self, hunks: list[Hunk]) -> list[Resolution]:
        self.calls.append(f"many:{len(hunks)}")
        return [Resolution(self.suggestions[0], self.suggestions) for _ in hunks]


def _decide(resolver, base: str, ours: str, theirs: str, **kw):
    b, o, t = split_lines(base), split_lines(ours), split_lines(theirs)
    chunks, reports = find_hunks(b, o, t, "python")
    # the answers drop ours' edit: judged like the rest, to exercise the gates
    decide(chunks, reports, resolver, base, ours, theirs, lang="python", allow_discard=True, **kw)
    return reports


def test_pipeline_batches_and_tries_the_next_suggestion() -> None:
    base, ours, theirs = "x = f(1)\ny = 0\n", "x = f(2)\ny = 0\n", "x = f(3)\ny = 0\n"
    broken = Suggestion(("x = f(2\n",), 0.9, "broken")
    good = Suggestion(("x = f(3)\n",), 0.88, "good")
    resolver = _Scripted((broken, good))
    (report,) = _decide(resolver, base, ours, theirs)
    assert resolver.calls == ["many:1"]
    assert report.applied == good.lines and report.rejected is None
    # a next suggestion below the threshold is never applied
    low = _Scripted((broken, Suggestion(("x = f(3)\n",), 0.5, "low")))
    (report,) = _decide(low, base, ours, theirs)
    assert report.applied is None and report.rejected == "adds a parse error"


def test_pipeline_uses_the_resolvers_threshold() -> None:
    base, ours, theirs = "x = 1\n", "x = 2\n", "x = 3\n"
    resolver = _Scripted((Suggestion(("x = 3\n",), 0.9, ""),))
    resolver.min_confidence = 0.95
    (report,) = _decide(resolver, base, ours, theirs)
    assert report.applied is None and "below 0.95" in report.rejected
    (report,) = _decide(resolver, base, ours, theirs, min_confidence=0.8)
    assert report.applied == ("x = 3\n",)


# ----------------------------------------------------------------------------- calibration


def test_temperature_fit_recovers_the_true_temperature() -> None:
    from splice.models.training.calibrate import ece, fit_temperature, softmax

    rng = np.random.default_rng(0)
    true_logits = rng.normal(0, 2.0, size=(4000, 10))
    labels = np.array([rng.choice(10, p=p) for p in softmax(true_logits)])
    valid = np.zeros((4000, 10), dtype=bool)
    valid[np.arange(4000), labels] = True
    overconfident = true_logits * 3.0
    t = fit_temperature(overconfident, valid)
    assert t == pytest.approx(3.0, rel=0.15)
    right = valid[np.arange(4000), overconfident.argmax(axis=1)]
    before = ece(softmax(overconfident).max(axis=1), right)
    after = ece(softmax(overconfident, t).max(axis=1), right)
    assert after < before / 2


def test_threshold_is_the_lowest_reaching_the_target() -> None:
    from splice.models.training.calibrate import select_threshold

    conf = np.array([0.99, 0.98, 0.97, 0.9, 0.8, 0.7])
    right = np.array([True, True, True, True, False, False])
    thr, prec, cov, n = select_threshold(conf, right, 0.95)
    assert (thr, prec, n) == (0.9, 1.0, 4) and cov == pytest.approx(4 / 6)
    assert select_threshold(conf, np.zeros(6, dtype=bool), 0.95)[0] == 1.0


def _tiny_val_npz(tmp_path: Path) -> Path:
    """40 labelled pieces in 20 hunks, random labels, as ``splice.models.training.examples`` writes
    them."""
    from splice.models.serving.encoding import encode_piece
    from splice.models.serving.tokenizer import load_tokenizer

    tok = load_tokenizer(SHIPPED_TOKENIZER)
    rng = np.random.default_rng(1)
    rows, labels, keys = [], [], []
    for i in range(40):
        piece = Conflict(("a", " ", "=", " ", "0"), ("a", " ", "=", " ", str(i)), ("b",))
        rows.append(encode_piece(tok, piece, "x = 1\n", "\ny = 2\n", MAX_LEN))
        hot = np.zeros(10, dtype=np.uint8)
        hot[rng.integers(0, 10)] = 1
        labels.append(hot)
        keys.append(f"r#{i // 2}")
    npz = tmp_path / "val.npz"
    np.savez(
        npz,
        input_ids=np.stack([r.input_ids for r in rows]).astype(np.int32),
        edit_ids=np.stack([r.edit_ids for r in rows]).astype(np.int32),
        attention_mask=np.stack([r.attention_mask for r in rows]).astype(np.int32),
        labels=np.stack(labels),
        hunk_key=np.array(keys),
        meta=np.array(json.dumps({"max_len": MAX_LEN})),
    )
    return npz


def test_calibrate_command_writes_a_loadable_calibration(model_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner
    from splice.models.serving.neural import NeuralResolver

    from splice.cli import main

    npz = _tiny_val_npz(tmp_path)
    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("hf"))
    (work / "calibration.json").unlink()
    args = ["calibrate", str(work), "--val-npz", str(npz), "--no-hunks"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "temperature" in result.output and "coverage" in result.output
    data = json.loads((work / "calibration.json").read_text())
    assert data["temperature"] > 0 and 0.0 <= data["threshold"] <= 1.0
    assert data["n_pieces"] == 40 and data["n_hunks"] == 20
    assert NeuralResolver(work).min_confidence == pytest.approx(data["threshold"])
    # a given temperature and inference length are written as given
    args += ["--temperature", "2.0", "--max-len", "64"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads((work / "calibration.json").read_text())
    assert data["temperature"] == 2.0 and data["max_len"] == 64
    bad = CliRunner().invoke(main, [*args, "--temperature", "0"])
    assert bad.exit_code == 2 and "temperature" in bad.output.lower()


def test_calibrate_hunks_fits_weights_on_training_repositories(
    model_dir: Path, tmp_path: Path
) -> None:
    """--hunks: route weights from training-repository hunks, the rest from validation hunks,
    and a held-out report by repository group, on real shards (two of each split)."""
    from click.testing import CliRunner
    from splice.models.serving.neural import NeuralResolver

    from splice.cli import main
    from splice.data.dataset import repo_of_shard, shard_paths, split_of

    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    data = tmp_path / "data"
    data.mkdir()
    by_split: dict[str, list[Path]] = {"train": [], "val": []}
    for shard in shard_paths(DATA):
        group = by_split[split_of(repo_of_shard(shard))]
        if len(group) < 2:
            group.append(shard)
            (data / shard.name).symlink_to(shard)
    work = tmp_path / "model"
    shutil.copytree(model_dir, work, ignore=shutil.ignore_patterns("hf"))
    args = ["calibrate", str(work), "--val-npz", str(_tiny_val_npz(tmp_path)), "--data"]
    args += [str(data), "--per-repo", "3", "--train-per-repo", "3", "--folds", "2"]
    args += ["--workers", "2", "--auto-threshold", "0.8"]
    result = CliRunner().invoke(main, [*args, "--save-rows", str(tmp_path / "rows")])
    assert result.exit_code == 0, result.output
    assert "training hunks" in result.output and "held out (2 groups" in result.output
    calib = json.loads((work / "calibration.json").read_text())
    # the saved rows are the ones fitted on and reported: same counts, same reranker
    from splice.models.training.hunk_calibration import fit_rerank, load_rows

    saved_val = load_rows(tmp_path / "rows" / "val.jsonl.gz")
    saved_train = load_rows(tmp_path / "rows" / "train.jsonl.gz")
    assert (
        len(saved_val) == calib["n_hunks"] and len(saved_train) == calib["rerank"]["training_hunks"]
    )
    assert {h.repo for h in saved_val} == set(calib["held_out"]["per_repository"])
    refit = fit_rerank(saved_train, (0.5, 0.5))
    np.testing.assert_allclose(refit, calib["rerank"]["weights"], atol=1e-5)
    assert "training-repository hunks" in calib["notes"]
    repos = calib["held_out"]["per_repository"]
    assert f"averaged over {len(repos)} repositories" in result.output
    assert sum(g["hunks"] for g in repos.values()) == calib["held_out"]["n_hunks"]
    assert calib["token_weight"] == calib["clean_weight"] == 0.5  # the reranker balances them
    assert calib["auto_threshold"] == 0.8  # as given
    held = calib["held_out"]
    assert held["n_hunks"] == calib["n_hunks"] > 0 and len(held["folds"]) == 2
    val_repos = {repo_of_shard(p) for p in by_split["val"]}
    assert {r for f in held["folds"] for r in f["repos"]} <= val_repos
    assert NeuralResolver(work).calibration.token_weight == calib["token_weight"]
    from splice.models.serving.rerank import FEATURES

    assert "reranker fitted" in result.output and "reranker" in calib["notes"]
    assert calib["rerank"]["features"] == list(FEATURES)
    assert NeuralResolver(work).calibration.rerank == tuple(calib["rerank"]["weights"])
    # without the reranker the route weights are fitted on the training hunks instead
    result = CliRunner().invoke(main, [*args, "--no-rerank", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "route weights from" in result.output
    assert "rerank" not in json.loads((work / "calibration.json").read_text())


# ----------------------------------------------------------------------------- evaluation


def test_eval_reports_top_k_for_the_model(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from splice.data.dataset import iter_records
    from splice.data.evaluation import evaluate

    monkeypatch.setenv("SPLICE_MODEL_DIR", str(model_dir))
    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    records = list(iter_records(DATA, split="val", limit=3))
    report = evaluate(records, ["model", "token-merge"], dataset="t", progress=False)
    for name in ("model", "token-merge"):
        overall = report["resolvers"][name]["overall"]
        assert {"hunks", "proposed", "correct", "coverage", "precision", "accuracy"} <= set(overall)
        assert 0.0 <= overall["top1_always"] <= overall["top3_always"] <= 1.0
        for m in report["resolvers"][name]["by_lang"].values():
            assert "top3_always" in m


def test_parallel_collection_equals_serial(model_dir: Path) -> None:
    from splice.models.serving.neural import NeuralResolver
    from splice.models.training.hunk_calibration import collect, collect_parallel

    from splice.data.dataset import iter_records

    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    records = list(iter_records(DATA, split="val", limit=6))
    calib = json.loads((model_dir / "calibration.json").read_text())
    serial = collect(records, NeuralResolver(model_dir))
    parallel = collect_parallel(records, str(model_dir), calib, workers=2)
    assert serial and len(serial) == len(parallel)
    for a, b in zip(serial, parallel, strict=True):
        assert a.record_id == b.record_id and (a.right == b.right).all()
        np.testing.assert_allclose(a.token_p, b.token_p, atol=1e-6)
        np.testing.assert_allclose(a.features, b.features, atol=1e-6)


def test_calibration_rows_score_as_the_resolver_ranks(model_dir: Path, tmp_path: Path) -> None:
    """What calibration measures (hunk_calibration.scores / outcomes on collected rows) is what
    the resolver does: same reranked scores, same top candidate, confidence from Candidate.sure."""
    from splice.models.serving.neural import NeuralResolver
    from splice.models.serving.rerank import FEATURES
    from splice.models.training import hunk_calibration as hc
    from splice.resolver.pipeline import find_hunks as hunks_of

    from splice.data.dataset import iter_records

    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    weights = list(np.random.default_rng(3).normal(size=len(FEATURES)))
    resolver = NeuralResolver(_with_rerank(model_dir, tmp_path / "r", weights))
    records = list(iter_records(DATA, split="val", limit=5))
    rows = hc.collect(records, resolver)
    by_file: dict[str, list] = {}
    for row in rows:
        by_file.setdefault(row.record_id, []).append(row)
    checked = 0
    for rec in records:
        texts = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        _, reports = hunks_of(*texts, rec.get("lang"), rec.get("path"))
        mine = by_file.get(rec["id"], [])
        if not mine or len(mine) != len(reports):
            continue  # some hunk not located: the file's votes differ (see collect)
        ranked = resolver.candidates_many([r.hunk for r in reports])
        for row, cands in zip(mine, ranked, strict=True):
            s = hc.scores(row, 0.5, 0.5, weights)
            assert sorted(s, reverse=True) == pytest.approx([c.score for c in cands], abs=1e-9)
            conf = hc.outcomes([row], 0.5, 0.5, weights)[0][0]
            assert conf == pytest.approx(cands[0].sure, abs=1e-9)
            checked += 1
    assert checked > 0
