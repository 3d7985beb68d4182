"""The one pipeline: every front end merges and resolves a file through this module.

Two ways in, one merge:

- :func:`merge_file` takes three texts (the git driver, the mergetool, ``splice ci``). Hunks are
  the line-level conflicts of ``git merge-file --diff3``; resolved hunks are substituted into both
  sides and the file is merged again in the user's conflict style, so whatever stays unresolved
  is printed exactly as ``git merge-file`` would (with nothing resolved: git's output byte for
  byte).
- :func:`merge_marked` takes a file that already holds conflict markers, and git's index stages
  when the file is unmerged (``splice resolve``, the language server, the pre-commit hook). It
  rebuilds the revisions, as mergiraf's ``solve`` does: each marked conflict becomes the same
  hunk the driver would have built (its base from the markers, or from the index when the
  markers have none; the file's three versions from the index when there, else from the
  markers), and the text outside the resolved conflicts is kept byte for byte.

Both then ask the resolver once for the file's hunks, add the structured merge's answer to each
(:mod:`splice.resolver.structured_stage`), and decide each with the one rule of
:mod:`splice.resolver.decision`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from splice.resolver.chunks import Chunk, Conflict, Stable, split_lines
from splice.resolver.decision import DEFAULT_MIN_CONFIDENCE, DecisionRule, Verdict, decide_hunk
from splice.resolver.filecontext import FileContext
from splice.resolver.keeps import Kept
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion, resolve_all

__all__ = [
    "CONTEXT_LINES",
    "DEFAULT_MIN_CONFIDENCE",
    "DecisionRule",
    "HunkReport",
    "Labels",
    "MergeOutcome",
    "decide",
    "find_hunks",
    "merge_file",
    "merge_marked",
]

#: Lines of stable context given to a resolver on each side of a hunk.
CONTEXT_LINES = 64


@dataclass(frozen=True)
class Labels:
    ours: str | None = None
    base: str | None = None
    theirs: str | None = None


@dataclass
class HunkReport:
    """What happened to one line-level conflict hunk."""

    index: int
    hunk: Hunk
    #: 0-based line where the hunk starts in the file with every conflict taking ``ours``.
    ours_start: int
    #: False when the hunk's base is unknown (merge-style markers outside git's index): the
    #: resolver is not asked; only both sides equal up to whitespace resolves it.
    base_known: bool = True
    resolution: Resolution | None = None
    #: The answer applied to the file, or None when the hunk kept its markers.
    answer: Suggestion | None = None
    #: What the applied answer keeps (when none is applied: the top answer's, if any).
    kept: Kept | None = None
    #: Why no answer was applied (e.g. "adds a parse error").
    rejected: str | None = None
    #: What the structured stage did: its answer's explanation, or why it abstained.
    structured: str | None = None

    @property
    def applied(self) -> tuple[str, ...] | None:
        """The lines applied to the file, or None when the hunk kept its markers."""
        return None if self.answer is None else tuple(self.answer.lines)

    @property
    def outcome(self) -> str:
        """One phrase for people: "kept both sides (...)" or why the markers stayed."""
        if self.answer is not None:
            return self.kept.describe() if self.kept is not None else "applied"
        return self.rejected or "no answer"


@dataclass
class MergeOutcome:
    text: str
    hunks: list[HunkReport] = field(default_factory=list)
    #: Conflict marker regions left in ``text``.
    conflicts_left: int = 0

    @property
    def clean(self) -> bool:
        return self.conflicts_left == 0

    @property
    def resolved(self) -> int:
        return sum(1 for h in self.hunks if h.answer is not None)

    def summary(self) -> str:
        """``2 of 3 conflicts resolved (both sides kept), 1 left`` and the like."""
        n, done = len(self.hunks), self.resolved
        kinds = sorted({h.kept.describe() for h in self.hunks if h.answer and h.kept})
        text = f"{done} of {n} conflict{'s' * (n != 1)} resolved"
        if kinds:
            text += f" ({'; '.join(kinds)})"
        if self.conflicts_left:
            text += f", {self.conflicts_left} left"
        return text


def same_up_to_whitespace(a: Sequence[str], b: Sequence[str]) -> bool:
    """Equal line by line once trailing whitespace and line endings are ignored."""
    return len(a) == len(b) and all(x.rstrip() == y.rstrip() for x, y in zip(a, b, strict=True))


def _reports(
    chunks: Sequence[Chunk],
    known: Sequence[bool],
    lang: str | None,
    path: str | None,
    context: FileContext,
) -> list[HunkReport]:
    """One report (with its hunk and context lines) per conflict of ``chunks``; ``known[i]``
    says whether conflict ``i`` has a real base."""
    reports: list[HunkReport] = []
    line = 0
    for i, chunk in enumerate(chunks):
        if isinstance(chunk, Stable):
            line += len(chunk.units)
            continue
        before: list[str] = []
        for prev in reversed(chunks[:i]):
            before[:0] = prev.units if isinstance(prev, Stable) else prev.ours
            if len(before) >= CONTEXT_LINES:
                break
        after: list[str] = []
        for nxt in chunks[i + 1 :]:
            after.extend(nxt.units if isinstance(nxt, Stable) else nxt.ours)
            if len(after) >= CONTEXT_LINES:
                break
        hunk = Hunk(
            conflict=chunk,
            lang=lang,
            before=tuple(before[-CONTEXT_LINES:]),
            after=tuple(after[:CONTEXT_LINES]),
            path=path,
            file=context,
        )
        k = len(reports)
        reports.append(HunkReport(k, hunk, ours_start=line, base_known=known[k]))
        line += len(chunk.ours)
    return reports


def find_hunks(
    base: list[str], ours: list[str], theirs: list[str], lang: str | None, path: str | None = None
) -> tuple[list[Chunk], list[HunkReport]]:
    """The diff3 chunks of three files and one report (with its context) per conflict hunk."""
    from splice.resolver.linemerge import diff_lines, merge_lines

    scripts = (diff_lines(base, ours), diff_lines(base, theirs))
    chunks = merge_lines(base, ours, theirs, style="diff3", scripts=scripts)
    context = FileContext(base, ours, theirs, chunks, scripts)
    n = sum(1 for c in chunks if isinstance(c, Conflict))
    return chunks, _reports(chunks, [True] * n, lang, path, context)


def _substitute(chunks: Sequence[Chunk], reports: Sequence[HunkReport], side: str) -> list[str]:
    """The merged lines with each conflict replaced by its applied answer or by one side."""
    out: list[str] = []
    it = iter(reports)
    for chunk in chunks:
        if isinstance(chunk, Stable):
            out.extend(chunk.units)
            continue
        report = next(it, None)
        if report is not None and report.answer is not None:
            out.extend(report.answer.lines)
        else:
            out.extend(getattr(chunk, side))
    return out


def decide(
    chunks: Sequence[Chunk],
    reports: list[HunkReport],
    resolver: Resolver,
    base: str,
    ours: str,
    theirs: str,
    *,
    lang: str | None,
    min_confidence: float | None = None,
    allow_discard: bool = False,
    rule: DecisionRule | None = None,
) -> None:
    """Ask ``resolver`` once about the file's hunks and record each :class:`Verdict`.

    ``base``, ``ours`` and ``theirs`` are the file's three versions (the syntax check's
    baseline); ``rule`` defaults to the resolver's own (:meth:`DecisionRule.for_resolver`, with
    ``min_confidence`` and ``allow_discard`` when given).
    """
    from splice.resolver.syntax import SyntaxCheck, error_count

    rule = rule or DecisionRule.for_resolver(
        resolver, min_confidence=min_confidence, allow_discard=allow_discard
    )
    check = SyntaxCheck(base, ours, theirs, lang)
    with_ours = _substitute(chunks, [], "ours")
    ours_errors: list[int] = []

    def parses_for(report: HunkReport):
        def parses(lines: Sequence[str]) -> bool:
            if check.lang is None:
                return True
            start, n = report.ours_start, len(report.hunk.conflict.ours)
            text = "".join(with_ours[:start]) + "".join(lines) + "".join(with_ours[start + n :])
            if not check.adds_parse_error(text):
                return True
            if not ours_errors:
                ours_errors.append(error_count("".join(with_ours), check.lang))
            return error_count(text, check.lang) <= ours_errors[0]

        return parses

    from splice.resolver.structured_stage import with_structured

    asked = [r for r in reports if r.base_known]
    answers = resolve_all(resolver, [r.hunk for r in asked]) if asked else []
    for report, resolution in zip(asked, answers, strict=True):
        resolution, report.structured = with_structured(report.hunk, resolution)
        report.resolution = resolution
        verdict: Verdict = decide_hunk(report.hunk, resolution, rule, parses_for(report))
        report.answer, report.kept = verdict.applied, verdict.kept
        report.rejected = None if verdict.applied is not None else verdict.reason


def _decide_unknown_bases(reports: Sequence[HunkReport]) -> None:
    """Conflicts without a base: only both sides equal up to whitespace resolves (ours kept)."""
    from splice.resolver.keeps import classify

    for report in reports:
        if report.base_known:
            continue
        c = report.hunk.conflict
        if same_up_to_whitespace(c.ours, c.theirs):
            report.answer = Suggestion(tuple(c.ours), 1.0, "both sides equal up to whitespace")
            report.kept = classify(Conflict(c.ours, c.ours, c.theirs), c.ours, report.hunk.lang)
        else:
            report.rejected = "no base (merge-style markers and no index stages)"


def resolve_hunks(
    base: str,
    ours: str,
    theirs: str,
    resolver: Resolver | None,
    *,
    lang: str | None,
    path: str | None = None,
    min_confidence: float | None = None,
    allow_discard: bool = False,
    rule: DecisionRule | None = None,
) -> tuple[list[Chunk], list[HunkReport]]:
    """Find the diff3 hunks of a file and :func:`decide` each with ``resolver``."""
    b, o, t = split_lines(base), split_lines(ours), split_lines(theirs)
    chunks, reports = find_hunks(b, o, t, lang, path)
    if resolver is not None and reports:
        decide(
            chunks,
            reports,
            resolver,
            base,
            ours,
            theirs,
            lang=lang,
            min_confidence=min_confidence,
            allow_discard=allow_discard,
            rule=rule,
        )
    return chunks, reports


def merge_file(
    base: str,
    ours: str,
    theirs: str,
    resolver: Resolver | None,
    *,
    path: str | None = None,
    lang: str | None = None,
    style: str = "merge",
    marker_size: int = 7,
    labels: Labels | None = None,
    min_confidence: float | None = None,
    allow_discard: bool = False,
    rule: DecisionRule | None = None,
) -> MergeOutcome:
    """Merge three versions of a file, resolving what ``resolver`` is sure about.

    With nothing resolved the text equals ``git merge-file -p`` in ``style``; resolved hunks are
    replaced by their resolution and the remaining conflicts keep git's markers.
    """
    from splice.resolver.languages import language_for_path
    from splice.resolver.linemerge import merge_lines
    from splice.resolver.markers import render

    if lang is None:
        lang = language_for_path(path)
    labels = labels or Labels()
    chunks, reports = resolve_hunks(
        base,
        ours,
        theirs,
        resolver,
        lang=lang,
        path=path,
        min_confidence=min_confidence,
        allow_discard=allow_discard,
        rule=rule,
    )
    # the conflicts left are cut as git cuts them, whatever was resolved around them
    done = {r.index: r.answer.lines for r in reports if r.answer is not None}
    b, o, t = split_lines(base), split_lines(ours), split_lines(theirs)
    context = reports[0].hunk.file if reports else None
    scripts = context.scripts if context is not None else None
    final = merge_lines(b, o, t, style=style, scripts=scripts, resolved=done)
    left = sum(1 for c in final if isinstance(c, Conflict))
    text = render(
        final,
        style=style,
        marker_size=marker_size,
        labels=(labels.ours, labels.base, labels.theirs),
        base_lines=split_lines(base),
    )
    return MergeOutcome(text=text, hunks=reports, conflicts_left=left)


# --------------------------------------------------------------------------- marked files


def bases_from_stages(
    conflicts: Sequence[Conflict | object], stages: tuple[str, str, str]
) -> dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]]:
    """The base of each conflict that merging git's index stages (base, ours, theirs) again
    produces, keyed by its (ours, theirs) lines, in either conflict style."""
    from splice.resolver.linemerge import merge_lines

    base, ours, theirs = (split_lines(t) for t in stages)
    found: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
    for style in ("diff3", "merge"):
        for chunk in merge_lines(base, ours, theirs, style=style):
            if isinstance(chunk, Conflict):
                found.setdefault((chunk.ours, chunk.theirs), chunk.base)
    return found


@dataclass
class MarkedFile:
    """A file with conflict markers rebuilt as a merge: its chunks (one per text piece and
    conflict), which conflicts have a known base, and the file's three versions."""

    parsed: object  # splice.resolver.markers.ParsedFile
    chunks: list[Chunk]
    known: list[bool]
    versions: tuple[list[str], list[str], list[str]]
    #: True when the versions are git's index stages (else the views the markers give).
    from_index: bool


def rebuild(text: str, stages: tuple[str, str, str] | None = None) -> MarkedFile:
    """The merge that ``text``'s markers show (module doc): bases from the markers, else from
    merging ``stages`` again; versions from ``stages`` when given, else the file seen from each
    side (a conflict with no known base counts as ours in the base view)."""
    from splice.resolver.markers import parse

    parsed = parse(text)
    marked = parsed.conflicts
    bases = bases_from_stages(marked, stages) if stages else {}
    chunks: list[Chunk] = []
    known: list[bool] = []
    views: tuple[list[str], list[str], list[str]] = ([], [], [])
    for piece in parsed.pieces:
        if isinstance(piece, str):
            lines = split_lines(piece)
            chunks.append(Stable(tuple(lines)))
            for view in views:
                view.extend(lines)
            continue
        base = piece.base if piece.base is not None else bases.get((piece.ours, piece.theirs))
        known.append(base is not None)
        chunks.append(Conflict(tuple(base or ()), piece.ours, piece.theirs))
        views[0].extend(base if base is not None else piece.ours)
        views[1].extend(piece.ours)
        views[2].extend(piece.theirs)
    if stages is not None:
        versions = (split_lines(stages[0]), split_lines(stages[1]), split_lines(stages[2]))
        return MarkedFile(parsed, chunks, known, versions, True)
    return MarkedFile(parsed, chunks, known, views, False)


def merge_marked(
    text: str,
    resolver: Resolver | None,
    *,
    path: str | None = None,
    lang: str | None = None,
    stages: tuple[str, str, str] | None = None,
    min_confidence: float | None = None,
    allow_discard: bool = False,
    rule: DecisionRule | None = None,
) -> MergeOutcome:
    """Resolve what ``resolver`` is sure about among the conflicts marked in ``text`` (module
    doc); everything else, markers included, is kept byte for byte."""
    from splice.resolver.languages import language_for_path
    from splice.resolver.markers import ParsedConflict

    if lang is None:
        lang = language_for_path(path)
    marked = rebuild(text, stages)
    if not any(isinstance(c, Conflict) for c in marked.chunks):
        return MergeOutcome(text)
    base, ours, theirs = marked.versions
    context = FileContext(base, ours, theirs)
    reports = _reports(marked.chunks, marked.known, lang, path, context)
    if resolver is not None:
        # the syntax baseline: the file's three versions (git's, when the index has them)
        decide(
            marked.chunks,
            reports,
            resolver,
            "".join(base),
            "".join(ours),
            "".join(theirs),
            lang=lang,
            min_confidence=min_confidence,
            allow_discard=allow_discard,
            rule=rule,
        )
    _decide_unknown_bases(reports)
    out: list[str] = []
    it = iter(reports)
    left = 0
    for piece in marked.parsed.pieces:  # type: ignore[attr-defined]
        if not isinstance(piece, ParsedConflict):
            out.append(piece)
            continue
        report = next(it)
        if report.answer is not None:
            out.append("".join(report.answer.lines))
        else:
            out.append(piece.text())
            left += 1
    return MergeOutcome("".join(out), reports, left)
