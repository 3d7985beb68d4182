"""One document version's conflicts, where they are, and the resolver's suggestions for each.

The document goes through the one pipeline (:func:`splice.resolver.pipeline.merge_marked`), as
``splice resolve`` and the driver do: the markers are parsed (any style and marker size; malformed
or half-deleted regions stay plain text), each conflict becomes the hunk the driver would have
built (a base from the markers or from git's index), and the one decision rule says which answer
is applied. Fix-all therefore writes exactly what ``splice resolve`` writes for the same file.

An :class:`Analysis` is computed once per document version; every request reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from lsprotocol import types
from splice.lsp.positions import LineIndex
from splice.resolver.resolvers import WRITTEN, WRITTEN_SOURCE, Resolver
from splice.resolver.structured_stage import STRUCTURED, STRUCTURED_SOURCE

if TYPE_CHECKING:
    from splice.lsp.engine import Engine
    from splice.resolver.chunks import Conflict
    from splice.resolver.markers import ParsedConflict
    from splice.resolver.pipeline import HunkReport
    from splice.resolver.resolvers import Hunk, Resolution

#: Suggestions kept per conflict.
TOP_K = 3
#: The name of a suggestion no single pattern produces.
TOKEN_MERGE = "token-level merge"


@dataclass(frozen=True)
class Candidate:
    """One suggested resolution of a conflict."""

    name: str
    lines: tuple[str, ...]
    confidence: float
    explanation: str = ""
    #: What it keeps of the two sides' edits, in words ("both sides kept", "drops theirs: ...").
    kept: str = ""

    @property
    def text(self) -> str:
        return "".join(self.lines)


@dataclass
class ConflictView:
    """A conflict of the document: its markers, place, base and suggestions."""

    index: int
    marked: ParsedConflict
    #: Character offsets of the region, from the opening marker to the end of the closing one.
    start: int
    end: int
    range: types.Range
    #: LSP lines of the opening and of the closing marker.
    first_line: int
    last_line: int
    #: The base lines: from the markers, or from git's index (``base_from_index``), or None.
    base: tuple[str, ...] | None
    base_from_index: bool = False
    hunk: Hunk | None = None
    candidates: tuple[Candidate, ...] = ()
    threshold: float = 1.0
    #: The answer the decision rule applies (one of ``candidates``), None when markers stay.
    applied: Candidate | None = None
    #: What the applied (else the top) answer keeps, in words ("both sides kept").
    kept: str = ""
    #: Why nothing is applied, when nothing is.
    reason: str = ""

    @property
    def conflict(self) -> Conflict:
        """The line-level conflict (an empty base when unknown)."""
        from splice.resolver.chunks import Conflict

        return Conflict(self.base or (), self.marked.ours, self.marked.theirs)

    @property
    def top(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def confident(self) -> Candidate | None:
        """The answer the decision rule applies (None: the conflict keeps its markers)."""
        return self.applied


@dataclass
class Analysis:
    """Everything the server answers from, for one version of one document."""

    uri: str
    version: int | None
    text: str
    lang: str | None
    index: LineIndex
    threshold: float
    conflicts: list[ConflictView] = field(default_factory=list)
    #: The whole file with every conflict replaced by base (ours if unknown), ours and theirs.
    sides: tuple[str, str, str] = ("", "", "")

    def overlapping(self, first: int, last: int) -> list[ConflictView]:
        """Conflicts with a line in LSP lines ``first..last`` (inclusive)."""
        return [c for c in self.conflicts if c.first_line <= last and c.last_line >= first]

    def at(self, line: int) -> ConflictView | None:
        """The conflict holding LSP line ``line``, if any."""
        found = self.overlapping(line, line)
        return found[0] if found else None

    def with_replaced(self, view: ConflictView, text: str) -> str:
        """The document with ``view``'s region replaced by ``text``."""
        return self.text[: view.start] + text + self.text[view.end :]

    @cached_property
    def fix_all(self) -> list[tuple[ConflictView, Candidate]]:
        """The answers the decision rule applies (as ``splice resolve`` would), in order."""
        return [(v, v.applied) for v in self.conflicts if v.applied is not None]


def _split(text: str) -> list[str]:
    from splice.resolver.chunks import split_lines

    return split_lines(text)


def pattern_name(conflict: Conflict, lines: tuple[str, ...]) -> str:
    """The first merge pattern producing exactly ``lines``, in words, else "token-level merge"."""
    from splice.resolver.patterns import Pattern, apply, phrase

    for pattern in Pattern:
        if apply(pattern, conflict) == lines:
            return phrase(pattern.value)
    return TOKEN_MERGE


def candidates(
    conflict: Conflict, resolution: Resolution, lang: str | None = None
) -> tuple[Candidate, ...]:
    """The resolver's chosen answer, then its other suggestions: distinct, best first, top 3,
    each saying what it keeps."""
    from splice.resolver.keeps import classify

    seen: set[tuple[str, ...]] = set()
    out: list[Candidate] = []
    ranked = [resolution.chosen] if resolution.chosen is not None else []
    ranked += sorted(resolution.suggestions, key=lambda s: -s.confidence)
    for s in ranked:
        lines = tuple(s.lines)
        if lines in seen:
            continue
        seen.add(lines)
        names = {WRITTEN_SOURCE: WRITTEN, STRUCTURED_SOURCE: STRUCTURED}
        name = names.get(s.source) or pattern_name(conflict, lines)
        kept = classify(conflict, lines, lang).describe() if conflict.base else ""
        out.append(Candidate(name, lines, float(s.confidence), s.explanation, kept))
        if len(out) == TOP_K:
            break
    return tuple(out)


def view_kept(report: HunkReport) -> str:
    return report.kept.describe() if report.kept is not None else ""


class _Cached(Resolver):
    """The engine's resolver behind its answer cache, for the pipeline."""

    def __init__(self, engine: Engine) -> None:
        inner = engine.resolver
        self.engine = engine
        self.name = engine.name
        self.min_confidence = inner.min_confidence
        self.discard_min_confidence = inner.discard_min_confidence
        self.checks_syntax = inner.checks_syntax
        self.thresholds = inner.thresholds

    def resolve_many(self, hunks: Sequence[Hunk]) -> list[Resolution]:
        return self.engine.resolve(hunks)

    def resolve(self, hunk: Hunk) -> Resolution:
        return self.engine.resolve([hunk])[0]


def analyze(
    text: str,
    *,
    uri: str,
    version: int | None,
    path: str | None,
    engine: Engine | None,
    min_confidence: float | None = None,
    stages: Callable[[], tuple[str, str, str] | None] | None = None,
    encoding: str = types.PositionEncodingKind.Utf16,
    allow_discard: bool = False,
) -> Analysis:
    """Find the conflicts of ``text`` and decide each through the pipeline with ``engine``
    (None: nobody is asked).

    ``stages`` gives the file's base, ours and theirs in git's index; ``min_confidence`` is the
    user's ``confidenceThreshold`` (None: the resolver's calibrated thresholds, as the driver
    uses them); answers that drop a side need the resolver's stricter threshold, or are only
    suggested, unless ``allow_discard``.
    """
    from splice.resolver.languages import language_for_path
    from splice.resolver.markers import ParsedConflict
    from splice.resolver.pipeline import DecisionRule, merge_marked

    lang = language_for_path(path)
    index = LineIndex(text, encoding)
    resolver = _Cached(engine) if engine is not None else None
    rule = DecisionRule.for_resolver(
        resolver, min_confidence=min_confidence, allow_discard=allow_discard
    )
    result = Analysis(uri, version, text, lang, index, rule.min_confidence)
    from splice.resolver.markers import parse

    parsed = parse(text)
    if not parsed.conflicts:
        result.sides = (text, text, text)
        return result
    found = stages() if stages else None
    outcome = merge_marked(text, resolver, path=path, lang=lang, stages=found, rule=rule)
    from splice.resolver.pipeline import rebuild

    base_v, ours_v, theirs_v = rebuild(text).versions
    result.sides = ("".join(base_v), "".join(ours_v), "".join(theirs_v))
    offset = 0
    reports = iter(outcome.hunks)
    for piece in parsed.pieces:
        if not isinstance(piece, ParsedConflict):
            offset += len(piece)
            continue
        report = next(reports)
        size = len(piece.text())
        known = report.base_known
        view = ConflictView(
            index=len(result.conflicts),
            marked=piece,
            start=offset,
            end=offset + size,
            range=index.range(offset, offset + size),
            first_line=index.line(offset),
            last_line=index.line(offset + size - 1),
            base=report.hunk.conflict.base if known else None,
            base_from_index=piece.base is None and known,
            hunk=report.hunk if known else None,
            threshold=rule.min_confidence,
        )
        if report.resolution is not None:
            view.candidates = candidates(view.conflict, report.resolution, lang)
        answer = report.answer
        if answer is not None:
            lines = tuple(answer.lines)
            match = [c for c in view.candidates if c.lines == lines]
            if match:
                view.applied = match[0]
            else:
                why = answer.explanation
                view.applied = Candidate("ours", lines, answer.confidence, why, view_kept(report))
                view.candidates = (view.applied, *view.candidates)[:TOP_K]
        view.kept = view_kept(report)
        view.reason = report.outcome
        result.conflicts.append(view)
        offset += size
    return result
