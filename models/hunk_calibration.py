"""Calibrate the resolver on real validation hunks: route weights, threshold, hunk-level ECE.

:mod:`splice.models.calibrate` fits the temperature on labelled pieces. What the driver applies,
though, is a hunk's best candidate under the two-route mixture of
:mod:`splice.models.onnx_resolver`, and it is asked about every conflict hunk, expressible or not.
This module measures exactly that, on the hunks ``splice eval`` counts (every located hunk of the
validation repositories):

1. :func:`collect` runs the resolver's candidate ranking on each hunk and keeps, per candidate,
   its token-route and hunk-route probabilities, whether it is the clean token merge, and whether
   it equals the human resolution (whitespace ignored, as in ``splice eval``).
2. :func:`fit` picks ``token_weight`` (hunks with token conflicts) and ``clean_weight`` (hunks
   whose token merge is clean) on a grid, for the best top-1 accuracy (ties: lower log loss),
   then maps the top candidate's score to a probability of being right by Platt scaling
   (``sigmoid(a * logit(score) + b)``, fitted by log loss on the hunks), and picks the lowest
   calibrated confidence at which the answered hunks are at least 95% right. It reports top-1 /
   top-3, coverage and precision at the threshold, and the hunk-level expected calibration error
   before (raw mixture scores, default weights) and after (fitted weights and Platt map).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Weights tried for each route mixture.
WEIGHT_GRID = np.round(np.linspace(0.0, 1.0, 21), 2)
TARGET_PRECISION = 0.95


@dataclass
class HunkCandidates:
    """One located hunk: its candidates' route probabilities and which one is right."""

    lang: str
    repo: str
    token_p: np.ndarray
    hunk_p: np.ndarray
    clean: bool
    has_token: bool
    right: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: The token-merge policy's answer: its confidence (0: none) and whether it is right.
    policy_conf: float = 0.0
    policy_right: bool = False


def collect(records: Iterable[dict[str, Any]], resolver: Any) -> list[HunkCandidates]:
    """Candidates of every located conflict hunk of ``records`` (see module doc), with the
    token-merge policy's answer for the ``auto`` combination."""
    from splice.resolver.chunks import split_lines
    from splice.resolver.pipeline import find_hunks
    from splice.resolver.policy import SafeTokenMerge

    from splice.evaluation import locate_resolutions, normalize

    policy = SafeTokenMerge()
    out: list[HunkCandidates] = []
    for record in records:
        lang = record.get("lang") or "unknown"
        b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
        try:
            chunks, reports = find_hunks(b, o, t, lang, record.get("path"))
            truths = locate_resolutions(chunks, split_lines(record["merged"]))
            located = [
                (r.hunk, tr) for r, tr in zip(reports, truths, strict=True) if tr is not None
            ]
            ranked = resolver.candidates_many([h for h, _ in located]) if located else []
        except RecursionError:  # pathological input: skipped, as splice eval does
            continue
        for (hunk, truth), cands in zip(located, ranked, strict=True):
            key = normalize("".join(truth))
            answer = policy.resolve(hunk).chosen
            out.append(
                HunkCandidates(
                    lang=lang,
                    repo=record.get("repo", ""),
                    token_p=np.array([c.token_p for c in cands]),
                    hunk_p=np.array([c.hunk_p for c in cands]),
                    clean=any(c.clean for c in cands),
                    has_token=any(c.token_p > 0 and not c.clean for c in cands),
                    right=np.array([normalize("".join(c.lines)) == key for c in cands]),
                    policy_conf=answer.confidence if answer else 0.0,
                    policy_right=bool(answer) and normalize("".join(answer.lines)) == key,
                )
            )
    return out


def scores(h: HunkCandidates, token_weight: float, clean_weight: float) -> np.ndarray:
    """The mixture score of each candidate of ``h`` under the given weights."""
    w = token_weight if h.has_token else clean_weight if h.clean else 0.0
    return w * h.token_p + (1.0 - w) * h.hunk_p


def outcomes(
    hunks: Sequence[HunkCandidates], token_weight: float, clean_weight: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hunk: confidence of the top candidate, whether it is right, rank of the right one
    (0: not among the candidates)."""
    conf = np.zeros(len(hunks))
    right = np.zeros(len(hunks), bool)
    rank = np.zeros(len(hunks), int)
    for i, h in enumerate(hunks):
        if len(h.right) == 0:
            continue
        s = scores(h, token_weight, clean_weight)
        order = np.argsort(-s, kind="stable")
        conf[i] = min(1.0, float(s[order[0]]))
        right[i] = bool(h.right[order[0]])
        hits = np.flatnonzero(h.right[order])
        rank[i] = int(hits[0]) + 1 if len(hits) else 0
    return conf, right, rank


def log_loss(hunks: Sequence[HunkCandidates], token_weight: float, clean_weight: float) -> float:
    """Mean ``-log`` of the score of the right candidate (floored at 1e-6; 0 when none is)."""
    total = 0.0
    for h in hunks:
        s = scores(h, token_weight, clean_weight)
        total -= np.log(max(float(s[h.right].sum()) if h.right.any() else 0.0, 1e-6))
    return total / max(len(hunks), 1)


def platt(score: np.ndarray, a: float, b: float) -> np.ndarray:
    """``sigmoid(a * logit(score) + b)``, scores clipped to [1e-6, 1 - 1e-6]."""
    p = np.clip(np.asarray(score, dtype=np.float64), 1e-6, 1 - 1e-6)
    return 1.0 / (1.0 + np.exp(-(a * np.log(p / (1 - p)) + b)))


def fit_platt(score: np.ndarray, right: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """(a, b) minimising the log loss of :func:`platt` on (score, right), by Newton's method."""
    p = np.clip(np.asarray(score, dtype=np.float64), 1e-6, 1 - 1e-6)
    x = np.log(p / (1 - p))
    y = np.asarray(right, dtype=np.float64)
    a, b = 1.0, 0.0
    for _ in range(iters):
        q = 1.0 / (1.0 + np.exp(-(a * x + b)))
        g = np.array([np.sum((q - y) * x), np.sum(q - y)])
        w = q * (1 - q) + 1e-9
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h + 1e-6 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    return float(a), float(b)


def fit(hunks: Sequence[HunkCandidates], target: float = TARGET_PRECISION) -> dict[str, Any]:
    """Route weights, threshold and the report of the module doc."""
    from splice.models.calibrate import ece, select_threshold

    tok = [h for h in hunks if h.has_token]
    cln = [h for h in hunks if h.clean and not h.has_token]

    def best_weight(group: Sequence[HunkCandidates], token: bool) -> float:
        if not group:
            return 0.5
        best = (-1.0, 0.0, 0.5)
        for w in WEIGHT_GRID:
            args = (w, 0.5) if token else (0.5, w)
            acc = float(outcomes(group, *args)[1].mean())
            key = (acc, -log_loss(group, *args), float(w))
            if key[:2] > best[:2]:
                best = key
        return best[2]

    wt, wc = best_weight(tok, True), best_weight(cln, False)
    conf0, right0, _ = outcomes(hunks, 0.5, 0.5)
    raw, right, rank = outcomes(hunks, wt, wc)
    a, b = fit_platt(raw, right) if len(hunks) else (1.0, 0.0)
    conf = platt(raw, a, b)
    thr, prec, cov, n_at = select_threshold(conf, right, target)
    # auto: the more confident of the policy's answer and the model's top candidate
    pconf = np.array([h.policy_conf for h in hunks])
    pright = np.array([h.policy_right for h in hunks])
    use_policy = pconf >= conf
    auto_conf = np.where(use_policy, pconf, conf)
    auto_right = np.where(use_policy, pright, right)
    a_thr, a_prec, a_cov, a_n = select_threshold(auto_conf, auto_right, target)
    langs = sorted({h.lang for h in hunks})
    per_lang = {}
    for lang in langs:
        mine = np.array([h.lang == lang for h in hunks])
        at = mine & (conf >= thr)
        per_lang[lang] = {
            "hunks": int(mine.sum()),
            "top1": float(right[mine].mean()),
            "top3": float(((rank > 0) & (rank <= 3))[mine].mean()),
            "coverage": float(at.sum() / mine.sum()),
            "precision": float(right[at].mean()) if at.any() else 0.0,
        }
    return {
        "token_weight": float(wt),
        "clean_weight": float(wc),
        "platt_a": a,
        "platt_b": b,
        "threshold": float(thr),
        "target_precision": target,
        "hunk_precision_at_threshold": prec,
        "hunk_coverage": cov,
        "hunks_at_threshold": n_at,
        "n_hunks": len(hunks),
        "hunk_top1": float(right.mean()) if len(hunks) else 0.0,
        "hunk_top3": float(((rank > 0) & (rank <= 3)).mean()) if len(hunks) else 0.0,
        "hunk_top1_default_weights": float(right0.mean()) if len(hunks) else 0.0,
        "hunk_ece_before": ece(conf0, right0),
        "hunk_ece_after": ece(conf, right),
        "auto_threshold": float(a_thr),
        "auto_precision_at_threshold": a_prec,
        "auto_coverage": a_cov,
        "auto_top1": float(auto_right.mean()) if len(hunks) else 0.0,
        "policy_coverage_085": float((pconf >= 0.85).mean()) if len(hunks) else 0.0,
        "policy_precision_085": float(pright[pconf >= 0.85].mean())
        if (pconf >= 0.85).any()
        else 0.0,
        "per_language": per_lang,
    }
