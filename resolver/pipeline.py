"""The whole file merge: line merge, resolve each conflict hunk, render what remains.

This is what the git driver, ``splice resolve`` and the language server call.

Hunks are the line-level conflicts of ``git merge-file --diff3`` (the unit a resolver sees and
``splice eval`` measures). Resolved hunks are substituted into both sides, and the file is merged
again in the user's conflict style, so whatever stays unresolved is printed exactly as
``git merge-file`` would print it (and with nothing resolved the output is git's, byte for byte).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from splice.resolver.chunks import Conflict, Stable, split_lines
from splice.resolver.filecontext import FileContext
from splice.resolver.resolvers import Hunk, Resolution, Resolver, resolve_all

#: Lines of stable context given to a resolver on each side of a hunk.
CONTEXT_LINES = 64

#: Answers below this confidence are not applied unless a caller asks for a lower threshold
#: (``--min-confidence``; 0 applies every answer).
DEFAULT_MIN_CONFIDENCE = 0.85


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
    #: 0-based line where the hunk starts in the merge with every conflict taking ``ours``.
    ours_start: int
    resolution: Resolution | None = None
    #: The lines applied to the file, or None when the hunk kept its markers.
    applied: tuple[str, ...] | None = None
    #: Why a proposed resolution was not applied (e.g. "adds a parse error").
    rejected: str | None = None


@dataclass
class MergeOutcome:
    text: str
    hunks: list[HunkReport] = field(default_factory=list)
    #: Conflicts left in ``text`` (counted in the rendered style).
    conflicts_left: int = 0

    @property
    def clean(self) -> bool:
        return self.conflicts_left == 0

    @property
    def resolved(self) -> int:
        return sum(1 for h in self.hunks if h.applied is not None)


def find_hunks(
    base: list[str], ours: list[str], theirs: list[str], lang: str | None, path: str | None = None
) -> tuple[list, list[HunkReport]]:
    """The diff3 chunks and one report (with its context) per conflict hunk."""
    from splice.resolver.linemerge import diff_lines, merge_lines

    scripts = (diff_lines(base, ours), diff_lines(base, theirs))
    chunks = merge_lines(base, ours, theirs, style="diff3", scripts=scripts)
    context = FileContext(base, ours, theirs, chunks, scripts)
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
        reports.append(HunkReport(index=len(reports), hunk=hunk, ours_start=line))
        line += len(chunk.ours)
    return chunks, reports


def _replace(lines: list[str], start: int, length: int, new: tuple[str, ...]) -> str:
    return "".join(lines[:start]) + "".join(new) + "".join(lines[start + length :])


def effective_min_confidence(resolver: Resolver | None, min_confidence: float | None) -> float:
    """``min_confidence`` if given, else the resolver's own (e.g. a calibrated threshold), else
    :data:`DEFAULT_MIN_CONFIDENCE`."""
    if min_confidence is None:
        min_confidence = getattr(resolver, "min_confidence", None)
    return DEFAULT_MIN_CONFIDENCE if min_confidence is None else min_confidence


def decide(
    chunks: list,
    reports: list[HunkReport],
    resolver: Resolver,
    base: str,
    ours: str,
    theirs: str,
    *,
    lang: str | None,
    min_confidence: float | None = None,
) -> None:
    """Ask ``resolver`` about each hunk and record whether its answer is applied.

    A resolver with ``resolve_many(hunks)`` is asked once for all hunks of the file (one batched
    model run), others hunk by hunk. The candidates are the chosen answer, then the other
    suggestions in order; the first one whose confidence reaches ``min_confidence`` (None: the
    resolver's own ``min_confidence`` if it has one, e.g. a calibrated threshold, else
    :data:`DEFAULT_MIN_CONFIDENCE`) and that passes the syntax check is applied. The check: the
    merge with this hunk resolved (and every other conflict taking ours) may not have more
    tree-sitter parse errors than both the same merge taking ours here and the cleanest of the
    three inputs. Languages without a grammar skip the check, and so do resolvers whose
    ``checks_syntax`` is False (the baselines).
    """
    from splice.resolver.syntax import SyntaxCheck, error_count

    check = SyntaxCheck(base, ours, theirs, lang)
    checks_syntax = getattr(resolver, "checks_syntax", True) and check.lang is not None
    with_ours = _substitute(chunks, [], "ours")
    ours_errors: int | None = None
    min_confidence = effective_min_confidence(resolver, min_confidence)
    resolutions = resolve_all(resolver, [r.hunk for r in reports])
    for report, resolution in zip(reports, resolutions, strict=True):
        report.resolution = resolution
        chosen = resolution.chosen
        if chosen is None:
            continue
        if chosen.confidence < min_confidence:
            report.rejected = f"confidence {chosen.confidence:.2f} below {min_confidence:.2f}"
            continue
        tried = [chosen]
        tried += [s for s in resolution.suggestions if s.lines != chosen.lines]
        for candidate_answer in tried:
            if candidate_answer.confidence < min_confidence:
                continue
            if checks_syntax:
                n = len(report.hunk.conflict.ours)
                candidate = _replace(with_ours, report.ours_start, n, candidate_answer.lines)
                if check.adds_parse_error(candidate):
                    if ours_errors is None:
                        ours_errors = error_count("".join(with_ours), check.lang)
                    if error_count(candidate, check.lang) > ours_errors:
                        report.rejected = "adds a parse error"
                        continue
            report.applied = candidate_answer.lines
            report.rejected = None
            break


def resolve_hunks(
    base: str,
    ours: str,
    theirs: str,
    resolver: Resolver | None,
    *,
    lang: str | None,
    path: str | None = None,
    min_confidence: float | None = None,
) -> tuple[list, list[HunkReport]]:
    """Find the diff3 hunks of a file and :func:`decide` each with ``resolver``."""
    b, o, t = split_lines(base), split_lines(ours), split_lines(theirs)
    chunks, reports = find_hunks(b, o, t, lang, path)
    if resolver is not None and reports:
        decide(
            chunks, reports, resolver, base, ours, theirs, lang=lang, min_confidence=min_confidence
        )
    return chunks, reports


def _substitute(chunks: list, reports: list[HunkReport], side: str) -> list[str]:
    """The merged lines with each conflict replaced by its applied resolution or by one side."""
    out: list[str] = []
    it = iter(reports)
    for chunk in chunks:
        if isinstance(chunk, Stable):
            out.extend(chunk.units)
            continue
        report = next(it, None)
        if report is not None and report.applied is not None:
            out.extend(report.applied)
        else:
            out.extend(getattr(chunk, side))
    return out


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
        base, ours, theirs, resolver, lang=lang, path=path, min_confidence=min_confidence
    )
    if any(r.applied is not None for r in reports):
        new_ours = _substitute(chunks, reports, "ours")
        new_theirs = _substitute(chunks, reports, "theirs")
        final = merge_lines(split_lines(base), new_ours, new_theirs, style=style)
    else:
        final = merge_lines(split_lines(base), split_lines(ours), split_lines(theirs), style=style)
    left = sum(1 for c in final if isinstance(c, Conflict))
    text = render(
        final,
        style=style,
        marker_size=marker_size,
        labels=(labels.ours, labels.base, labels.theirs),
        base_lines=split_lines(base),
    )
    return MergeOutcome(text=text, hunks=reports, conflicts_left=left)
