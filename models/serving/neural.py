"""The neural resolver ``model``: the merge-pattern classifier served with onnxruntime only.

A model directory holds ``tokenizer.json``, ``model.onnx`` (from
:mod:`splice.models.training.export`) and
``calibration.json`` (from :mod:`splice.models.training.calibrate`: temperature, threshold, route
weight).
Nothing on this path imports torch.

For a hunk, :func:`~splice.models.serving.pieces.hunk_pieces` gives its token-route pieces (one per
token
conflict) and its hunk-route piece; all pieces of all hunks asked at once go through ONE batched
onnxruntime run, and each piece's logits become probabilities ``softmax(logits / T)``.

- Token route: a beam search (width :data:`BEAM_WIDTH`) over the token conflicts, one pattern
  each, scored by the product of the piece probabilities. Patterns giving the same tokens for a
  piece are merged first (probabilities summed), and so are combinations that assemble to the
  same lines.
- Hunk route: each pattern applied to the hunk's lines; identical outputs merged by summing.

Combining the routes: both are probability distributions over the hunk's resolved lines, so the
final score of a text is the mixture ``w * P_token(text) + (1 - w) * P_hunk(text)`` with
``w = calibration.token_weight`` (0.5 unless calibrated otherwise). A text both routes propose
collects both shares (agreement raises confidence, disagreement lowers it), and the scores of
all candidates still sum to at most 1. A hunk whose token merge is clean has no token-route
pieces: its token route puts probability 1 on the clean merge, mixed in with its own weight
``calibration.clean_weight`` (the clean merge is right about half the time on validation, so it
must compete with the hunk route's patterns rather than win outright). Hunks with more than 64
token conflicts use the hunk route alone (``w = 0``).

When ``calibration.json`` holds ``rerank`` weights, the candidates are then rescored with what the
classifier cannot see, the rest of the file (:mod:`splice.models.serving.rerank`: names used
elsewhere,
how much each side changed the file, how the file's other hunks lean), as a conditional logit
with the mixture as its offset.

The best candidate is ``Resolution.chosen``; its confidence is the Platt map of its probability
(after reranking: of the lower of its reranked and its mixture probability, ``Candidate.sure``),
and the first three distinct candidates are the suggestions. The pipeline applies answers at the
calibrated ``threshold`` (the resolver's ``min_confidence``) unless the caller sets one.

``SPLICE_MODEL_DIR`` overrides the default model directory (``models/shipped/``).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from splice.models.serving.sessions import open_session
from splice.resolver.resolvers import (
    WRITTEN,
    WRITTEN_SOURCE,
    Hunk,
    Resolution,
    Resolver,
    Suggestion,
    register,
)
from splice.resolver.thresholds import Thresholds

if TYPE_CHECKING:
    from splice.models.serving.lm_scoring import LMScorer

#: Environment variable naming the model directory (else :func:`default_model_dir`).
MODEL_DIR_ENV = "SPLICE_MODEL_DIR"
#: Files a model directory must hold.
MODEL_FILES = ("tokenizer.json", "model.onnx", "calibration.json")
BEAM_WIDTH = 5
TOP_K = 3
#: Pieces per onnxruntime run at most: bounds memory on files with many conflicts (activations
#: grow with the batch: 64 pieces of 128 subwords peaked at 840 MiB in the driver benchmark).
MAX_BATCH = 16
#: The reason in the fallback notice is cut to this many characters (it stays one line).
NOTICE_CHARS = 240


class ModelUnavailable(RuntimeError):
    """The model directory is missing, incomplete or cannot be loaded."""


def default_model_dir() -> Path:
    """``$SPLICE_MODEL_DIR`` if set, else the ``shipped`` folder next to this module."""
    env = os.environ.get(MODEL_DIR_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "shipped"


@dataclass(frozen=True)
class Calibration:
    """What ``calibration.json`` holds (see :mod:`splice.models.training.calibrate`)."""

    temperature: float = 1.0
    #: Lowest confidence with validation precision >= the target (None: pipeline default).
    threshold: float | None = None
    #: Mixture weight of the token route (module docstring).
    token_weight: float = 0.5
    #: Mixture weight of a clean token merge against the hunk route (module docstring).
    clean_weight: float = 0.5
    #: Platt map of a candidate's mixture score to its confidence (1, 0: the score itself).
    platt_a: float = 1.0
    platt_b: float = 0.0
    #: Threshold of the ``auto`` combination with the token-merge policy (None: ``threshold``).
    auto_threshold: float | None = None
    #: Sequence length the pieces are encoded to.
    max_len: int = 128
    #: Weights of :data:`splice.models.serving.rerank.FEATURES` (None: the mixture ranks alone).
    rerank: tuple[float, ...] | None = None
    #: The ``decision`` section (``scripts/fit_decision.py``): thresholds by group of answer
    #: (:mod:`splice.resolver.thresholds`); None when there is none.
    decision: Thresholds | None = None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Calibration:
        """Read the fields above from a parsed ``calibration.json`` (extra keys are reports)."""
        t = float(data.get("temperature", 1.0))
        thr = data.get("threshold")
        w = float(data.get("token_weight", 0.5))
        wc = float(data.get("clean_weight", 0.5))
        max_len = int(data.get("max_len", 128))
        if not (t > 0 and 0.0 <= w <= 1.0 and 0.0 <= wc <= 1.0 and max_len >= 5):
            raise ValueError(
                f"bad values: temperature {t}, token_weight {w}, clean_weight {wc}, "
                f"max_len {max_len}"
            )
        if thr is not None and not 0.0 <= float(thr) <= 1.0:
            raise ValueError(f"threshold {thr} outside [0, 1]")
        a, b = float(data.get("platt_a", 1.0)), float(data.get("platt_b", 0.0))
        if not a > 0:
            raise ValueError(f"platt_a {a} must be positive (the map must keep the order)")
        auto = data.get("auto_threshold")
        if auto is not None and not 0.0 <= float(auto) <= 1.0:
            raise ValueError(f"auto_threshold {auto} outside [0, 1]")
        thr = None if thr is None else float(thr)
        rerank = data.get("rerank")
        if rerank is not None:
            from splice.models.serving.rerank import FEATURES

            if tuple(rerank.get("features", ())) != FEATURES:
                raise ValueError("rerank features do not match this version of splice")
            rerank = tuple(float(x) for x in rerank["weights"])
            if len(rerank) != len(FEATURES) or not all(math.isfinite(x) for x in rerank):
                raise ValueError("rerank weights must be one finite number per feature")
        decision = data.get("decision")
        if decision is not None:
            decision = _decision(decision)
        return cls(
            decision=decision,
            temperature=t,
            threshold=thr,
            token_weight=w,
            clean_weight=wc,
            max_len=max_len,
            platt_a=a,
            platt_b=b,
            auto_threshold=None if auto is None else float(auto),
            rerank=rerank,
        )

    def confidence(self, score: float) -> float:
        """The calibrated probability that a candidate with mixture ``score`` is right."""
        if self.platt_a == 1.0 and self.platt_b == 0.0:
            return min(1.0, score)
        p = min(max(score, 1e-6), 1 - 1e-6)
        z = self.platt_a * math.log(p / (1 - p)) + self.platt_b
        return 1.0 / (1.0 + math.exp(-z))


@dataclass(frozen=True)
class Candidate:
    """A resolved text of a hunk with its probability from each route."""

    lines: tuple[str, ...]
    token_p: float
    hunk_p: float
    score: float
    explanation: str
    #: Whether the token route is the hunk's clean token merge (no token conflicts).
    clean: bool = False
    #: The route mixture's probability (``score`` too, unless reranked).
    mixture: float | None = None
    #: Written by the code language model (no pattern gives it; no mixture).
    written: bool = False

    @property
    def sure(self) -> float:
        """What the confidence is mapped from: the score, and after reranking the lower of the
        reranked score and the mixture (an answer is sure only if the classifier alone is too;
        the reranked score alone reached 84% precision at the 95% threshold held out, the lower
        of the two 96%). A written candidate has no mixture: its score."""
        return self.score if self.mixture is None else min(self.score, self.mixture)


def _rescored(
    cands: Sequence[Candidate], scores: Sequence[float], mixtures: Sequence[float | None]
) -> list[Candidate]:
    """``cands`` with new ``scores`` and ``mixtures``, best first."""
    out = [
        replace(c, score=float(p), mixture=m)
        for c, p, m in zip(cands, scores, mixtures, strict=True)
    ]
    out.sort(key=lambda c: -c.score)
    return out


def _mixture(c: Candidate) -> float:
    """The route mixture of a classifier candidate (its score until reranked)."""
    return c.score if c.mixture is None else c.mixture


def softmax(logits: Any, temperature: float = 1.0) -> Any:
    """Row-wise softmax of ``logits / temperature`` (float64)."""
    import numpy as np

    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _options(patterns: Sequence[Any], probs: Sequence[float], conflict: Any) -> list[tuple]:
    """(units, probability, pattern names) per distinct output of ``patterns`` on a conflict."""
    from splice.resolver.patterns import apply

    merged: dict[tuple[str, ...], list] = {}
    for pat, p in zip(patterns, probs, strict=True):
        units = apply(pat, conflict)
        slot = merged.setdefault(units, [0.0, []])
        slot[0] += float(p)
        slot[1].append(pat.value)
    return [(units, p, names) for units, (p, names) in merged.items()]


def beam_search(
    options: Sequence[Sequence[tuple]], width: int = BEAM_WIDTH
) -> list[tuple[float, tuple[int, ...]]]:
    """The ``width`` best choices of one option per position, by product of probabilities.

    ``options[i]`` lists (units, probability, names) of position i; returns (score, indices).
    """
    beams: list[tuple[float, tuple[int, ...]]] = [(1.0, ())]
    for opts in options:
        grown = [(s * opt[1], idx + (j,)) for s, idx in beams for j, opt in enumerate(opts)]
        grown.sort(key=lambda b: -b[0])
        beams = grown[:width]
    return beams


def _probability(name: str, value: Any) -> float | None:
    if value is None:
        return None
    v = float(value)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"decision.{name} {value} outside [0, 1]")
    return v


def _decision(data: dict[str, Any]) -> Thresholds:
    """``calibration.json``'s ``decision``: ``rule``, ``groups`` (group: threshold or null),
    ``keeps_both`` and ``drops_side`` (null: never applied automatically)."""
    groups = data.get("groups") or {}
    return Thresholds(
        keeps_both=_probability("keeps_both", data.get("keeps_both")),
        drops_side=_probability("drops_side", data.get("drops_side")),
        rule=str(data.get("rule", "kind")),
        groups=tuple(sorted((str(g), _probability(g, v)) for g, v in groups.items())),
    )


class NeuralResolver(Resolver):
    """The pattern classifier as a :class:`~splice.resolver.resolvers.Resolver` (module doc)."""

    name = "model"

    def __init__(self, model_dir: str | Path | None = None, lm: LMScorer | None = None) -> None:
        #: The code language model that scores and writes candidates (None: the classifier
        #: alone).
        self.lm = lm
        self.model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        missing = [f for f in MODEL_FILES if not (self.model_dir / f).is_file()]
        if missing:
            raise ModelUnavailable(f"{self.model_dir}: missing {', '.join(missing)}")
        try:
            from tokenizers import Tokenizer

            data = json.loads((self.model_dir / "calibration.json").read_text(encoding="utf-8"))
            self.calibration = Calibration.from_json(data)
            self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
            self.session = open_session(self.model_dir / "model.onnx")
        except Exception as exc:  # any load failure means the same to callers
            raise ModelUnavailable(f"{self.model_dir}: {type(exc).__name__}: {exc}") from exc
        inputs = {i.name: i.shape for i in self.session.get_inputs()}
        if set(inputs) != {"input_ids", "edit_ids", "attention_mask"}:
            raise ModelUnavailable(f"{self.model_dir}: unexpected model inputs {sorted(inputs)}")
        length = inputs["input_ids"][2]
        #: A fixed sequence length of the graph (None: dynamic, batches are cut to fit).
        self.fixed_length = length if isinstance(length, int) else None
        if self.fixed_length is not None and self.fixed_length != self.calibration.max_len:
            raise ModelUnavailable(
                f"{self.model_dir}: model length {self.fixed_length}, "
                f"calibration max_len {self.calibration.max_len}"
            )

    @property
    def min_confidence(self) -> float | None:
        """The calibrated threshold, used by the pipeline when no threshold is given."""
        return self.calibration.threshold

    # ------------------------------------------------------------------ inference

    def logits(self, pieces: Sequence[Any]) -> Any:
        """(len(pieces), num_labels) float logits: one onnxruntime run per :data:`MAX_BATCH`."""
        import numpy as np
        from splice.models.serving.encoding import encode_batch, encode_piece

        max_len = self.calibration.max_len
        out = []
        for start in range(0, len(pieces), MAX_BATCH):
            chunk = pieces[start : start + MAX_BATCH]
            enc = [
                encode_piece(self.tokenizer, p.conflict, p.prefix, p.suffix, max_len) for p in chunk
            ]
            feeds = encode_batch(enc)
            if self.fixed_length is None:  # cut after the last attended position
                attended = np.flatnonzero(feeds["attention_mask"].any(axis=(0, 1)))
                length = int(attended[-1]) + 1 if len(attended) else 1
                feeds = {k: np.ascontiguousarray(v[..., :length]) for k, v in feeds.items()}
            (logits,) = self.session.run(["logits"], feeds)
            out.append(np.asarray(logits, dtype=np.float64))
        return np.concatenate(out) if out else np.zeros((0, 10))

    def candidates_many(self, hunks: Sequence[Hunk], rerank: bool = True) -> list[list[Candidate]]:
        """Every scored candidate of each hunk, best first (one batched run for all hunks):
        scored by the route mixture, then, when ``rerank`` is true, reranked with the file
        context when the calibration has rerank weights and with the code language model when
        there is one (which also adds the candidates it writes)."""
        from splice.models.serving.pieces import hunk_pieces

        per_hunk = [hunk_pieces(h) for h in hunks]
        flat = [p for ps in per_hunk for p in ps]
        probs = softmax(self.logits(flat), self.calibration.temperature) if flat else []
        out: list[list[Candidate]] = []
        start = 0
        for hunk, pieces in zip(hunks, per_hunk, strict=True):
            out.append(self._rank(hunk, pieces, probs[start : start + len(pieces)]))
            start += len(pieces)
        if rerank and self.calibration.rerank is not None:
            out = self._rerank(hunks, out)
        if rerank and self.lm is not None and hunks:
            out = self._with_lm(hunks, out)
        return out

    def _with_lm(
        self, hunks: Sequence[Hunk], ranked: list[list[Candidate]]
    ) -> list[list[Candidate]]:
        """The candidates the LM writes added to each hunk's, then all rescored with the LM's
        features (:mod:`splice.models.serving.lm_scoring`), best first."""
        import numpy as np
        from splice.models.serving.lm_scoring import WRITTEN_PRIOR, dedup_written, lm_features
        from splice.models.serving.rerank import rerank_scores

        assert self.lm is not None
        pools = []
        for cands, written in zip(ranked, self.lm.write(hunks), strict=True):
            new = dedup_written([c.lines for c in cands], written)
            pools.append(cands + [Candidate(x, 0.0, 0.0, 0.0, WRITTEN, written=True) for x in new])
        log_probs, lengths = self.lm.score(hunks, [[c.lines for c in p] for p in pools])
        weights = np.array(self.lm.rerank.weights)
        out = []
        for cands, lp, n in zip(pools, log_probs, lengths, strict=True):
            feats = lm_features(lp, n, [c.written for c in cands])
            prior = np.array([WRITTEN_PRIOR if c.written else c.score for c in cands])
            new = rerank_scores(prior, feats, weights)
            out.append(_rescored(cands, new, [None if c.written else _mixture(c) for c in cands]))
        return out

    def _rerank(
        self, hunks: Sequence[Hunk], ranked: list[list[Candidate]]
    ) -> list[list[Candidate]]:
        """Each hunk's candidates rescored by :mod:`splice.models.serving.rerank`, best first."""
        import numpy as np
        from splice.models.serving.rerank import features_many, rerank_scores

        weights = np.array(self.calibration.rerank)
        out = []
        for cands, feats in zip(ranked, features_many(hunks, ranked), strict=True):
            new = rerank_scores(np.array([c.score for c in cands]), feats, weights)
            out.append(_rescored(cands, new, [c.score for c in cands]))
        return out

    def candidates(self, hunk: Hunk) -> list[Candidate]:
        """Every scored candidate of ``hunk``, best first."""
        return self.candidates_many([hunk])[0]

    def _rank(self, hunk: Hunk, pieces: Sequence[Any], probs: Any) -> list[Candidate]:
        from splice.models.serving.encoding import PATTERNS
        from splice.models.serving.pieces import Route
        from splice.resolver.chunks import Conflict, split_lines
        from splice.resolver.patterns import phrase
        from splice.resolver.tokenmerge import merge_hunk, render

        token = [p for p in pieces if p.route == Route.TOKEN]
        hunk_piece = pieces[-1]
        w = self.calibration.token_weight if token else 0.0
        found: dict[tuple[str, ...], list] = {}  # lines -> [token p, hunk p, token why, hunk why]
        clean: tuple[str, ...] | None = None
        if not token:
            chunks = merge_hunk(hunk.conflict, hunk.lang)
            if not any(isinstance(c, Conflict) for c in chunks):
                clean = tuple(split_lines(render(chunks, [])))
                found[clean] = [1.0, 0.0, "a clean token-level merge", ""]
                w = self.calibration.clean_weight

        if token:
            options = [_options(PATTERNS, probs[i], p.conflict) for i, p in enumerate(token)]
            for score, idx in beam_search(options):
                picks = [options[i][j][0] for i, j in enumerate(idx)]
                lines = tuple(split_lines(render(token[0].chunks, picks)))
                slot = found.setdefault(lines, [0.0, 0.0, "", ""])
                slot[0] += score
                if not slot[2]:
                    slot[2] = "token by token: " + "; ".join(
                        phrase(options[i][j][2][0]) for i, j in enumerate(idx)
                    )
        hunk_opts = _options(PATTERNS, probs[len(pieces) - 1], hunk_piece.lines)
        for units, p, names in hunk_opts:
            slot = found.setdefault(tuple(units), [0.0, 0.0, "", ""])
            slot[1] += p
            slot[3] = "as a whole: " + phrase(names[0])
        ranked = [
            Candidate(
                lines,
                tp,
                hp,
                w * tp + (1.0 - w) * hp,
                "; ".join(x for x in (tw, hw) if x),
                clean=lines == clean,
            )
            for lines, (tp, hp, tw, hw) in found.items()
        ]
        ranked.sort(key=lambda c: -c.score)
        return ranked

    # ------------------------------------------------------------------ Resolver

    def resolve_many(self, hunks: Sequence[Hunk]) -> list[Resolution]:
        """:meth:`resolve` for every hunk of a file, with one batched model run."""
        out = []
        for cands in self.candidates_many(hunks):
            conf = self.calibration.confidence
            sugg = tuple(
                Suggestion(
                    c.lines, conf(c.sure), c.explanation, WRITTEN_SOURCE if c.written else self.name
                )
                for c in cands[:TOP_K]
            )
            out.append(Resolution(chosen=sugg[0] if sugg else None, suggestions=sugg))
        return out

    def resolve(self, hunk: Hunk) -> Resolution:
        return self.resolve_many([hunk])[0]


def load_lm(lm_dir: str | Path | None = None) -> LMScorer | None:
    """The code language model of ``lm_dir`` (default: ``$SPLICE_LM_DIR``, else the shipped
    one), or None: silently when none is installed and none was named; after one stderr line
    when it cannot be used (the classifier then ranks alone, nothing else changes). ``lm_dir``
    "none" turns it off."""
    from splice.models.serving.lm import LM_DIR_ENV, LMUnavailable, default_lm_dir
    from splice.models.serving.lm_scoring import LMScorer

    if str(lm_dir) == "none" or os.environ.get(LM_DIR_ENV) == "none":
        return None
    named = lm_dir is not None or bool(os.environ.get(LM_DIR_ENV))
    folder = Path(lm_dir) if lm_dir is not None else default_lm_dir()
    if not named and not folder.exists():
        return None
    try:
        return LMScorer.load(folder)
    except LMUnavailable as exc:
        notice(exc, "the classifier alone", what="language model")
        return None


def model_resolver(
    model_dir: str | Path | None = None, lm_dir: str | Path | None = None
) -> Resolver:
    """The ``model`` resolver from ``model_dir`` (default: the shipped model; raises
    :class:`ModelUnavailable`), with the code language model of ``lm_dir`` (:func:`load_lm`)."""
    resolver = NeuralResolver(model_dir)
    resolver.lm = load_lm(lm_dir)
    return resolver


def notice(exc: Exception, fallback: str = "token-merge", what: str = "model") -> None:
    """The one stderr line telling that the model (or ``what``) could not be used."""
    why = " ".join(str(exc).split())
    if len(why) > NOTICE_CHARS:
        why = why[: NOTICE_CHARS - 3] + "..."
    print(f"splice: {what} unavailable ({why}): using {fallback}", file=sys.stderr, flush=True)


register("model")(model_resolver)
