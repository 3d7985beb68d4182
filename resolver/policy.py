"""The model-free resolution policy: a token-level merge, applied only where it is trustworthy.

Naive token merging (answer whenever the token-level three-way merge of a hunk leaves no
conflicting token) answers 30-40% of the hunks, but only about half of those answers match what
developers committed: a clean token merge that *combines* both sides' edits is right only 45-60%
of the time, whatever the distance between the edits or their size (``scripts/tune_policy.py``
on the training repositories, confirmed on the validation ones). What is trustworthy is the
**subsumed** shape: the merged text equals one side ignoring whitespace, because the other side
only changed whitespace or made a subset of the same edits (87-96% precise).

So every clean token merge is answered with a confidence equal to the precision its shape had on
the training repositories (:class:`Rules`); the pipeline applies answers at or above the
threshold (default :data:`splice.resolver.pipeline.DEFAULT_MIN_CONFIDENCE`, 0.85), which keeps the
subsumed shapes and leaves combinations as suggestions. The pipeline's syntax check then rejects
any answer that adds a parse error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splice.resolver.chunks import Conflict, join, split_lines, text_key
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion, register


@dataclass(frozen=True)
class Rules:
    """Confidence of each shape: its precision on the training repositories (83 repositories,
    up to 60 files each; ``python scripts/tune_policy.py --per-repo 60``)."""

    #: The merge equals ours, and theirs made a subset of ours' edits (or vice versa).
    subset_ours: float = 0.96
    subset_theirs: float = 0.90
    #: The merge equals one side; the other side changed only whitespace.
    whitespace_ours: float = 0.87
    whitespace_theirs: float = 0.92
    #: A real combination of both sides' edits, on one line or across lines.
    combined_same_line: float = 0.58
    combined_across_lines: float = 0.54


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
    from splice.resolver.tokenmerge import hunk_tokens, merge_hunk

    chunks = merge_hunk(conflict, lang)
    if any(isinstance(c, Conflict) for c in chunks):
        return None
    tokens = hunk_tokens(conflict, lang)
    base, ours, theirs = tokens.base, tokens.ours, tokens.theirs
    merged = "".join(u for c in chunks for u in c.units)
    key = text_key(merged)
    kind = (
        "ours"
        if key == text_key(join(conflict.ours))
        else "theirs"
        if key == text_key(join(conflict.theirs))
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


_SHAPE_WORDS = {
    "ours": "equal to ours (theirs made a subset of its edits)",
    "theirs": "equal to theirs (ours made a subset of its edits)",
    "combined": "combining both sides' edits",
}


class SafeTokenMerge(Resolver):
    """Token-level merge with a confidence per shape (module docstring)."""

    name = "token-merge"

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or Rules()

    def confidence(self, shape: EditShape) -> float:
        """The measured precision of a shape (see :class:`Rules`)."""
        r = self.rules
        if shape.kind == "combined":
            return r.combined_same_line if shape.line_gap == 0 else r.combined_across_lines
        other = shape.theirs_size if shape.kind == "ours" else shape.ours_size
        if other == 0:
            return r.whitespace_ours if shape.kind == "ours" else r.whitespace_theirs
        return r.subset_ours if shape.kind == "ours" else r.subset_theirs

    def resolve(self, hunk: Hunk) -> Resolution:
        shape = edit_shape(hunk.conflict, hunk.lang)
        if shape is None:
            return Resolution(chosen=None)
        chosen = Suggestion(
            tuple(split_lines(shape.merged)),
            self.confidence(shape),
            "a token-level merge, " + _SHAPE_WORDS[shape.kind],
            self.name,
        )
        return Resolution(chosen=chosen, suggestions=(chosen,))


register("token-merge")(SafeTokenMerge)
