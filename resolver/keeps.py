"""What a candidate resolution keeps of each side's edits.

A side's *edits* are what it changed against base, as significant tokens: every token of the
project's tokenizer (:mod:`splice.resolver.tokenize`) except whitespace between tokens. Whitespace
inside a string literal is content, and so is any space other than ASCII blanks (a non-breaking
space, U+00A0, is an edit). Insertions, deletions and replacements are all edits: an answer that
still holds text a side deleted or replaced drops that side's edit, and deleting a block the other
side modified drops the modification.

The rule, per side S and answer R (both diffed against base B, as in the token merge of
:mod:`splice.resolver.tokenmerge`): between consecutive base tokens that S and R both kept in
place lie *regions*. In a region where S left base alone nothing can be dropped. Where R equals
S's slice, S's edit is kept; where R equals base, all of it is dropped. Where R changed the region
differently (a combination), the tokens S inserted must appear in R's slice (a common subsequence)
and the base tokens S removed must not. The dropped tokens are counted, and the lines they sit on
(the larger of: S's lines holding lost insertions, base's lines holding deletions undone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from splice.resolver.chunks import Conflict

KINDS = ("both", "drops-ours", "drops-theirs", "drops-both")
#: Whitespace that is never content outside string literals (a non-breaking space is content).
BLANKS = frozenset(" \t\r\n\f\v")


@dataclass(frozen=True)
class Kept:
    """What an answer keeps of each side's edits."""

    kind: str
    ours_dropped: int
    theirs_dropped: int
    ours_lines: int
    theirs_lines: int

    @property
    def keeps_both(self) -> bool:
        return self.kind == "both"

    def describe(self) -> str:
        """``both sides kept`` / ``dropped theirs: 3 lines`` / ``dropped ours: 1 line, theirs: 2
        lines``."""

        def lines(n: int) -> str:
            return f"{n} line" if n == 1 else f"{n} lines"

        if self.kind == "both":
            return "both sides kept"
        if self.kind == "drops-ours":
            return f"dropped ours: {lines(self.ours_lines)}"
        if self.kind == "drops-theirs":
            return f"dropped theirs: {lines(self.theirs_lines)}"
        return f"dropped ours: {lines(self.ours_lines)}, theirs: {lines(self.theirs_lines)}"


@dataclass(frozen=True)
class Units:
    """The significant tokens of a text and the 0-based line each starts on."""

    texts: tuple[str, ...]
    lines: tuple[int, ...]


@lru_cache(maxsize=256)
def units(text: str, lang: str | None) -> Units:
    """The significant tokens of ``text`` (module doc)."""
    from splice.resolver.tokenize import tokens

    toks = tokens(text, lang)
    texts: list[str] = []
    lines: list[int] = []
    line = 0
    for i, tok in enumerate(toks):
        if tok.kind in ("whitespace", "newline"):
            inside_string = (
                tok.kind == "whitespace"
                and 0 < i < len(toks) - 1
                and toks[i - 1].kind == "string"
                and toks[i + 1].kind == "string"
            )
            if inside_string:
                texts.append(tok.text)
                lines.append(line)
            else:
                for ch in tok.text:  # a non-breaking (or other non-ASCII) space is content
                    if ch not in BLANKS:
                        texts.append(ch)
                        lines.append(line)
        else:
            texts.append(tok.text)
            lines.append(line)
        line += tok.text.count("\n")
    return Units(tuple(texts), tuple(lines))


def _pairs(a: Sequence[str], b: Sequence[str]) -> list[tuple[int, int]]:
    """A common subsequence of ``a`` and ``b`` without chance matches: a lone matched unit of
    punctuation between unmatched ones (the ``=`` of two different assignments) is not a match."""
    from splice.resolver.seqdiff import matching_blocks

    out: list[tuple[int, int]] = []
    for blk in matching_blocks(a, b):
        lone = blk.size == 1 and not any(ch.isalnum() for ch in a[blk.a_start])
        if lone and 0 < blk.a_start < len(a) - 1:
            continue
        out.extend((blk.a_start + k, blk.b_start + k) for k in range(blk.size))
    return out


def _lcs_flags(a: Sequence[str], b: Sequence[str]) -> tuple[list[bool], list[bool]]:
    """Which units of ``a`` and of ``b`` a common subsequence matches (:func:`_pairs`)."""
    fa, fb = [False] * len(a), [False] * len(b)
    for i, j in _pairs(a, b):
        fa[i] = fb[j] = True
    return fa, fb


def dropped(base: Units, side: Units, answer: Units) -> tuple[int, int]:
    """(tokens, lines) of ``side``'s edits against ``base`` that ``answer`` loses (module doc)."""
    b, s, r = base.texts, side.texts, answer.texts
    in_side = dict(_pairs(b, s))
    in_answer = dict(_pairs(b, r))
    anchors = sorted(i for i in in_side if i in in_answer)
    lost = 0
    side_lines: set[int] = set()
    base_lines: set[int] = set()

    def region(o0: int, o1: int, a0: int, a1: int, r0: int, r1: int) -> None:
        nonlocal lost
        o, a, rr = b[o0:o1], s[a0:a1], r[r0:r1]
        if a == o or rr == a:
            return
        ins_kept: list[bool] = []
        del_gone: list[bool] = []
        if rr != o:
            ins_kept, _ = _lcs_flags(a, rr)
            del_gone = [not f for f in _lcs_flags(o, rr)[0]]
        side_matched, _ = _lcs_flags(a, o)
        base_matched, _ = _lcs_flags(o, a)
        for k, matched in enumerate(side_matched):  # units the side inserted
            if not matched and not (ins_kept and ins_kept[k]):
                lost += 1
                side_lines.add(side.lines[a0 + k])
        for k, matched in enumerate(base_matched):  # base units the side removed
            if not matched and not (del_gone and del_gone[k]):
                lost += 1
                base_lines.add(base.lines[o0 + k])

    o = a = q = 0
    for i in anchors:
        j, k = in_side[i], in_answer[i]
        if not (i == o and j == a and k == q):
            region(o, i, a, j, q, k)
        o, a, q = i + 1, j + 1, k + 1
    region(o, len(b), a, len(s), q, len(r))
    return lost, max(len(side_lines), len(base_lines))


def _merges_to(base: str, side: str, answer: str, lang: str | None) -> bool:
    """Whether the token merge of ``side`` and ``answer`` (from ``base``) is clean and equals
    ``answer``: a witness that the answer already holds every edit of ``side``."""
    from splice.resolver.tokenize import tokenize
    from splice.resolver.tokenmerge import merge_tokens

    chunks = merge_tokens(tokenize(base, lang), tokenize(side, lang), tokenize(answer, lang))
    if any(isinstance(c, Conflict) for c in chunks):
        return False
    merged = "".join(u for c in chunks for u in c.units)  # type: ignore[union-attr]
    return units(merged, lang).texts == units(answer, lang).texts


def classify(conflict: Conflict, lines: Sequence[str], lang: str | None) -> Kept:
    """What the answer ``lines`` keeps of each side's edits in ``conflict``.

    Alignments of identical tokens can be ambiguous (``a`` then ``a a`` then ``b a``), so a
    side's edits also count as kept when a witness shows it: the hunk's clean token merge equals
    the answer (both kept), or the token merge of that side with the answer is clean and equals
    the answer (:func:`_merges_to`). Otherwise :func:`dropped` counts what is lost.
    """
    from splice.resolver.tokenmerge import merge_hunk

    b, o, t = "".join(conflict.base), "".join(conflict.ours), "".join(conflict.theirs)
    r = "".join(lines)
    base, ours, theirs, answer = units(b, lang), units(o, lang), units(t, lang), units(r, lang)
    chunks = merge_hunk(conflict, lang)
    if not any(isinstance(c, Conflict) for c in chunks):
        merged = "".join(u for c in chunks for u in c.units)  # type: ignore[union-attr]
        if units(merged, lang).texts == answer.texts:
            return Kept("both", 0, 0, 0, 0)
    od, ol = (0, 0) if _merges_to(b, o, r, lang) else dropped(base, ours, answer)
    td, tl = (0, 0) if _merges_to(b, t, r, lang) else dropped(base, theirs, answer)
    kind = KINDS[(od > 0) + 2 * (td > 0)]
    return Kept(kind, od, td, ol, tl)
