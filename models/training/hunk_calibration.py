"""Calibrate the resolver on real hunks: route weights, threshold, hunk-level ECE.

:mod:`splice.models.training.calibrate` fits the temperature on labelled pieces. What the driver
applies,
though, is a hunk's best candidate under the two-route mixture of
:mod:`splice.models.serving.neural`, and it is asked about every conflict hunk, expressible or not.
This module measures exactly that, on the hunks ``splice eval`` counts (every located hunk):

1. :func:`collect` runs the resolver's candidate ranking on each hunk and keeps, per candidate,
   its token-route and hunk-route probabilities, whether it is the clean token merge, which side
   it equals, and whether it equals the human resolution (whitespace ignored, as in
   ``splice eval``).
2. :func:`fit_weights` picks ``token_weight`` (hunks with token conflicts) and ``clean_weight``
   (hunks whose token merge is clean) on a grid, for the best top-1 accuracy (ties: lower log
   loss). They are fitted on hunks of the *training* repositories: fitted on validation hunks
   they follow whichever validation repository is largest (one repository whose clean token
   merges are almost always wrong moved held-out top-1 by 10 points).
3. :func:`fit` then maps the top candidate's score to a probability of being right by Platt
   scaling (``sigmoid(a * logit(score) + b)``, fitted by log loss), and picks the lowest
   calibrated confidence at which the answered hunks are at least 95% right. It reports top-1 /
   top-3, coverage and precision at the threshold, and the hunk-level expected calibration error
   before (raw mixture scores) and after the Platt map.
4. :func:`cross_fit` gives the same numbers out of sample: validation repositories in ``k``
   groups, each scored with the Platt map and thresholds fitted on the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

#: Rerank weights (:data:`splice.models.serving.rerank.FEATURES` order) or None for the mixture
#: alone.
Rerank = np.ndarray | Sequence[float] | None

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
    #: The record's merge date (ISO 8601) and id, for time-ordered splits within a repository.
    date: str = ""
    record_id: str = ""
    #: Per candidate, which side it equals (whitespace ignored): bit 1 ours, 2 theirs, 4 base.
    sides: np.ndarray | None = None
    #: Index of the policy's answer among the candidates (-1: no answer, or not a candidate).
    policy_index: int = -1
    #: Per candidate, :data:`splice.models.serving.rerank.FEATURES` (None: not collected).
    features: np.ndarray | None = None

    _ARRAYS: ClassVar[dict[str, Any]] = {
        "token_p": float,
        "hunk_p": float,
        "right": bool,
        "sides": np.int8,
    }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (floats keep their exact value); :meth:`from_json` reads it."""
        out: dict[str, Any] = {}
        for name in (f.name for f in fields(self)):
            value = getattr(self, name)
            out[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> HunkCandidates:
        """The row :meth:`to_json` wrote."""
        kw = dict(d)
        for name, dtype in cls._ARRAYS.items():
            if kw.get(name) is not None:
                kw[name] = np.array(kw[name], dtype=dtype)
        if kw.get("features") is not None:
            n = len(kw["right"])
            kw["features"] = np.array(kw["features"], dtype=np.float64).reshape(n, -1)
        return cls(**kw)


def save_rows(hunks: Sequence[HunkCandidates], path: str | Path) -> None:
    """Write ``hunks`` as gzipped JSON lines (``splice calibrate --save-rows``)."""
    import gzip
    import json

    with gzip.open(path, "wt", encoding="utf-8") as f:
        for h in hunks:
            f.write(json.dumps(h.to_json()) + "\n")


def load_rows(path: str | Path) -> list[HunkCandidates]:
    """The rows :func:`save_rows` wrote."""
    import gzip
    import json

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [HunkCandidates.from_json(json.loads(line)) for line in f if line.strip()]


def collect(records: Iterable[dict[str, Any]], resolver: Any) -> list[HunkCandidates]:
    """Candidates of every located conflict hunk of ``records`` (see module doc), with the
    token-merge policy's answer for the ``auto`` combination."""
    from splice.models.serving.rerank import features_many
    from splice.resolver.chunks import split_lines
    from splice.resolver.pipeline import find_hunks
    from splice.resolver.policy import SafeTokenMerge

    from splice.data.evaluation import locate_resolutions, normalize

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
            hunks = [h for h, _ in located]
            ranked = resolver.candidates_many(hunks, rerank=False) if located else []
            feats = features_many(hunks, ranked)
        except RecursionError:  # pathological input: skipped, as splice eval does
            continue
        for (hunk, truth), cands, features in zip(located, ranked, feats, strict=True):
            key = normalize("".join(truth))
            answer = policy.resolve(hunk).chosen
            side_keys = [normalize("".join(x)) for x in (hunk.conflict.ours, hunk.conflict.theirs)]
            side_keys.append(normalize("".join(hunk.conflict.base)))
            texts = [normalize("".join(c.lines)) for c in cands]
            policy_key = normalize("".join(answer.lines)) if answer else None
            out.append(
                HunkCandidates(
                    lang=lang,
                    repo=record.get("repo", ""),
                    token_p=np.array([c.token_p for c in cands]),
                    hunk_p=np.array([c.hunk_p for c in cands]),
                    clean=any(c.clean for c in cands),
                    has_token=any(c.token_p > 0 and not c.clean for c in cands),
                    right=np.array([t == key for t in texts]),
                    policy_conf=answer.confidence if answer else 0.0,
                    policy_right=policy_key == key,
                    date=record.get("date", ""),
                    record_id=record.get("id", ""),
                    sides=np.array([_side_bits(t, side_keys) for t in texts], dtype=np.int8),
                    policy_index=texts.index(policy_key) if policy_key in texts else -1,
                    features=features,
                )
            )
    return out


_WORKER: Any = None


def _init_worker(model_dir: str, calibration: dict[str, Any]) -> None:
    global _WORKER
    from splice.models.serving.neural import Calibration, NeuralResolver

    _WORKER = NeuralResolver(model_dir)
    _WORKER.calibration = Calibration.from_json(calibration)


def _collect_one(record: dict[str, Any]) -> list[HunkCandidates]:
    return collect([record], _WORKER)


def collect_parallel(
    records: Iterable[dict[str, Any]],
    model_dir: str,
    calibration: dict[str, Any],
    workers: int,
) -> list[HunkCandidates]:
    """:func:`collect` with ``workers`` processes, each loading the model in ``model_dir`` with
    ``calibration`` (parsed ``calibration.json``); same rows in the same order."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn")  # no fork of a live onnxruntime session
    out: list[HunkCandidates] = []
    with ctx.Pool(workers, initializer=_init_worker, initargs=(model_dir, calibration)) as pool:
        for rows in pool.imap(_collect_one, records, chunksize=4):
            out.extend(rows)
    return out


def _side_bits(text: str, side_keys: Sequence[str]) -> int:
    """Bit 1: ``text`` is ours, 2: theirs, 4: base (keys in that order)."""
    return sum(1 << i for i, key in enumerate(side_keys) if text == key)


def scores(
    h: HunkCandidates, token_weight: float, clean_weight: float, rerank: Rerank = None
) -> np.ndarray:
    """The mixture score of each candidate of ``h`` under the given weights, reranked with
    the ``rerank`` weights when given (:mod:`splice.models.serving.rerank`)."""
    w = token_weight if h.has_token else clean_weight if h.clean else 0.0
    return _reranked(h, w * h.token_p + (1.0 - w) * h.hunk_p, rerank)


def _reranked(h: HunkCandidates, mix: np.ndarray, rerank: Rerank) -> np.ndarray:
    """``mix`` reranked with the ``rerank`` weights, or ``mix`` itself without them."""
    if rerank is None or h.features is None:
        return mix
    from splice.models.serving.rerank import rerank_scores

    return rerank_scores(mix, h.features, np.asarray(rerank))


def fit_rerank(
    hunks: Sequence[HunkCandidates],
    weights: tuple[float, float],
    base: Rerank = None,
    l2: float = 1e-3,
) -> np.ndarray:
    """Rerank weights fitted on ``hunks`` (their mixtures under ``weights`` as the offset).
    With ``base`` rerank weights the offset is the reranked score and the result a correction
    to ``base``, L2-shrunk to zero by ``l2``: score with ``base + correction``."""
    from splice.models.serving import rerank

    usable = [h for h in hunks if h.features is not None and len(h.right)]
    return rerank.fit(
        [scores(h, *weights, base) for h in usable],
        [h.features for h in usable],  # type: ignore[misc]
        [h.right for h in usable],
        l2=l2,
    )


def outcomes(
    hunks: Sequence[HunkCandidates],
    token_weight: float,
    clean_weight: float,
    rerank: Rerank = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per hunk: raw confidence of the top candidate (its score; after reranking the lower of
    its reranked and its mixture score, as ``Candidate.sure``), whether it is right, rank of the
    right one (0: not among the candidates)."""
    conf = np.zeros(len(hunks))
    right = np.zeros(len(hunks), bool)
    rank = np.zeros(len(hunks), int)
    for i, h in enumerate(hunks):
        if len(h.right) == 0:
            continue
        mix = scores(h, token_weight, clean_weight)
        s = _reranked(h, mix, rerank)
        order = np.argsort(-s, kind="stable")
        conf[i] = min(1.0, float(s[order[0]]), float(mix[order[0]]))  # as Candidate.sure
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
    z = np.clip(a * np.log(p / (1 - p)) + b, -500.0, 500.0)
    return 1.0 / (1.0 + np.exp(-z))


def fit_platt(score: np.ndarray, right: np.ndarray, iters: int = 200) -> tuple[float, float]:
    """(a, b) minimising the log loss of :func:`platt` on (score, right), by Newton's method;
    (1, 0), the scores themselves, when the fit would not keep their order (``a <= 0``: on a
    handful of hunks the scores can be unrelated or perfectly separating)."""
    p = np.clip(np.asarray(score, dtype=np.float64), 1e-6, 1 - 1e-6)
    x = np.log(p / (1 - p))
    y = np.asarray(right, dtype=np.float64)
    a, b = 1.0, 0.0
    for _ in range(iters):
        q = 1.0 / (1.0 + np.exp(-np.clip(a * x + b, -500.0, 500.0)))
        g = np.array([np.sum((q - y) * x), np.sum(q - y)])
        w = q * (1 - q) + 1e-9
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]])
        step = np.linalg.solve(h + 1e-6 * np.eye(2), g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-9:
            break
    if not (np.isfinite(a) and np.isfinite(b) and 0.0 < a < 1e3):
        return 1.0, 0.0
    return float(a), float(b)


def policy_outcomes(hunks: Sequence[HunkCandidates]) -> tuple[np.ndarray, np.ndarray]:
    """Per hunk, the token-merge policy's confidence (0: no answer) and whether it is right."""
    return np.array([h.policy_conf for h in hunks]), np.array([h.policy_right for h in hunks])


def auto_outcomes(
    pconf: np.ndarray, pright: np.ndarray, conf: np.ndarray, right: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per hunk, the ``auto`` combination's confidence and whether it is right: the policy's
    answer (``pconf``, ``pright``) where it is at least as sure as the model's top candidate
    (``conf``, ``right``), else the model's."""
    use_policy = pconf >= conf
    return np.where(use_policy, pconf, conf), np.where(use_policy, pright, right)


def fit_weights(hunks: Sequence[HunkCandidates]) -> tuple[float, float]:
    """(token_weight, clean_weight) with the best top-1 on ``hunks`` (ties: lower log loss);
    0.5 for a kind of hunk that does not occur."""
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

    return best_weight(tok, True), best_weight(cln, False)


def fit(
    hunks: Sequence[HunkCandidates],
    target: float = TARGET_PRECISION,
    weights: tuple[float, float] | None = None,
    rerank: Rerank = None,
) -> dict[str, Any]:
    """Platt map, thresholds and the report of the module doc on ``hunks``; the route
    ``weights`` (token, clean) are fitted on ``hunks`` too unless given; scores are reranked
    with ``rerank`` when given."""
    from splice.models.training.calibrate import ece, select_threshold

    wt, wc = weights if weights is not None else fit_weights(hunks)
    right0 = outcomes(hunks, 0.5, 0.5)[1]
    raw, right, rank = outcomes(hunks, wt, wc, rerank)
    a, b = fit_platt(raw, right) if len(hunks) else (1.0, 0.0)
    conf = platt(raw, a, b)
    thr, prec, cov, n_at = select_threshold(conf, right, target)
    pconf, pright = policy_outcomes(hunks)
    auto_conf, auto_right = auto_outcomes(pconf, pright, conf, right)
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
        "hunk_ece_before": ece(raw, right),
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


def repo_folds(hunks: Sequence[HunkCandidates], k: int) -> list[np.ndarray]:
    """``k`` boolean masks over ``hunks`` splitting the repositories into disjoint groups, as
    balanced in hunks as a greedy assignment (largest repository first) makes them."""
    sizes: dict[str, int] = {}
    for h in hunks:
        sizes[h.repo] = sizes.get(h.repo, 0) + 1
    load = [0] * k
    fold_of: dict[str, int] = {}
    for repo in sorted(sizes, key=lambda r: (-sizes[r], r)):
        i = int(np.argmin(load))
        fold_of[repo] = i
        load[i] += sizes[repo]
    which = np.array([fold_of[h.repo] for h in hunks])
    return [which == i for i in range(k)]


def cross_fit(
    hunks: Sequence[HunkCandidates],
    k: int = 2,
    target: float = TARGET_PRECISION,
    weights: tuple[float, float] | None = None,
    rerank: Rerank = None,
) -> dict[str, Any]:
    """Out-of-sample numbers for :func:`fit`: the repositories are split into ``k`` groups
    (:func:`repo_folds`); each group's hunks are scored with the Platt map and thresholds (and
    the route weights, unless given) fitted on the other groups only. Returns the pooled
    held-out top-1 / top-3, coverage and precision at each fold's own thresholds (``model`` and
    ``auto``), the hunk ECE, and the same per language and per repository (with the mean of
    the repositories' top-1, each counted once)."""
    from splice.models.training.calibrate import ece

    conf = np.zeros(len(hunks))
    right = np.zeros(len(hunks), bool)
    rank = np.zeros(len(hunks), int)
    answered = np.zeros(len(hunks), bool)
    auto_answered = np.zeros(len(hunks), bool)
    auto_right = np.zeros(len(hunks), bool)
    folds = []
    for held in repo_folds(hunks, k):
        train = [h for h, m in zip(hunks, held, strict=True) if not m]
        test_idx = np.flatnonzero(held)
        test = [hunks[i] for i in test_idx]
        p = fit(train, target, weights, rerank)
        raw, r, rk = outcomes(test, p["token_weight"], p["clean_weight"], rerank)
        c = platt(raw, p["platt_a"], p["platt_b"])
        conf[test_idx], right[test_idx], rank[test_idx] = c, r, rk
        answered[test_idx] = c >= p["threshold"]
        a_conf, auto_right[test_idx] = auto_outcomes(*policy_outcomes(test), c, r)
        auto_answered[test_idx] = a_conf >= p["auto_threshold"]
        folds.append(
            {
                "repos": sorted({h.repo for h in test}),
                "hunks": len(test),
                "fitted": {
                    key: p[key]
                    for key in (
                        "token_weight",
                        "clean_weight",
                        "platt_a",
                        "platt_b",
                        "threshold",
                        "auto_threshold",
                    )
                },
            }
        )

    def at(mask: np.ndarray, ok: np.ndarray) -> dict[str, float]:
        return {
            "coverage": float(mask.mean()) if len(mask) else 0.0,
            "precision": float(ok[mask].mean()) if mask.any() else 0.0,
        }

    def by(keys: list[str]) -> dict[str, dict[str, Any]]:
        keys_ = np.array(keys)
        groups = {}
        for key in sorted(set(keys)):
            mine = keys_ == key
            groups[key] = {
                "hunks": int(mine.sum()),
                "top1": float(right[mine].mean()),
                "top3": float(((rank > 0) & (rank <= 3))[mine].mean()),
                "model_at_threshold": at(answered[mine], right[mine]),
                "auto_at_threshold": at(auto_answered[mine], auto_right[mine]),
            }
        return groups

    per_repository = by([h.repo for h in hunks])
    return {
        "k": k,
        "weights": "given" if weights is not None else "fitted per fold",
        "n_hunks": len(hunks),
        "hunk_top1": float(right.mean()) if len(hunks) else 0.0,
        "hunk_top3": float(((rank > 0) & (rank <= 3)).mean()) if len(hunks) else 0.0,
        "model_at_threshold": at(answered, right),
        "auto_at_threshold": at(auto_answered, auto_right),
        "hunk_ece": ece(conf, right),
        # every repository counted once: one large repository can sway the pooled top-1
        "repo_mean_top1": float(np.mean([g["top1"] for g in per_repository.values()]))
        if per_repository
        else 0.0,
        "per_language": by([h.lang for h in hunks]),
        "per_repository": per_repository,
        "folds": folds,
    }


def answer_kind(h: HunkCandidates, i: int) -> str:
    """What candidate ``i`` of ``h`` is: ours, theirs, base, the clean token merge, or another
    combination of the sides."""
    bits = int(h.sides[i]) if h.sides is not None else 0
    for bit, name in ((1, "ours"), (2, "theirs"), (4, "base")):
        if bits & bit:
            return name
    if h.clean and not h.has_token and h.token_p[i] == 1.0:
        return "clean token merge"
    return "combination"


def error_kinds(
    hunks: Sequence[HunkCandidates], weights: tuple[float, float], rerank: Rerank = None
) -> dict[str, float]:
    """Share of ``hunks`` per (right answer's kind, first choice's kind) where the first choice
    under ``weights`` is wrong, keyed ``"RIGHT -> CHOSEN"``, largest first ("not a candidate":
    no candidate reproduces the resolution)."""
    counts: dict[str, int] = {}
    for h in hunks:
        if not len(h.right):
            continue
        s = scores(h, *weights, rerank)
        top = int(np.argmax(s))
        if h.right[top]:
            continue
        hits = np.flatnonzero(h.right)
        right = answer_kind(h, int(hits[0])) if len(hits) else "not a candidate"
        key = f"{right} -> {answer_kind(h, top)}"
        counts[key] = counts.get(key, 0) + 1
    n = max(len(hunks), 1)
    return {k: v / n for k, v in sorted(counts.items(), key=lambda kv: -kv[1])}
