"""MergeBERT's primitive merge patterns: how a conflict's resolution is built from its sides.

A pattern maps a :class:`Conflict` (units are tokens, or lines for a hunk as a whole) to a unit
sequence. ``label`` finds every pattern that reproduces a known resolution, ignoring whitespace;
``expressible`` asks whether one pattern per token conflict of a line-level hunk (or one pattern
for the whole hunk) reproduces it. Exact definitions with examples: ``docs/patterns.md``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

from splice.resolver.chunks import Conflict, Stable
from splice.resolver.seqdiff import matching_pairs
from splice.resolver.tokenmerge import Tokenizer, merge_hunk


class Pattern(StrEnum):
    """How a conflict is resolved. ``X_MINUS_BASE`` keeps only X's own edits (see minus_base)."""

    OURS = "ours"
    THEIRS = "theirs"
    BASE = "base"
    OURS_THEIRS = "ours_theirs"
    THEIRS_OURS = "theirs_ours"
    OURS_MINUS_BASE = "ours_minus_base"
    THEIRS_MINUS_BASE = "theirs_minus_base"
    OURS_THEIRS_MINUS_BASE = "ours_theirs_minus_base"
    THEIRS_OURS_MINUS_BASE = "theirs_ours_minus_base"
    EMPTY = "empty"


#: Each pattern in words, for people (``--explain``, CI reports, the language server).
PHRASES: dict[str, str] = {
    "ours": "ours",
    "theirs": "theirs",
    "base": "base (both sides' edits undone)",
    "ours_theirs": "ours, then theirs",
    "theirs_ours": "theirs, then ours",
    "ours_minus_base": "ours, without what base had",
    "theirs_minus_base": "theirs, without what base had",
    "ours_theirs_minus_base": "ours then theirs, each without what base had",
    "theirs_ours_minus_base": "theirs then ours, each without what base had",
    "empty": "nothing (the region deleted)",
}


def phrase(pattern: str) -> str:
    """``pattern`` (a :class:`Pattern` value) in words; other text is returned as is."""
    return PHRASES.get(pattern, pattern)


def minus_base(side: Sequence[str], base: Sequence[str]) -> tuple[str, ...]:
    """The units of ``side`` that the diff base->side does *not* match to base, in order.

    That is, ``side`` without the units it shares with base under :func:`seqdiff.matching_pairs`
    (a longest common subsequence): only its inserted and replacing units remain. A unit equal to
    some base unit but not aligned with it (e.g. a second copy) is kept.
    """
    return _minus_base(tuple(side), tuple(base))


@lru_cache(maxsize=256)
def _minus_base(side: tuple[str, ...], base: tuple[str, ...]) -> tuple[str, ...]:
    matched = {j for _, j in matching_pairs(base, side)}
    return tuple(u for j, u in enumerate(side) if j not in matched)


_APPLY: dict[Pattern, Callable[[Conflict], tuple[str, ...]]] = {
    Pattern.OURS: lambda c: c.ours,
    Pattern.THEIRS: lambda c: c.theirs,
    Pattern.BASE: lambda c: c.base,
    Pattern.OURS_THEIRS: lambda c: c.ours + c.theirs,
    Pattern.THEIRS_OURS: lambda c: c.theirs + c.ours,
    Pattern.OURS_MINUS_BASE: lambda c: minus_base(c.ours, c.base),
    Pattern.THEIRS_MINUS_BASE: lambda c: minus_base(c.theirs, c.base),
    Pattern.OURS_THEIRS_MINUS_BASE: lambda c: (
        minus_base(c.ours, c.base) + minus_base(c.theirs, c.base)
    ),
    Pattern.THEIRS_OURS_MINUS_BASE: lambda c: (
        minus_base(c.theirs, c.base) + minus_base(c.ours, c.base)
    ),
    Pattern.EMPTY: lambda c: (),
}


def apply(pattern: Pattern, conflict: Conflict) -> tuple[str, ...]:
    """The unit sequence ``pattern`` produces for ``conflict``."""
    return tuple(_APPLY[Pattern(pattern)](conflict))


def squash(text: str) -> str:
    """``text`` with every whitespace character removed (the comparison key of ``label``)."""
    return "".join(text.split())


def outputs(conflict: Conflict) -> dict[str, list[Pattern]]:
    """Squashed output text -> the patterns producing it (in enum order)."""
    groups: dict[str, list[Pattern]] = {}
    for p in Pattern:
        groups.setdefault(squash("".join(apply(p, conflict))), []).append(p)
    return groups


def label(conflict: Conflict, resolution: str | Sequence[str]) -> list[Pattern]:
    """Every pattern whose output equals ``resolution`` once all whitespace is removed from both.

    ``resolution`` is text or a sequence of units (joined). Returns patterns in enum order; empty
    when none fits (e.g. the resolution adds new tokens).
    """
    text = resolution if isinstance(resolution, str) else "".join(resolution)
    return outputs(conflict).get(squash(text), [])


@dataclass(frozen=True)
class Expressibility:
    """Whether a line-level hunk's known resolution is reachable by patterns.

    ``token_combos``: choices of one pattern per token conflict (in order) whose rendering equals
    the resolution ignoring whitespace; ``[()]`` when the token merge has no conflict and matches.
    ``hunk_patterns``: patterns applied to the line-level conflict as a whole (lines as units) that
    match. ``complete`` is False when the token search was cut short by a cap.
    """

    n_token_conflicts: int
    token_combos: list[tuple[Pattern, ...]] = field(default_factory=list)
    hunk_patterns: list[Pattern] = field(default_factory=list)
    complete: bool = True

    @property
    def expressible(self) -> bool:
        return bool(self.token_combos or self.hunk_patterns)

    def __bool__(self) -> bool:
        return self.expressible


def expressible(
    line_conflict: Conflict,
    lang: str | None,
    resolution_text: str,
    *,
    max_combos: int = 1000,
    max_steps: int = 20_000,
    max_conflicts: int = 64,
    tokenizer: Tokenizer | None = None,
) -> Expressibility:
    """Search pattern choices for the token conflicts of a line-level hunk (whitespace-insensitive).

    The token merge's chunks are matched left to right against the squashed resolution: a Stable
    chunk must match literally, a Conflict may take any pattern whose squashed output matches at
    that point (patterns with equal outputs are alternatives of one branch). Dead ends are
    memoised, so the search is linear in practice; it stops after ``max_steps`` branch visits or
    ``max_combos`` combinations, and is skipped beyond ``max_conflicts`` token conflicts (then only
    the hunk-level patterns are tried and ``complete`` is False).
    """
    target = squash(resolution_text)
    hunk = label(line_conflict, resolution_text)
    chunks = merge_hunk(line_conflict, lang, tokenizer)
    n_conf = sum(isinstance(c, Conflict) for c in chunks)
    if n_conf > max_conflicts:
        return Expressibility(n_conf, [], hunk, complete=False)

    plan: list[str | list[tuple[str, list[Pattern]]]] = []
    for c in chunks:
        if isinstance(c, Stable):
            s = squash("".join(c.units))
            if plan and isinstance(plan[-1], str):
                plan[-1] += s
            else:
                plan.append(s)
        else:
            plan.append(list(outputs(c).items()))

    found: list[tuple[list[Pattern], ...]] = []
    dead: set[tuple[int, int]] = set()
    budget = [max_steps]
    cut = [False]

    def search(i: int, pos: int, picked: list[list[Pattern]]) -> bool:
        """True when some completion from (i, pos) matched."""
        if len(found) >= max_combos or budget[0] <= 0:
            cut[0] = True
            return False
        budget[0] -= 1
        if i == len(plan):
            if pos == len(target):
                found.append(tuple(picked))
                return True
            return False
        if (i, pos) in dead:
            return False
        item = plan[i]
        ok = False
        if isinstance(item, str):
            ok = target.startswith(item, pos) and search(i + 1, pos + len(item), picked)
        else:
            for out, pats in item:
                if target.startswith(out, pos):
                    picked.append(pats)
                    ok = search(i + 1, pos + len(out), picked) or ok
                    picked.pop()
        if not ok and not cut[0]:
            dead.add((i, pos))
        return ok

    search(0, 0, [])
    combos: list[tuple[Pattern, ...]] = []
    for groups in found:
        for combo in itertools.product(*groups):
            if len(combos) >= max_combos:
                cut[0] = True
                break
            combos.append(combo)
    return Expressibility(n_conf, combos, hunk, complete=not cut[0])
