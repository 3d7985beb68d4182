"""The file-context reranker: its features on real merges, its scores and its fit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from splice.models.serving.rerank import (
    FEATURES,
    candidate_features,
    file_votes,
    fit,
    rerank_scores,
)
from splice.resolver.chunks import split_lines
from splice.resolver.pipeline import find_hunks

BASE = """def load(path):
    data = read_file(path)
    return data


def save(path, data):
    write_file(path, data)


def helper():
    return read_file("x")
"""
# theirs renames read_file -> read_text everywhere (the hunk included); ours edits the hunk
THEIRS = BASE.replace("read_file", "read_text")
OURS = BASE.replace("    data = read_file(path)\n", "    data = read_file(path, cache=True)\n")


@dataclass
class Cand:
    lines: tuple[str, ...]
    token_p: float = 0.0
    hunk_p: float = 0.5
    clean: bool = False
    score: float = 0.5


def _hunks(base: str = BASE, ours: str = OURS, theirs: str = THEIRS):
    _, reports = find_hunks(split_lines(base), split_lines(ours), split_lines(theirs), "python")
    return [r.hunk for r in reports]


def _col(name: str) -> int:
    return FEATURES.index(name)


def test_hunks_of_a_file_share_its_context() -> None:
    two = BASE + "\n\ndef last():\n    return 1\n"
    hunks = _hunks(two, OURS + "\n\ndef last():\n    return 2\n", THEIRS + "\n\ndef last():\n")
    assert len(hunks) == 2 and hunks[0].file is hunks[1].file is not None
    ours_changed, theirs_changed = hunks[0].file.changed_lines
    assert ours_changed == 4  # the edited line (1 + 1) and the changed return (1 + 1)
    assert theirs_changed == 2 + 2 + 1  # two renamed lines and the deleted return
    assert "read_text" in hunks[0].file.rest_names  # the clean part took the rename
    assert "read_file" not in hunks[0].file.rest_names


def test_a_candidate_keeping_a_renamed_name_is_flagged() -> None:
    (hunk,) = _hunks()
    c = hunk.conflict
    cands = [Cand(c.ours), Cand(c.theirs)]
    x = candidate_features(hunk, cands)
    assert x.shape == (2, len(FEATURES))
    assert x[0, _col("is_ours")] == 1 and x[1, _col("is_theirs")] == 1
    # ours still calls read_file, which theirs removed from the whole file
    assert x[0, _col("keeps_name_a_side_removed")] == 1
    assert x[1, _col("keeps_name_a_side_removed")] == 0
    # theirs' new name read_text is what the rest of the file uses
    assert x[1, _col("new_names_used_in_rest")] > 0
    assert x[0, _col("new_names_used_in_rest")] == 0


def test_features_without_a_file_are_defined() -> None:
    from dataclasses import replace

    (hunk,) = _hunks()
    alone = replace(hunk, file=None)
    x = candidate_features(alone, [Cand(hunk.conflict.ours), Cand(())])
    assert np.isfinite(x).all()
    assert x[1, _col("is_empty")] == 1
    assert x[0, _col("ours_x_change_ratio")] == 0


def test_file_votes_average_the_other_hunks() -> None:
    hunks = _hunks(
        BASE + "\n\ndef last():\n    return 1\n",
        OURS + "\n\ndef last():\n    return 2\n",
        THEIRS + "\n\ndef last():\n    return 3\n",
    )
    assert len(hunks) == 2
    ranked = []
    for h, (po, pt) in zip(hunks, ((0.9, 0.1), (0.2, 0.7)), strict=True):
        ranked.append([Cand(h.conflict.ours, score=po), Cand(h.conflict.theirs, score=pt)])
    votes = file_votes(hunks, ranked)
    assert votes == pytest.approx([0.2 - 0.7, 0.9 - 0.1])
    from dataclasses import replace

    alone = [replace(hunks[0], file=None)]
    assert file_votes(alone, ranked[:1]) == [0.0]


def test_zero_weights_give_the_mixture_back() -> None:
    mix = np.array([0.5, 0.3, 0.1])
    out = rerank_scores(
        mix, np.random.default_rng(0).normal(size=(3, len(FEATURES))), np.zeros(len(FEATURES))
    )
    assert out == pytest.approx(mix / mix.sum())
    assert (
        rerank_scores(np.zeros(0), np.zeros((0, len(FEATURES))), np.zeros(len(FEATURES))).size == 0
    )


def test_fit_learns_a_rule_the_mixture_misses() -> None:
    """The right candidate is the one with feature k set; the mixture prefers another."""
    rng = np.random.default_rng(1)
    k = _col("covers_theirs_added_lines")
    mixtures, feats, right = [], [], []
    for _ in range(400):
        n = int(rng.integers(2, 5))
        x = rng.normal(size=(n, len(FEATURES)))
        x[:, k] = 0.0
        good = int(rng.integers(n))
        x[good, k] = 1.0
        mix = rng.dirichlet(np.ones(n))
        mix[good] = mix.min() / 2
        mixtures.append(mix / mix.sum())
        feats.append(x)
        right.append(np.arange(n) == good)
    mixtures.append(np.array([0.5, 0.5]))  # a hunk with no right candidate is ignored
    feats.append(np.zeros((2, len(FEATURES))))
    right.append(np.zeros(2, bool))
    w = fit(mixtures[:300], feats[:300], right[:300])
    assert int(np.argmax(w)) == k
    hits = [
        bool(r[np.argmax(rerank_scores(m, x, w))])
        for m, x, r in zip(mixtures[300:400], feats[300:400], right[300:400], strict=True)
    ]
    before = [bool(r[np.argmax(m)]) for m, r in zip(mixtures[300:400], right[300:400], strict=True)]
    assert np.mean(before) == 0.0 and np.mean(hits) > 0.95


def test_platt_keeps_the_order_or_falls_back_to_the_scores() -> None:
    from splice.models.training.hunk_calibration import fit_platt

    score = np.array([0.9, 0.8, 0.3, 0.2, 0.6, 0.4])
    a, b = fit_platt(score, np.array([1, 1, 0, 0, 1, 0], bool) ^ np.array([0, 0, 0, 0, 1, 1], bool))
    assert a > 0
    # right exactly when the score is low: a map keeping the order cannot fit it
    assert fit_platt(score, score < 0.5) == (1.0, 0.0)
