"""One document version's conflicts, where they are, and the resolver's suggestions for each.

The markers are parsed with :func:`splice.resolver.markers.parse` (any style and marker size;
malformed or half-deleted regions stay plain text), and each conflict becomes a hunk the way
``splice resolve`` builds them (:mod:`splice.resolve_files`): the conflict with its base, and the
lines around it in the file seen from ours as context. A conflict without a base section
(merge-style markers) borrows it from git's index when the file is unmerged there; otherwise the
resolver is not asked, and the only suggestion is ours when both sides agree up to whitespace.

An :class:`Analysis` is computed once per document version; every request reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

from lsprotocol import types
from splice.lsp.positions import LineIndex

if TYPE_CHECKING:
    from splice.lsp.engine import Engine
    from splice.resolver.chunks import Conflict
    from splice.resolver.markers import ParsedConflict
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
        """The top suggestion when it reaches the threshold."""
        top = self.top
        return top if top is not None and top.confidence >= self.threshold else None


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
        """The confident suggestions that add no parse error (checked as the pipeline does:
        the file with this conflict resolved and the others taking ours, against the cleanest
        of the three sides)."""
        from splice.resolver.syntax import SyntaxCheck

        check = SyntaxCheck(*self.sides, self.lang)
        ours_pieces = self._ours_pieces()
        out = []
        for view in self.conflicts:
            chosen = view.confident
            if chosen is None:
                continue
            if check.lang is not None:
                pieces = list(ours_pieces)
                pieces[2 * view.index + 1] = chosen.text
                if check.adds_parse_error("".join(pieces)):
                    continue
            out.append((view, chosen))
        return out

    def _ours_pieces(self) -> list[str]:
        """Alternating text between conflicts and each conflict's ours (2n + 1 pieces)."""
        pieces, done = [], 0
        for view in self.conflicts:
            pieces += [self.text[done : view.start], "".join(view.marked.ours)]
            done = view.end
        pieces.append(self.text[done:])
        return pieces


def _split(text: str) -> list[str]:
    from splice.resolver.chunks import split_lines

    return split_lines(text)


def pattern_name(conflict: Conflict, lines: tuple[str, ...]) -> str:
    """The first merge pattern producing exactly ``lines``, else "token-level merge"."""
    from splice.resolver.patterns import Pattern, apply

    for pattern in Pattern:
        if apply(pattern, conflict) == lines:
            return pattern.value
    return TOKEN_MERGE


def candidates(conflict: Conflict, resolution: Resolution) -> tuple[Candidate, ...]:
    """The resolver's chosen answer, then its other suggestions: distinct, best first, top 3."""
    seen: set[tuple[str, ...]] = set()
    out: list[Candidate] = []
    ranked = [resolution.chosen] if resolution.chosen is not None else []
    ranked += sorted(resolution.suggestions, key=lambda s: -s.confidence)
    for s in ranked:
        lines = tuple(s.lines)
        if lines in seen:
            continue
        seen.add(lines)
        name = pattern_name(conflict, lines)
        out.append(Candidate(name, lines, float(s.confidence), s.explanation))
        if len(out) == TOP_K:
            break
    return tuple(out)


def analyze(
    text: str,
    *,
    uri: str,
    version: int | None,
    path: str | None,
    engine: Engine | None,
    threshold: float,
    stages: Callable[[], tuple[str, str, str] | None] | None = None,
    encoding: str = types.PositionEncodingKind.Utf16,
) -> Analysis:
    """Find the conflicts of ``text`` and ask ``engine`` (None: nobody) about each.

    ``stages`` gives the file's base, ours and theirs in git's index (asked only when a conflict
    has no base section).
    """
    from splice.resolver.chunks import Conflict
    from splice.resolver.filecontext import FileContext
    from splice.resolver.languages import language_for_path
    from splice.resolver.markers import ParsedConflict, parse
    from splice.resolver.resolvers import Hunk

    from splice.resolve_files import CONTEXT_LINES, index_bases, same_up_to_whitespace

    lang = language_for_path(path)
    index = LineIndex(text, encoding)
    result = Analysis(uri, version, text, lang, index, threshold)
    parsed = parse(text)
    marked = parsed.conflicts
    if not marked:
        result.sides = (text, text, text)
        return result
    found = stages() if stages and any(c.base is None for c in marked) else None
    bases = index_bases(marked, found) if found else {}

    views: dict[str, list[str]] = {"ours": [], "base": [], "theirs": []}
    spans: list[tuple[int, int]] = []  # each conflict's lines in the ours view
    offset = 0
    for piece in parsed.pieces:
        if not isinstance(piece, ParsedConflict):
            for view in views.values():
                view.extend(_split(piece))
            offset += len(piece)
            continue
        i = len(result.conflicts)
        size = len(piece.text())
        base = piece.base if piece.base is not None else bases.get(i)
        begin = len(views["ours"])
        views["ours"].extend(piece.ours)
        views["base"].extend(base if base is not None else piece.ours)
        views["theirs"].extend(piece.theirs)
        spans.append((begin, len(views["ours"])))
        result.conflicts.append(
            ConflictView(
                index=i,
                marked=piece,
                start=offset,
                end=offset + size,
                range=index.range(offset, offset + size),
                first_line=index.line(offset),
                last_line=index.line(offset + size - 1),
                base=base,
                base_from_index=piece.base is None and base is not None,
                threshold=threshold,
            )
        )
        offset += size
    result.sides = ("".join(views["base"]), "".join(views["ours"]), "".join(views["theirs"]))

    ours_view = views["ours"]
    context = FileContext(views["base"], views["ours"], views["theirs"])
    asked: list[ConflictView] = []
    for view, (begin, stop) in zip(result.conflicts, spans, strict=True):
        if view.base is None:
            if same_up_to_whitespace(view.marked.ours, view.marked.theirs):
                why = "both sides are equal up to whitespace"
                view.candidates = (Candidate("ours", view.marked.ours, 1.0, why),)
            continue
        view.hunk = Hunk(
            conflict=Conflict(tuple(view.base), view.marked.ours, view.marked.theirs),
            lang=lang,
            before=tuple(ours_view[max(0, begin - CONTEXT_LINES) : begin]),
            after=tuple(ours_view[stop : stop + CONTEXT_LINES]),
            path=path,
            file=context,
        )
        asked.append(view)
    if engine is not None and asked:
        answers = engine.resolve([v.hunk for v in asked if v.hunk is not None])
        for view, answer in zip(asked, answers, strict=True):
            view.candidates = candidates(view.conflict, answer)
    return result
