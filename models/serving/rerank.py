"""Rerank a hunk's candidates with what the classifier cannot see: the rest of the file.

The classifier reads a hunk with 128 subwords of context. Whether the developers kept ours or
theirs often shows elsewhere: a name one side introduced is used further down, a name one side
renamed is gone from the rest of the file, one side rewrote much more of the file, or the other
hunks of the same file lean to one side. Each candidate gets :data:`FEATURES` and its final score
is a conditional logit over the hunk's candidates::

    score_i = softmax_i( log(mixture_i) + features_i . weights )

with the classifier's mixture probability as a fixed offset, so zero weights give the classifier's
ranking back. The weights are fitted on hunks of the training repositories (:func:`fit`) and ship
in ``calibration.json`` (``rerank``); the Platt map and thresholds are fitted afterwards on the
reranked scores. Plain numpy: nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from splice.resolver.chunks import text_key as normalize
from splice.resolver.filecontext import FileContext, names
from splice.resolver.resolvers import Hunk

#: One feature per name, in this order (``calibration.json: rerank.features`` must match).
FEATURES = (
    "log_token_route",  # log P_token (0 unless the hunk has token conflicts)
    "log_hunk_route",  # log P_hunk
    "clean_token_merge",  # the candidate is the hunk's clean token merge
    "is_ours",
    "is_theirs",
    "is_base",
    "is_empty",
    "new_names_used_in_rest",  # share of its names not in base that the rest of the file uses
    "drops_side_names_used_in_rest",  # share of dropped side-added names the rest uses
    "keeps_names_gone_from_file",  # share of its names that left the file outside this hunk
    "new_names_used_nearby",  # as above, in the 64 lines around the hunk
    "dropped_names_used_nearby",
    "ours_x_change_ratio",  # is_ours * log((ours' changed lines + 1) / (theirs' + 1))
    "theirs_x_change_ratio",
    "names_in_neither_side",  # holds a name that neither side's file has
    "as_long_as_longer_side",
    "longer_than_both_sides",
    "keeps_name_a_side_removed",  # holds a base name that one side removed from its whole file
    "covers_ours_added_lines",  # share of the lines ours added here that it contains
    "covers_theirs_added_lines",
    "keeps_deleted_base_lines",  # share of the base lines a side deleted that it still holds
    "ours_x_ours_longer",
    "theirs_x_theirs_longer",
    "ours_x_no_base",  # is_ours where base had no lines here (both sides inserted)
    "theirs_x_no_base",
    "ours_x_file_vote",  # is_ours * mean over the file's other hunks of score(ours) - score(theirs)
    "theirs_x_file_vote",
)

_EMPTY = frozenset[str]()


def _key(lines: Sequence[str]) -> str:
    """The comparison key of ``splice eval`` (whitespace ignored)."""
    return normalize("".join(lines))


def _share(part: int, whole: int) -> float:
    return part / (whole + 1)


def _cover(lines: Sequence[str], wanted: set[str]) -> float:
    if not wanted:
        return 0.0
    have = set(lines)
    return sum(x in have for x in wanted) / len(wanted)


def side_scores(hunk: Hunk, cands: Sequence[Any]) -> tuple[float, float]:
    """The mixture scores of the candidates equal to ours and to theirs (0 when absent)."""
    ko, kt = _key(hunk.conflict.ours), _key(hunk.conflict.theirs)
    so = st = 0.0
    for c in cands:
        k = _key(c.lines)
        if k == ko:
            so = max(so, c.score)
        if k == kt:
            st = max(st, c.score)
    return so, st


def file_votes(hunks: Sequence[Hunk], ranked: Sequence[Sequence[Any]]) -> list[float]:
    """Per hunk: the mean over the other hunks of the same file (same :class:`FileContext`)
    of ``score(ours) - score(theirs)``; 0 for a hunk alone in its file."""
    diffs = [a - b for a, b in (side_scores(h, c) for h, c in zip(hunks, ranked, strict=True))]
    groups: dict[int, list[int]] = {}
    for i, h in enumerate(hunks):
        if h.file is not None:
            groups.setdefault(id(h.file), []).append(i)
    votes = [0.0] * len(hunks)
    for idx in groups.values():
        if len(idx) > 1:
            total = sum(diffs[i] for i in idx)
            for i in idx:
                votes[i] = (total - diffs[i]) / (len(idx) - 1)
    return votes


def candidate_features(hunk: Hunk, cands: Sequence[Any], vote: float = 0.0) -> np.ndarray:
    """(len(cands), len(FEATURES)) features of ``cands`` (objects with ``lines``, ``token_p``,
    ``hunk_p``, ``clean``) for ``hunk``; file features are 0 when the hunk has no file."""
    c = hunk.conflict
    f: FileContext | None = hunk.file
    has_token = any(x.token_p > 0 and not x.clean for x in cands)
    keys = [_key(s) for s in (c.ours, c.theirs, c.base)]
    n_ours, n_base, n_theirs = names(c.ours), names(c.base), names(c.theirs)
    side_new = (n_ours - n_base) | (n_theirs - n_base)
    near = names(hunk.before) | names(hunk.after)
    if f is not None:
        rest, base_all = f.rest_names, f.base_names
        ours_all, theirs_all = f.ours_names, f.theirs_names
        oc, tc = f.changed_lines
        ratio = float(np.log((oc + 1) / (tc + 1)))
        removed = (base_all - ours_all) | (base_all - theirs_all)
    else:
        rest = base_all = _EMPTY
        ours_all, theirs_all = n_ours, n_theirs
        ratio, removed = 0.0, _EMPTY
    gone = base_all - rest - near
    longest = max(len(c.ours), len(c.theirs))
    ours_added = set(c.ours) - set(c.base)
    theirs_added = set(c.theirs) - set(c.base)
    deleted = (set(c.base) - set(c.ours)) | (set(c.base) - set(c.theirs))
    rows = []
    for x in cands:
        k = _key(x.lines)
        is_o, is_t, is_b = float(k == keys[0]), float(k == keys[1]), float(k == keys[2])
        mine = names(x.lines)
        dropped = (n_ours | n_theirs | n_base) - mine
        new = mine - n_base
        rows.append(
            [
                float(np.log(max(x.token_p, 1e-6))) if has_token else 0.0,
                float(np.log(max(x.hunk_p, 1e-6))),
                float(x.clean and not has_token),
                is_o,
                is_t,
                is_b,
                float(not k),
                _share(len(new & rest), len(new)),
                _share(len(dropped & side_new & rest), len(dropped & side_new)),
                _share(len(mine & gone), len(mine)),
                _share(len(new & near), len(new)),
                _share(len(dropped & near), len(dropped)),
                is_o * ratio,
                is_t * ratio,
                float(bool(mine - ours_all - theirs_all)),
                float(len(x.lines) == longest),
                float(len(x.lines) > longest),
                float(bool(mine & removed)),
                _cover(x.lines, ours_added),
                _cover(x.lines, theirs_added),
                _cover(x.lines, deleted),
                is_o * (len(c.ours) >= len(c.theirs)),
                is_t * (len(c.theirs) >= len(c.ours)),
                is_o * (not c.base),
                is_t * (not c.base),
                is_o * vote,
                is_t * vote,
            ]
        )
    return np.array(rows, dtype=np.float64).reshape(len(cands), len(FEATURES))


def features_many(hunks: Sequence[Hunk], ranked: Sequence[Sequence[Any]]) -> list[np.ndarray]:
    """:func:`candidate_features` of every hunk, with the file votes among ``hunks``."""
    votes = file_votes(hunks, ranked)
    return [candidate_features(h, c, v) for h, c, v in zip(hunks, ranked, votes, strict=True)]


def rerank_scores(mixture: np.ndarray, features: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The reranked probabilities of a hunk's candidates (module doc)."""
    if len(mixture) == 0:
        return np.zeros(0)
    z = np.log(np.clip(np.asarray(mixture, dtype=np.float64), 1e-6, 1.0)) + features @ weights
    z = np.exp(z - z.max())
    return z / z.sum()


def fit(
    mixtures: Sequence[np.ndarray],
    features: Sequence[np.ndarray],
    right: Sequence[np.ndarray],
    l2: float = 1e-3,
    steps: int = 300,
    lr: float = 0.05,
) -> np.ndarray:
    """Weights maximising the log probability of the right candidates (any of them) under
    :func:`rerank_scores`, with an L2 penalty on standardised features; hunks with no right
    candidate carry no signal and are skipped. Full-batch Adam, deterministic."""
    keep = [i for i, r in enumerate(right) if np.asarray(r).any()]
    if not keep:
        return np.zeros(len(FEATURES))
    n = max(len(right[i]) for i in keep)
    d = features[keep[0]].shape[1]
    x = np.zeros((len(keep), n, d))
    off = np.zeros((len(keep), n))
    mask = np.zeros((len(keep), n), bool)
    y = np.zeros((len(keep), n), bool)
    for j, i in enumerate(keep):
        m = len(right[i])
        x[j, :m], mask[j, :m], y[j, :m] = features[i], True, right[i]
        off[j, :m] = np.log(np.clip(mixtures[i], 1e-6, 1.0))
    mu, sd = x[mask].mean(0), x[mask].std(0) + 1e-9
    z = (x - mu) / sd
    w, m1, m2 = np.zeros(d), np.zeros(d), np.zeros(d)
    for step in range(1, steps + 1):
        s = np.where(mask, z @ w + off, -1e9)
        p = np.exp(s - s.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        q = p * y / (p * y).sum(1, keepdims=True)  # the posterior over the right candidates
        g = ((q - p)[..., None] * z).sum((0, 1)) / len(z) - l2 * w
        m1 = 0.9 * m1 + 0.1 * g
        m2 = 0.999 * m2 + 0.001 * g * g
        w += lr * (m1 / (1 - 0.9**step)) / (np.sqrt(m2 / (1 - 0.999**step)) + 1e-8)
    # back to raw features: the shift by mu is the same for every candidate of a hunk, so it
    # cancels in the softmax
    return w / sd
