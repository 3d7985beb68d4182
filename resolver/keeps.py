"""PROVISIONAL (lead's stand-in until the real module lands): what an answer keeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from splice.resolver.chunks import Conflict


@dataclass(frozen=True)
class Kept:
    kind: str
    ours_dropped: int = 0
    theirs_dropped: int = 0
    ours_lines: int = 0
    theirs_lines: int = 0

    @property
    def keeps_both(self) -> bool:
        return self.kind == "both"

    def describe(self) -> str:
        if self.kind == "both":
            return "both sides kept"
        parts = []
        if self.ours_dropped:
            parts.append(f"dropped ours: {self.ours_lines} lines")
        if self.theirs_dropped:
            parts.append(f"dropped theirs: {self.theirs_lines} lines")
        return ", ".join(parts)


@dataclass(frozen=True)
class Thresholds:
    keeps_both: float | None
    drops_side: float | None


def _keeps(base: Sequence[str], side: Sequence[str], lines: Sequence[str], lang) -> bool:
    from splice.resolver.tokenmerge import merge_hunk

    chunks = merge_hunk(Conflict(tuple(base), tuple(side), tuple(lines)), lang)
    if any(isinstance(c, Conflict) for c in chunks):
        return False
    merged = "".join(u for c in chunks for u in c.units)
    return "".join(merged.split()) == "".join("".join(lines).split())


def classify(conflict: Conflict, lines: Sequence[str], lang: str | None) -> Kept:
    o = _keeps(conflict.base, conflict.ours, lines, lang)
    t = _keeps(conflict.base, conflict.theirs, lines, lang)
    kind = (
        "both"
        if o and t
        else "drops-both"
        if not o and not t
        else "drops-ours"
        if not o
        else "drops-theirs"
    )
    return Kept(
        kind,
        int(not o),
        int(not t),
        0 if o else len(conflict.ours),
        0 if t else len(conflict.theirs),
    )


def required_confidence(kept: Kept, thresholds: Thresholds, **features) -> float | None:
    return thresholds.keeps_both if kept.keeps_both else thresholds.drops_side
