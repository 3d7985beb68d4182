"""The one decision rule: which answer of a resolver is applied to a conflict, and why not.

Every front end decides through :func:`decide_hunk` (via :mod:`splice.resolver.pipeline`), so the
driver, ``splice resolve``, the language server and ``splice ci`` can never disagree.

An answer is applied when, trying the resolver's candidates best first, one

1. clears the confidence its group needs (:mod:`splice.resolver.thresholds`): the resolver's
   calibrated thresholds group answers by what they keep (:mod:`splice.resolver.keeps`) and
   where they come from; an answer that drops a side's edits needs the stricter
   ``discard_min_confidence`` and, when the resolver has none, is never applied automatically
   (it stays a suggestion), and so is an answer of a group without a threshold; and
2. adds no parse error: the file with this conflict resolved (every other conflict taking ours)
   has no more tree-sitter errors than both the same file taking ours here and the cleanest of
   the three inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from splice.resolver.chunks import text_key
from splice.resolver.keeps import Kept, classify
from splice.resolver.resolvers import WRITTEN_SOURCE, Hunk, Resolution, Resolver, Suggestion
from splice.resolver.thresholds import (
    POLICY_SOURCE,
    AnswerFeatures,
    Thresholds,
    required_confidence,
)

#: What an answer that keeps both sides needs when neither the caller nor the resolver says.
DEFAULT_MIN_CONFIDENCE = 0.85


@dataclass(frozen=True)
class DecisionRule:
    """The confidences answers need, by group (:mod:`splice.resolver.thresholds`), and whether
    syntax is checked."""

    thresholds: Thresholds = Thresholds(DEFAULT_MIN_CONFIDENCE, None)
    checks_syntax: bool = True

    @property
    def min_confidence(self) -> float:
        """The threshold shown to users: that of answers that keep both sides (1.0: never)."""
        keep = self.thresholds.keeps_both
        return 1.0 if keep is None else keep

    @property
    def discard_min_confidence(self) -> float | None:
        """The threshold of answers that drop a side's edits (None: never applied)."""
        return self.thresholds.drops_side

    @classmethod
    def for_resolver(
        cls,
        resolver: Resolver | None,
        *,
        min_confidence: float | None = None,
        allow_discard: bool = False,
    ) -> DecisionRule:
        """The rule for ``resolver``: its calibrated thresholds by group; or, with
        ``min_confidence`` (the user's ``--min-confidence``), that one threshold for every answer
        that keeps both sides and the stricter of it and the resolver's for answers that drop a
        side; ``allow_discard`` judges discards like the rest (one threshold for all)."""
        checks = True if resolver is None else resolver.checks_syntax
        own = None if resolver is None else resolver.thresholds
        if own is not None and min_confidence is None and not allow_discard:
            return cls(own, checks)
        keep = min_confidence
        if keep is None and resolver is not None:
            keep = resolver.min_confidence
        if keep is None:
            keep = DEFAULT_MIN_CONFIDENCE
        drop = None if resolver is None else resolver.discard_min_confidence
        if allow_discard:
            drop = keep
        elif drop is not None and min_confidence is not None:
            drop = max(drop, min_confidence)
        return cls(Thresholds(float(keep), None if drop is None else float(drop)), checks)

    def required(self, kept: Kept, features: AnswerFeatures | None = None) -> float | None:
        """The confidence an answer keeping ``kept`` needs (None: never applied)."""
        return required_confidence(kept, self.thresholds, features)


def answer_features(hunk: Hunk, answer: Suggestion, kept: Kept) -> AnswerFeatures:
    """What the grouping rules look at for ``answer`` to ``hunk``."""
    c = hunk.conflict
    text = text_key("".join(answer.lines))
    ours, theirs = text_key("".join(c.ours)), text_key("".join(c.theirs))
    equals = "ours" if text == ours else "theirs" if text == theirs else None
    alone = hunk.file is not None and hunk.file.n_conflicts == 1
    policy, written = answer.source == POLICY_SOURCE, answer.source == WRITTEN_SOURCE
    return AnswerFeatures(kept.kind, policy, equals, alone, written)


@dataclass(frozen=True)
class Verdict:
    """The answer applied to one hunk (None: markers stay), what it keeps, and why not."""

    applied: Suggestion | None
    kept: Kept | None
    reason: str


def ranked(resolution: Resolution) -> list[Suggestion]:
    """The chosen answer, then the other suggestions best first, one per text."""
    out: list[Suggestion] = []
    seen: set[tuple[str, ...]] = set()
    first = [resolution.chosen] if resolution.chosen is not None else []
    for s in [*first, *sorted(resolution.suggestions, key=lambda s: -s.confidence)]:
        if tuple(s.lines) not in seen:
            seen.add(tuple(s.lines))
            out.append(s)
    return out


def decide_hunk(
    hunk: Hunk,
    resolution: Resolution,
    rule: DecisionRule,
    parses: Callable[[Sequence[str]], bool] | None = None,
) -> Verdict:
    """Apply the rule (module doc) to ``resolution``'s candidates for ``hunk``.

    ``parses(lines)`` says whether the file with the hunk replaced by ``lines`` passes the syntax
    check (None: no check).
    """
    if resolution.chosen is None:
        return Verdict(None, None, "no answer")
    reason = ""
    first_kept: Kept | None = None
    for answer in ranked(resolution):
        kept = classify(hunk.conflict, answer.lines, hunk.lang)
        first_kept = first_kept or kept
        need = rule.required(kept, answer_features(hunk, answer, kept))
        if need is None:
            reason = reason or f"{kept.describe()}: left as a suggestion"
            continue
        if answer.confidence < need:
            reason = reason or f"confidence {answer.confidence:.2f} below {need:.2f}"
            continue
        if rule.checks_syntax and parses is not None and not parses(answer.lines):
            reason = "adds a parse error"
            continue
        return Verdict(answer, kept, f"applied: {kept.describe()}")
    return Verdict(None, first_kept, reason)
