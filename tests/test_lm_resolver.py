"""The code language model in the resolver (models/serving/lm_scoring.py): its features and
weights, the candidates it writes, the one decision rule for them, and the fallback when it is
missing or broken.

The LM here is a real ``LlamaForCausalLM`` exported through ``export_lm`` and served by
onnxruntime, built so that it always writes the same line: its layers add nothing to the
residual stream (zero output projections), so the next token depends on the current one only,
and its output rows send ``<|fim_middle|>`` to the token ``WORD``, ``WORD`` to a line end and the
line end to the end token.
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

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import GitRepo  # noqa: E402
from splice.models.serving.lm_scoring import (  # noqa: E402
    LM_FEATURES,
    RERANK_FILE,
    LMRerank,
    LMScorer,
    lm_features,
)
from splice.models.serving.neural import NeuralResolver, default_model_dir  # noqa: E402
from splice.models.serving.prompt import LMTokenizer  # noqa: E402
from splice.models.serving.rerank import rerank_scores  # noqa: E402
from splice.models.training.lm_export import LMExportOptions, export_lm  # noqa: E402
from splice.resolver.pipeline import find_hunks  # noqa: E402
from splice.resolver.resolvers import WRITTEN, WRITTEN_SOURCE  # noqa: E402
from splice.resolver.thresholds import AnswerFeatures, Thresholds  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "models" / "shipped" / "tokenizer.json"
#: The line the model writes (one token of the vocabulary).
WORD = "return"

BASE = "x = 1\ny = x\nprint(y)\n"
OURS = "x = 1\ny = x + 1\nprint(y)\n"
THEIRS = "x = 1\ny = x * 2\nprint(y)\n"


def writing_lm(folder: Path) -> None:
    """The model of the module doc, saved with the LM tokenizer in ``folder``."""
    tok = LMTokenizer.from_file(TOKENIZER)
    (word,), (newline,) = tok.encode(WORD), tok.encode("\n")
    config = transformers.LlamaConfig(
        vocab_size=tok.vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        eos_token_id=tok.special.end,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        emb = model.model.embed_tokens.weight
        head = model.lm_head.weight
        head.zero_()
        for now, then in ((tok.special.middle, word), (word, newline), (newline, tok.special.end)):
            head[then] = 3.0 * emb[now] / emb[now].norm()
    model.save_pretrained(folder)
    tok.to_hf().save(str(folder / "tokenizer.json"))


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> Path:
    """The exported writing LM with weights that trust it (``written`` and its log-prob)."""
    root = tmp_path_factory.mktemp("writing-lm")
    writing_lm(root / "hf")
    export_lm(root / "hf", root / "onnx", LMExportOptions(budget=256, keep_fp32=False))
    LMRerank(weights=(1.0, 0.0, 0.0, 20.0), beams=2, max_new_tokens=16).save(root / "onnx")
    return root / "onnx"


def test_zero_weights_give_the_classifier_order_back_and_features_are_relative() -> None:
    lp = np.array([-3.0, -1.0, -7.0])
    feats = lm_features(lp, [3, 1, 7], [False, False, True])
    assert feats.shape == (3, len(LM_FEATURES))
    assert feats[:, 0].tolist() == [-2.0, 0.0, -6.0]
    assert feats[:, 1].tolist() == [-1.0, -1.0, -1.0]
    assert feats[:, 2].tolist() == [0.0, 1.0, 0.0]
    assert feats[:, 3].tolist() == [0.0, 0.0, 1.0]
    prior = np.array([0.6, 0.3, 1e-4])
    same = rerank_scores(prior, feats, np.zeros(len(LM_FEATURES)))
    assert np.allclose(same, prior / prior.sum())
    trusting = rerank_scores(prior, feats, np.array([2.0, 0.0, 0.0, 0.0]))
    assert int(np.argmax(trusting)) == 1


def test_rerank_file_round_trips_and_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    saved = LMRerank(weights=(0.5, -1.0, 0.25, 2.0), beams=4, fitted_on="a test")
    saved.save(tmp_path)
    assert LMRerank.load(tmp_path) == saved
    data = json.loads((tmp_path / RERANK_FILE).read_text())
    for bad in (
        {**data, "features": ["lm_log_prob"]},
        {**data, "weights": [1.0]},
        {**data, "weights": [float("nan")] * len(LM_FEATURES)},
        {**data, "beams": -1},
    ):
        with pytest.raises(ValueError):
            LMRerank.from_json(bad)
    assert LMRerank.load(tmp_path / "nowhere") is None


def test_written_answers_need_the_written_groups_threshold_too() -> None:
    keep = AnswerFeatures("both")
    written = AnswerFeatures("both", written=True)
    plain = Thresholds(0.8, 0.95)
    assert plain.required(keep) == 0.8
    assert plain.required(written) is None  # no "written" group: never applied
    grouped = Thresholds(0.8, 0.95, groups=(("written", 0.9),))
    assert grouped.required(written) == 0.9
    assert grouped.required(AnswerFeatures("drops-ours", written=True)) == 0.95
    low = Thresholds(0.8, None, groups=(("written", 0.5),))
    assert low.required(written) == 0.8  # the stricter of the two
    assert low.required(AnswerFeatures("drops-ours", written=True)) is None


def _hunks():
    lines = [s.splitlines(keepends=True) for s in (BASE, OURS, THEIRS)]
    _, reports = find_hunks(*lines, "python", "f.py")
    return [r.hunk for r in reports]


def test_the_lm_writes_a_candidate_and_scores_every_one_on_a_cache(lm_dir: Path) -> None:
    scorer = LMScorer.load(lm_dir)
    hunks = _hunks()
    written = scorer.write(hunks)
    assert [w[0][0] for w in written] == [(WORD + "\n",)]
    texts = [[c.lines for c in NeuralResolver().candidates_many(hunks)[0]] + [(WORD + "\n",)]]
    scores, lengths = scorer.score(hunks, texts)
    assert lengths[0][-1] == 3  # the word, the line end and the end token
    assert int(np.argmax(scores[0])) == len(texts[0]) - 1
    assert scores[0][-1] > -1e-2  # the model is sure of its line


def test_a_hunk_whose_candidates_do_not_fit_is_left_to_the_classifier(lm_dir: Path) -> None:
    scorer = LMScorer.load(lm_dir)
    long = tuple(f"value_{i} = compute({i})\n" for i in range(200))  # far over the budget
    scores, lengths = scorer.score(_hunks(), [[(WORD + "\n",), long]])
    assert scores[0].tolist() == [0.0, 0.0] and lengths[0][1] > 256
    feats = lm_features(scores[0], lengths[0], [False, False])
    prior = np.array([0.3, 0.7])
    assert np.allclose(rerank_scores(prior, feats, np.ones(len(LM_FEATURES))), prior)


def test_the_resolver_shows_written_answers_and_never_applies_them_uncalibrated(
    lm_dir: Path,
) -> None:
    resolver = NeuralResolver()
    resolver.lm = LMScorer.load(lm_dir)
    (answer,) = resolver.resolve_many(_hunks())
    assert answer.chosen is not None
    assert answer.chosen.lines == (WORD + "\n",)
    assert answer.chosen.explanation == WRITTEN and answer.chosen.source == WRITTEN_SOURCE
    alone = NeuralResolver().resolve_many(_hunks())[0]
    assert all(s.source == "model" for s in alone.suggestions)


def _splice(repo: GitRepo, *args: str, lm: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SPLICE_LM_DIR": lm}
    return subprocess.run(
        [sys.executable, "-m", "splice", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


def _conflicted(repo: GitRepo) -> bytes:
    repo.git("config", "merge.conflictStyle", "diff3")
    repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    assert repo.merge().returncode == 1
    return repo.read("f.py")


def test_explain_shows_the_written_suggestion_and_the_markers_stay(
    git_repo: GitRepo, lm_dir: Path
) -> None:
    marked = _conflicted(git_repo)
    done = _splice(git_repo, "resolve", "--explain", "f.py", lm=str(lm_dir))
    assert done.returncode == 1, done.stderr
    assert f"{WRITTEN}: '{WORD}'" in done.stdout
    assert git_repo.read("f.py") == marked
    assert done.stderr.count("\n") <= 1 and "unavailable" not in done.stderr


def test_a_calibrated_written_group_applies_the_written_answer(
    git_repo: GitRepo, lm_dir: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(default_model_dir(), model, ignore=shutil.ignore_patterns("lm"))
    calib = json.loads((model / "calibration.json").read_text())
    calib["decision"] = {"rule": "kind", "keeps_both": 0.0, "drops_side": 0.0, "groups": {}}
    calib["decision"]["groups"]["written"] = 0.0
    (model / "calibration.json").write_text(json.dumps(calib))
    _conflicted(git_repo)
    env_model = {"SPLICE_MODEL_DIR": str(model)}
    os.environ.update(env_model)
    try:
        done = _splice(git_repo, "resolve", "f.py", lm=str(lm_dir))
    finally:
        os.environ.pop("SPLICE_MODEL_DIR")
    assert done.returncode == 0, done.stdout + done.stderr
    assert git_repo.read("f.py") == b"x = 1\nreturn\nprint(y)\n"


@pytest.mark.parametrize("damage", ["missing", "corrupt", "no-weights"])
def test_a_missing_or_broken_lm_is_one_line_and_the_classifier_alone(
    git_repo: GitRepo, lm_dir: Path, tmp_path: Path, damage: str
) -> None:
    broken = tmp_path / "lm"
    if damage != "missing":
        shutil.copytree(lm_dir, broken)
        if damage == "corrupt":
            (broken / "model.onnx").write_bytes(b"not a model")
        else:
            (broken / RERANK_FILE).unlink()
    marked = _conflicted(git_repo)
    done = _splice(git_repo, "resolve", "--explain", "f.py", lm=str(broken))
    plain = _splice(git_repo, "resolve", "--explain", "f.py", lm="none")
    assert done.returncode == plain.returncode == 1
    assert done.stdout == plain.stdout and WRITTEN not in done.stdout
    (line,) = [x for x in done.stderr.splitlines() if x not in plain.stderr.splitlines()]
    assert line.startswith("splice: language model unavailable (") and "classifier alone" in line
    assert "unavailable" not in plain.stderr
    assert git_repo.read("f.py") == marked


def test_the_language_server_names_a_written_candidate_as_such() -> None:
    from splice.lsp.analysis import candidates
    from splice.resolver.chunks import Conflict
    from splice.resolver.resolvers import Resolution, Suggestion

    conflict = Conflict(("y = x\n",), ("y = x + 1\n",), ("y = x * 2\n",))
    written = Suggestion(("y = 3\n",), 0.4, WRITTEN, WRITTEN_SOURCE)
    ours = Suggestion(("y = x + 1\n",), 0.3, "as a whole: ours", "model")
    first, second = candidates(conflict, Resolution(written, (written, ours)), "python")
    assert (first.name, first.explanation) == (WRITTEN, WRITTEN)
    assert second.name != WRITTEN


DATA = ROOT.parent / "shared" / "data" / "merges"


def _real_records(n: int) -> list[dict]:
    """The first ``n`` validation records (shards by name) with 1-4 conflicts, LF line ends and
    under 400 lines, in a language with a grammar."""
    import lzma

    from splice.data.dataset import repo_of_shard, split_of

    out = []
    for shard in sorted(DATA.glob("*.jsonl.xz")):
        if split_of(repo_of_shard(shard)) != "val":
            continue
        with lzma.open(shard, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                texts = rec["base"] + rec["ours"] + rec["theirs"]
                wanted = rec["lang"] in ("python", "java", "go") and 1 <= rec["n_conflicts"] <= 4
                if wanted and "\r" not in texts and rec["ours"].count("\n") < 400:
                    out.append(rec)
                    break
        if len(out) == n:
            break
    return out


@pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not found at {DATA}")
def test_real_conflicts_through_the_driver_score_write_and_lose_nothing(
    git_repo: GitRepo, lm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real conflicts merged by git with the driver and the LM: it writes and scores on every
    hunk (its line is among each hunk's suggestions in ``--explain``), never applies its own
    text, and every hunk is either resolved or left with git's markers."""
    records = _real_records(3)
    assert len(records) == 3
    files = {}
    for i, rec in enumerate(records):
        ext = {"python": "py", "java": "java", "go": "go"}[rec["lang"]]
        files[f"f{i}.{ext}"] = (rec["base"], rec["ours"], rec["theirs"])
    git_repo.use_driver()
    git_repo.git("config", "merge.conflictStyle", "diff3")
    git_repo.conflict_branches(files)
    monkeypatch.setenv("SPLICE_LM_DIR", str(lm_dir))
    proc = git_repo.merge()
    assert "unavailable" not in proc.stderr and "Traceback" not in proc.stderr
    for name, (_, ours, theirs) in files.items():
        merged = git_repo.read(name).decode()
        assert ("\nreturn\n" in merged) == ("\nreturn\n" in ours + theirs)
        if "<<<<<<< " not in merged:
            continue
        done = _splice(git_repo, "resolve", "--explain", "--dry-run", name, lm=str(lm_dir))
        explained = done.stdout
        blocks = explained.split("kept markers")[1:]
        assert len(blocks) == merged.count("<<<<<<< ") >= 1
        assert all(f"{WRITTEN}: '{WORD}'" in block for block in blocks), explained


def test_whole_files_are_read_through_a_compressed_cache(lm_dir: Path, tmp_path: Path) -> None:
    """With ``press`` in ``rerank.json`` the prompt takes the file up to the model's positions,
    its text before the conflict held at ``cache_budget`` entries, positions true; a short file
    gives the window's scores."""
    from dataclasses import asdict

    folder = tmp_path / "lm"
    shutil.copytree(lm_dir, folder)
    fitted = asdict(LMRerank.load(folder))  # type: ignore[arg-type]
    LMRerank(**{**fitted, "press": "streaming_llm", "cache_budget": 32}).save(folder)
    whole, window = LMScorer.load(folder), LMScorer.load(lm_dir)
    head = "".join(f"value_{i} = {i}\n" for i in range(300))
    texts = [(head + s).splitlines(keepends=True) for s in (BASE, OURS, THEIRS)]
    hunks = [r.hunk for r in find_hunks(*texts, "python", "f.py")[1]]
    wide, narrow = whole.prompts(hunks, [8])[0], window.prompts(hunks, [8])[0]
    assert len(narrow.ids) <= 256 < len(wide.ids) <= 512 - 9
    cache = whole.cache([wide])
    assert cache is not None and window.cache([narrow]) is None
    assert cache.length <= 32 + wide.tail and int(cache.next_position[0]) == len(wide.ids)
    candidates = [(WORD + "\n",), ("y = x + 1\n",)]
    scores, _ = whole.score(hunks, [candidates])
    assert np.isfinite(scores[0]).all() and scores[0][0] > scores[0][1]
    assert whole.write(hunks)[0][0][0] == (WORD + "\n",)
    short = _hunks()
    assert whole.prompts(short, [8])[0].ids == window.prompts(short, [8])[0].ids
    a, b = whole.score(short, [candidates])[0], window.score(short, [candidates])[0]
    assert np.allclose(a[0], b[0], rtol=1e-2, atol=1e-3)  # read in two parts, not one
    with pytest.raises(ValueError, match="not one of"):
        LMRerank.from_json({**LMRerank.load(folder).to_json(), "press": "nope"})  # type: ignore[union-attr]


def test_the_cache_method_is_the_users_choice(
    lm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SPLICE_LM_PRESS / SPLICE_LM_CACHE_BUDGET override rerank.json; methods that read queries
    run on the graph's queries; a bad value is one LMUnavailable line (the classifier alone)."""
    from splice.models.serving.lm import LMUnavailable

    head = "".join(f"value_{i} = {i}\n" for i in range(300))
    texts = [(head + s).splitlines(keepends=True) for s in (BASE, OURS, THEIRS)]
    hunks = [r.hunk for r in find_hunks(*texts, "python", "f.py")[1]]
    candidates = [(WORD + "\n",), ("y = x + 1\n",)]
    monkeypatch.setenv("SPLICE_LM_PRESS", "snapkv")
    monkeypatch.setenv("SPLICE_LM_CACHE_BUDGET", "24")
    scorer = LMScorer.load(lm_dir)
    assert (scorer.rerank.press, scorer.rerank.cache_budget) == ("snapkv", 24)
    wide = scorer.prompts(hunks, [8])[0]
    cache = scorer.cache([wide])
    assert cache is not None and cache.length <= 24 + wide.tail
    scores, _ = scorer.score(hunks, [candidates])
    assert np.isfinite(scores[0]).all() and scores[0][0] > scores[0][1]
    monkeypatch.setenv("SPLICE_LM_PRESS", "none")
    assert LMScorer.load(lm_dir).rerank.press is None
    for press, budget in (("nope", "24"), ("h2o", "8"), ("h2o", "many")):
        monkeypatch.setenv("SPLICE_LM_PRESS", press)
        monkeypatch.setenv("SPLICE_LM_CACHE_BUDGET", budget)
        with pytest.raises(LMUnavailable):
            LMScorer.load(lm_dir)
