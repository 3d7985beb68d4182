"""The one decision rule: which answer of a resolver is applied to a conflict, and why not.

Every front end decides through :func:`decide_hunk` (via :mod:`splice.resolver.pipeline`), so the
driver, ``splice resolve``, the language server and ``splice ci`` can never disagree.

An answer is applied when, trying the resolver's candidates best first, one

1. clears the confidence its kind needs (:func:`splice.resolver.keeps.required_confidence`): an
   answer that keeps both sides' edits needs the resolver's calibrated ``min_confidence``; one
   that drops a side's edits needs the stricter ``discard_min_confidence`` and, when the resolver
   has none, is never applied automatically (it stays a suggestion), and
2. adds no parse error: the file with this conflict resolved (every other conflict taking ours)
   has no more tree-sitter errors than both the same file taking ours here and the cleanest of
   the three inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from splice.resolver.keeps import Kept, Thresholds, classify, required_confidence
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion

#: What an answer that keeps both sides needs when neither the caller nor the resolver says.
DEFAULT_MIN_CONFIDENCE = 0.85


@dataclass(frozen=True)
class DecisionRule:
    """The confidences answers need, by what they keep, and whether syntax is checked."""

    #: For answers that keep both sides' edits.
    min_confidence: float = DEFAULT_MIN_CONFIDENCE
    #: For answers that drop a side's edits; None: never applied automatically.
    discard_min_confidence: float | None = None
    checks_syntax: bool = True

    @classmethod
    def for_resolver(
        cls,
        resolver: Resolver | None,
        *,
        min_confidence: float | None = None,
        allow_discard: bool = False,
    ) -> DecisionRule:
        """The rule for ``resolver``: its calibrated thresholds, ``min_confidence`` (the user's
        ``--min-confidence``) raising both, ``allow_discard`` judging discards like the rest."""
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
        checks = True if resolver is None else resolver.checks_syntax
        return cls(float(keep), None if drop is None else float(drop), checks)

    def required(self, kept: Kept) -> float | None:
        """The confidence an answer keeping ``kept`` needs (None: never applied)."""
        return required_confidence(
            kept, Thresholds(keeps_both=self.min_confidence, drops_side=self.discard_min_confidence)
        )


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
        need = rule.required(kept)
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
