"""Pretraining, mirror augmentation, hunk-level calibration, the ``auto`` combination, clean token
merges as model candidates, and ``splice resolve --explain``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from splice.models.serving.auto import AutoResolver, combine
from splice.models.training.hunk_calibration import (
    HunkCandidates,
    cross_fit,
    error_kinds,
    fit,
    fit_platt,
    platt,
    repo_folds,
)
from splice.resolver.chunks import Conflict
from splice.resolver.resolvers import Hunk, Resolution, Suggestion

from splice.cli import main

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_TOKENIZER = ROOT / "models" / "shipped" / "tokenizer.json"


# ----------------------------------------------------------------------------- mirror


def test_mirror_swaps_sides_and_patterns() -> None:
    torch = pytest.importorskip("torch", reason="training code needs torch")
    from splice.models.serving.encoding import PATTERNS
    from splice.models.training.train import MIRROR_LABELS, mirror

    names = [p.value for p in PATTERNS]
    for i, j in enumerate(MIRROR_LABELS):  # each pattern's mirror is the name with sides swapped
        swapped = names[i].replace("ours", "X").replace("theirs", "ours").replace("X", "theirs")
        assert names[j] == swapped
    ids = torch.arange(2 * 4 * 3).view(2, 4, 3)
    labels = torch.eye(10)[[3, 3]]  # ours_theirs
    out = mirror({"input_ids": ids, "labels": labels}, torch.tensor([True, False]))
    assert out["input_ids"][0].tolist() == ids[0][[2, 3, 0, 1]].tolist()
    assert out["input_ids"][1].tolist() == ids[1].tolist()
    assert out["labels"].argmax(1).tolist() == [names.index("theirs_ours"), 3]


# ----------------------------------------------------------------------------- pretraining


def test_pretraining_lowers_the_loss_and_feeds_fine_tuning(tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="pretraining needs torch")
    from splice.models.training.configuration import SpliceConfig
    from splice.models.training.modeling import SpliceMergeModel
    from splice.models.training.pretrain import PretrainOptions, pretrain

    # a corpus with a rule to learn: a repeated cycle of 50 subword ids
    corpus = np.tile(np.arange(100, 150, dtype=np.uint16), 400)
    options = PretrainOptions(
        seq_len=32,
        batch_size=16,
        steps=150,
        lr=3e-3,
        warmup=10,
        device="cpu",
        log_every=10,
        architecture=SpliceConfig(hidden_size=32, num_layers=1, num_heads=2, max_position=32),
    )
    summary = pretrain(corpus, tmp_path / "pre", options)
    log = [
        json.loads(x) for x in (tmp_path / "pre" / "pretrain_log.jsonl").read_text().splitlines()
    ]
    assert log[-1]["loss"] < log[0]["loss"] - 1.0  # the cycle is predictable from its context
    assert summary["steps"] == 150
    model = SpliceMergeModel.from_pretrained(str(tmp_path / "pre"))
    assert model.config.hidden_size == 32


def test_mask_tokens_never_masks_special_tokens() -> None:
    from splice.models.training.pretrain import mask_tokens

    rng = np.random.default_rng(0)
    ids = np.array([[0, 1, 2, 3, 4] + [100] * 995], dtype=np.uint16)
    inputs, targets = mask_tokens(ids, rng, 8192, mask_id=1, n_special=5)
    assert (targets[0, :5] == -100).all()
    chosen = targets >= 0
    assert 0.1 < chosen.mean() < 0.2
    assert (targets[chosen] == 100).all()
    assert (inputs[~chosen] == ids.astype(np.int64)[~chosen]).all()


# ----------------------------------------------------------------------------- calibration


def test_platt_scaling_is_monotone_and_fits_a_known_curve() -> None:
    rng = np.random.default_rng(0)
    score = rng.uniform(0.01, 0.99, 20000)
    truth_a, truth_b = 2.0, -0.5
    right = rng.random(20000) < platt(score, truth_a, truth_b)
    a, b = fit_platt(score, right)
    assert a == pytest.approx(truth_a, abs=0.15) and b == pytest.approx(truth_b, abs=0.1)
    grid = np.linspace(0.01, 0.99, 50)
    assert np.all(np.diff(platt(grid, a, b)) > 0)


def _hunk(tp: list[float], hp: list[float], right: int, **kw: object) -> HunkCandidates:
    r = np.zeros(len(tp), bool)
    r[right] = True
    return HunkCandidates("python", "r", np.array(tp), np.array(hp), right=r, **kw)  # type: ignore[arg-type]


def test_fit_picks_the_route_that_is_right() -> None:
    # the token route is right every time, the hunk route never: the token weight goes up
    hunks = [_hunk([0.9, 0.1], [0.2, 0.8], 0, clean=False, has_token=True) for _ in range(50)]
    report = fit(hunks)
    assert report["token_weight"] > 0.5
    assert report["hunk_top1"] == 1.0
    assert 0.0 <= report["threshold"] <= 1.0


def test_fit_prefers_the_policy_when_it_is_right_and_surer() -> None:
    hunks = [
        _hunk(
            [0.0, 0.0],
            [0.6, 0.4],
            1,
            clean=False,
            has_token=False,
            policy_conf=0.99,
            policy_right=True,
        )
        for _ in range(40)
    ]
    report = fit(hunks)
    assert report["hunk_top1"] == 0.0  # the model alone is always wrong here
    assert report["auto_top1"] == 1.0
    assert report["auto_coverage"] == 1.0 and report["auto_precision_at_threshold"] == 1.0


def test_repo_folds_never_split_a_repository() -> None:
    hunks = [
        HunkCandidates("go", repo, np.zeros(1), np.zeros(1), False, False)
        for repo, n in (("a", 5), ("b", 3), ("c", 2), ("d", 1))
        for _ in range(n)
    ]
    folds = repo_folds(hunks, 2)
    assert sum(int(f.sum()) for f in folds) == len(hunks)
    assert not (folds[0] & folds[1]).any()
    repos_of = [{h.repo for h, m in zip(hunks, f, strict=True) if m} for f in folds]
    assert not (repos_of[0] & repos_of[1])
    assert sorted(int(f.sum()) for f in folds) == [5, 6]  # greedy balance: a | b, c, d


def test_cross_fit_reports_held_out_repositories_not_the_fit() -> None:
    # repository "a": the token route is right; "b": the hunk route is. Fitted on all hunks the
    # weight serves the larger one; held out, each repository gets the other's weight
    a = [_hunk([0.9, 0.1], [0.2, 0.8], 0, clean=False, has_token=True) for _ in range(60)]
    b = [_hunk([0.9, 0.1], [0.2, 0.8], 1, clean=False, has_token=True) for _ in range(40)]
    for h in b:
        h.repo = "b"
    in_sample = fit(a + b)["hunk_top1"]
    held_out = cross_fit(a + b, k=2)
    assert in_sample == 0.6
    assert held_out["hunk_top1"] == 0.0  # every repository scored with the other's weight
    assert held_out["n_hunks"] == 100 and len(held_out["folds"]) == 2
    assert {tuple(f["repos"]) for f in held_out["folds"]} == {("r",), ("b",)}


def test_cross_fit_reports_each_repository_and_their_mean() -> None:
    # with the route weights given, every hunk ranks candidate 0 first: right in "r", wrong in "b"
    a = [_hunk([0.9, 0.1], [0.2, 0.8], 0, clean=False, has_token=True) for _ in range(60)]
    b = [_hunk([0.9, 0.1], [0.2, 0.8], 1, clean=False, has_token=True) for _ in range(40)]
    for h in b:
        h.repo = "b"
    held_out = cross_fit(a + b, k=2, weights=(0.5, 0.5))
    assert held_out["hunk_top1"] == 0.6  # pooled: the larger repository weighs more
    assert held_out["repo_mean_top1"] == 0.5  # each repository once
    repos = held_out["per_repository"]
    assert {r: (g["hunks"], g["top1"]) for r, g in repos.items()} == {
        "r": (60, 1.0),
        "b": (40, 0.0),
    }


def test_error_kinds_names_the_right_and_the_chosen_answer() -> None:
    sides = np.array([1, 2, 0], np.int8)  # ours, theirs, a combination
    wrong_side = _hunk([0, 0, 0], [0.6, 0.3, 0.1], 1, clean=False, has_token=False, sides=sides)
    right = _hunk([0, 0, 0], [0.6, 0.3, 0.1], 0, clean=False, has_token=False, sides=sides)
    missing = _hunk([0, 0, 0], [0.2, 0.7, 0.1], 0, clean=False, has_token=False, sides=sides)
    missing.right[:] = False
    kinds = error_kinds([wrong_side, right, missing, wrong_side], (0.5, 0.5))
    assert kinds == {"theirs -> ours": 0.5, "not a candidate -> theirs": 0.25}


# ----------------------------------------------------------------------------- auto


def _s(text: str, conf: float, why: str = "") -> Suggestion:
    return Suggestion((text,), conf, why)


def test_combine_takes_the_surer_answer_and_keeps_three_distinct() -> None:
    policy = Resolution(chosen=_s("a\n", 0.9, "policy"), suggestions=(_s("a\n", 0.9, "policy"),))
    model = Resolution(
        chosen=_s("b\n", 0.6, "m"),
        suggestions=(_s("b\n", 0.6), _s(" a \n", 0.95), _s("c\n", 0.1), _s("d\n", 0.05)),
    )
    out = combine(policy, model)
    assert out.chosen is not None and out.chosen.confidence == 0.95  # same text as the policy's
    assert [s.lines[0].strip() for s in out.suggestions] == ["a", "b", "c"]
    assert combine(Resolution(chosen=None), Resolution(chosen=None)).chosen is None


class _Fixed:
    """A stand-in *model* (not the thing under test) with fixed answers."""

    min_confidence = 0.7

    def resolve_many(self, hunks: list[Hunk]) -> list[Resolution]:
        return [Resolution(chosen=_s("x\n", 0.8), suggestions=(_s("x\n", 0.8),)) for _ in hunks]


def test_auto_resolver_combines_policy_and_model() -> None:
    subset = Hunk(Conflict(("a = 1\n",), ("a = 2\n",), ("a = 2\n",)), "python")
    auto = AutoResolver(_Fixed())
    assert auto.min_confidence == 0.7
    (res,) = auto.resolve_many([subset])
    assert res.chosen is not None and len(res.suggestions) >= 1


# ----------------------------------------------------------------------------- clean candidates


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch", reason="building the tiny model needs torch")
    pytest.importorskip("onnxscript", reason="the ONNX exporter needs onnxscript")
    from splice.models.training.configuration import SpliceConfig
    from splice.models.training.export import export_onnx
    from splice.models.training.modeling import SpliceMergeModel

    out = tmp_path_factory.mktemp("tiny")
    torch.manual_seed(0)
    config = SpliceConfig(hidden_size=32, num_layers=1, num_heads=2, max_position=64)
    SpliceMergeModel(config).eval().save_pretrained(out / "hf")
    export_onnx(out / "hf", out / "model.onnx")
    shutil.copy(SHIPPED_TOKENIZER, out / "tokenizer.json")
    calib = {"temperature": 1.0, "threshold": 0.5, "max_len": 64, "clean_weight": 0.7}
    (out / "calibration.json").write_text(json.dumps(calib))
    return out


def test_a_clean_token_merge_is_a_candidate_with_its_weight(tiny_model: Path) -> None:
    from splice.models.serving.neural import NeuralResolver

    # different lines edited on each side of one line-level hunk: the token merge is clean
    hunk = Hunk(Conflict(("f(a, b)\n",), ("f(a2, b)\n",), ("f(a, b2)\n",)), "python", path="x.py")
    cands = NeuralResolver(tiny_model).candidates(hunk)
    clean = [c for c in cands if c.clean]
    assert len(clean) == 1 and clean[0].lines == ("f(a2, b2)\n",)
    assert clean[0].score >= 0.7 - 1e-9  # the clean weight times probability 1, plus its share
    assert sum(c.score for c in cands) == pytest.approx(1.0)


def test_platt_map_changes_confidences_not_order(tiny_model: Path, tmp_path: Path) -> None:
    from splice.models.serving.neural import NeuralResolver

    work = tmp_path / "m"
    shutil.copytree(tiny_model, work, ignore=shutil.ignore_patterns("hf"))
    calib = json.loads((work / "calibration.json").read_text())
    hunk = Hunk(Conflict(("x = 1\n",), ("x = 2\n",), ("x = 3\n",)), "python")
    before = NeuralResolver(work).resolve(hunk)
    calib.update(platt_a=2.0, platt_b=-1.0)
    (work / "calibration.json").write_text(json.dumps(calib))
    after = NeuralResolver(work).resolve(hunk)
    assert [s.lines for s in before.suggestions] == [s.lines for s in after.suggestions]
    assert [s.confidence for s in before.suggestions] != [s.confidence for s in after.suggestions]
    calib["platt_a"] = -1.0
    (work / "calibration.json").write_text(json.dumps(calib))
    from splice.models.serving.neural import ModelUnavailable

    with pytest.raises(ModelUnavailable, match="platt_a"):
        NeuralResolver(work)


# ----------------------------------------------------------------------------- --explain


def test_resolve_explain_lists_outcomes_and_suggestions(tmp_path: Path) -> None:
    text = (
        "def f():\n"
        "<<<<<<< ours\n    return g(1, 2)\n"
        "||||||| base\n    return g(1)\n"
        "=======\n    return g(1)  # note\n"
        ">>>>>>> theirs\n"
        "x = 1\n"
        "<<<<<<< ours\n    y = 1\n"
        "||||||| base\n    y = 0\n"
        "=======\n    y = 2\n"
        ">>>>>>> theirs\n"
    )
    path = tmp_path / "m.py"
    path.write_text(text)
    args = ["resolve", str(path), "--resolver", "token-merge", "--explain", "--dry-run"]
    result = CliRunner().invoke(main, args)
    lines = result.output.splitlines()
    ours_line = [x for x in lines if x.startswith(f"{path}:2:")]
    second = [x for x in lines if x.startswith(f"{path}:10:")]
    assert ours_line and second, result.output
    assert "kept markers" in second[0]
    assert result.exit_code == 1  # one conflict is left
