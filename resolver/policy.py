"""The model-free resolution policy: a token-level merge, applied only where it is trustworthy.

Naive token merging (answer whenever the token-level three-way merge of a hunk leaves no
conflicting token) answers about a third of the hunks, but only about two thirds of those answers
match what developers committed. Measured on the training repositories of the shared data set
(``scripts/tune_policy.py``), two shapes of clean token merge are trustworthy:

1. **subsumed**: the merged text equals one side ignoring whitespace, i.e. the other side only
   changed whitespace or made a subset of the same changes (about 94% precise);
2. **distant same-line edits**: a real combination of both sides, where every edit of each side
   lies on the same line as the other side's nearest edit, at least :attr:`Rules.min_gap`
   significant (non-whitespace) base tokens away from it, and no side changes more than
   :attr:`Rules.max_side_tokens` significant tokens (about 70% precise on its own).

Everything else abstains. Edits that overlap (both sides changed the same tokens, identically) are
never a "combination" here unless the result equals one side. The pipeline's syntax check then
rejects any answer that adds a parse error. Confidence = the measured precision of the shape.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splice.resolver.chunks import Conflict, join, split_lines
from splice.resolver.resolvers import Hunk, Resolution, Suggestion, register


@dataclass(frozen=True)
class Rules:
    """Thresholds of the policy (tuned on training repositories; see docs/EVALUATION.md)."""

    min_gap: int = 2
    max_side_tokens: int = 16
    #: Measured precision of each shape, used as the answer's confidence.
    subsumed_confidence: float = 0.94
    combined_confidence: float = 0.72


@dataclass(frozen=True)
class EditShape:
    """How the two sides' token edits of a hunk relate (base token coordinates)."""

    merged: str
    #: "ours" or "theirs" when the merge equals that side ignoring whitespace, else "combined".
    kind: str
    #: Fewest significant base tokens between an ours edit and a theirs edit (0 = overlap).
    gap: int
    #: Fewest newlines between an ours edit and a theirs edit.
    line_gap: int
    #: Significant tokens changed or inserted by each side.
    ours_size: int
    theirs_size: int


def _squash(text: str) -> str:
    return "".join(text.split())


def _edits(base: Sequence[str], side: Sequence[str]) -> list[tuple[int, int, int]]:
    """(base start, base end, significant inserted tokens) per edit of ``side``."""
    from splice.resolver.seqdiff import opcodes

    return [
        (op.a1, op.a2, sum(1 for t in side[op.b1 : op.b2] if not t.isspace()))
        for op in opcodes(base, side)
        if op.tag != "equal"
    ]


def edit_shape(conflict: Conflict, lang: str | None) -> EditShape | None:
    """The shape of the token-level merge of a hunk, or None when tokens still conflict."""
    from splice.resolver.tokenize import tokenize
    from splice.resolver.tokenmerge import merge_hunk

    chunks = merge_hunk(conflict, lang)
    if any(isinstance(c, Conflict) for c in chunks):
        return None
    base = tokenize(join(conflict.base), lang)
    ours = tokenize(join(conflict.ours), lang)
    theirs = tokenize(join(conflict.theirs), lang)
    merged = "".join(u for c in chunks for u in c.units)
    key = _squash(merged)
    kind = (
        "ours"
        if key == _squash(join(conflict.ours))
        else "theirs"
        if key == _squash(join(conflict.theirs))
        else "combined"
    )
    significant = [0]
    newlines = [0]
    for tok in base:
        significant.append(significant[-1] + (not tok.isspace()))
        newlines.append(newlines[-1] + tok.count("\n"))
    ours_edits, theirs_edits = _edits(base, ours), _edits(base, theirs)
    gap = line_gap = 1 << 30
    for a1, a2, _ in ours_edits:
        for b1, b2, _ in theirs_edits:
            if a2 <= b1:
                g, lg = significant[b1] - significant[a2], newlines[b1] - newlines[a2]
            elif b2 <= a1:
                g, lg = significant[a1] - significant[b2], newlines[a1] - newlines[b2]
            else:
                g = lg = 0
            gap, line_gap = min(gap, g), min(line_gap, lg)

    def size(edits: list[tuple[int, int, int]]) -> int:
        return sum(significant[e] - significant[s] + ins for s, e, ins in edits)

    return EditShape(merged, kind, gap, line_gap, size(ours_edits), size(theirs_edits))


class SafeTokenMerge:
    """Token-level merge restricted to the trustworthy shapes (module docstring)."""

    name = "token-merge"

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()

    def accepts(self, shape: EditShape) -> float | None:
        """The confidence for a shape, or None when the policy abstains."""
        r = self.rules
        if shape.kind != "combined":
            return r.subsumed_confidence
        if (
            shape.gap >= r.min_gap
            and shape.line_gap == 0
            and max(shape.ours_size, shape.theirs_size) <= r.max_side_tokens
        ):
            return r.combined_confidence
        return None

    def resolve(self, hunk: Hunk) -> Resolution:
        shape = edit_shape(hunk.conflict, hunk.lang)
        if shape is None:
            return Resolution(chosen=None)
        suggestion = Suggestion(
            tuple(split_lines(shape.merged)),
            1.0,
            f"token-level merge ({shape.kind}, gap {shape.gap})",
        )
        confidence = self.accepts(shape)
        if confidence is None:
            # Still a useful suggestion for an editor, but not applied automatically.
            weak = Suggestion(suggestion.lines, 0.5, suggestion.explanation)
            return Resolution(chosen=None, suggestions=(weak,))
        chosen = Suggestion(suggestion.lines, confidence, suggestion.explanation)
        return Resolution(chosen=chosen, suggestions=(chosen,))


register("token-merge")(SafeTokenMerge)
