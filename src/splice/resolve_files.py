"""``splice resolve``: resolve the conflict markers already in files (after an ordinary merge).

Each conflict with a base section (diff3 or zdiff3 markers) goes to the resolver as a hunk, with
the lines around it as context; an answer is applied when its confidence reaches
``--min-confidence`` and it adds no parse error that none of the three file versions had.

A conflict in merge style (no base section) has no base in the file. When the file is unmerged in
its repository, git's index still holds the three versions: they are merged again and a conflict
with the very same ours and theirs lines lends its base, so the conflict is resolved as above.
Otherwise only the one resolution that is safe without a base is applied: both sides are the
same text up to trailing whitespace and line endings (ours is kept). Rules such as "one side's
lines all appear, in order, in the other's" are not used: without the base they cannot tell an
addition on one side from a deletion on the other, and would bring deleted lines back.

Text outside the resolved conflicts is kept byte for byte.
"""

from __future__ import annotations

import difflib
import os
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from splice.config import DEFAULT_RESOLVER

if TYPE_CHECKING:
    from splice.resolver.markers import ParsedConflict
    from splice.resolver.resolvers import Resolver, Suggestion

#: Lines of context given to the resolver on each side of a conflict (as the pipeline does).
CONTEXT_LINES = 64


@dataclass
class ConflictReport:
    """What happened to one conflict: its first line, whether it was resolved and why not, and
    the resolver's top suggestions (for ``--explain`` and the language server)."""

    line: int
    applied: bool
    reason: str
    suggestions: tuple[Suggestion, ...] = ()


@dataclass
class FileOutcome:
    """The text after resolving, and how many of the file's conflicts were resolved."""

    text: str
    total: int = 0
    resolved: int = 0
    reports: list[ConflictReport] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return self.resolved == self.total


def same_up_to_whitespace(a: tuple[str, ...], b: tuple[str, ...]) -> bool:
    """Equal line by line once trailing whitespace and line endings are ignored."""
    return len(a) == len(b) and all(x.rstrip() == y.rstrip() for x, y in zip(a, b, strict=True))


def _lines(text: str) -> list[str]:
    from splice.resolver.chunks import split_lines

    return split_lines(text)


def _adds_parse_error(candidate: str, base: str, ours: str, theirs: str, lang: str | None) -> bool:
    """The syntax check of the pipeline (whichever name the syntax module gives it)."""
    from splice.resolver import syntax

    check = getattr(syntax, "adds_parse_error", None)
    if check is not None:
        return check(candidate, base, ours, theirs, lang)
    return syntax.SyntaxGuard(base, ours, theirs, lang).adds_error(candidate)


def index_bases(
    conflicts: list[ParsedConflict], stages: tuple[str, str, str]
) -> dict[int, tuple[str, ...]]:
    """Bases of merge-style conflicts, found by merging the index's three versions again.

    ``stages`` are the base, ours and theirs texts (stages 1, 2, 3); a conflict gets the base of
    the re-merged conflict with exactly its ours and theirs lines.
    """
    from splice.resolver.chunks import Conflict
    from splice.resolver.linemerge import merge_lines

    base, ours, theirs = (_lines(t) for t in stages)
    found: dict[tuple[tuple[str, ...], tuple[str, ...]], tuple[str, ...]] = {}
    for style in ("merge", "diff3"):
        for chunk in merge_lines(base, ours, theirs, style=style):
            if isinstance(chunk, Conflict):
                found.setdefault((chunk.ours, chunk.theirs), chunk.base)
    return {
        i: found[(c.ours, c.theirs)]
        for i, c in enumerate(conflicts)
        if c.base is None and (c.ours, c.theirs) in found
    }


def resolve_text(
    text: str,
    resolver: Resolver | None,
    *,
    path: str | None = None,
    lang: str | None = None,
    min_confidence: float | None = None,
    stages: tuple[str, str, str] | None = None,
) -> FileOutcome:
    """Resolve what can be resolved among the conflicts marked in ``text``."""
    from splice.resolver.chunks import Conflict
    from splice.resolver.filecontext import FileContext
    from splice.resolver.languages import language_for_path
    from splice.resolver.markers import parse
    from splice.resolver.pipeline import effective_min_confidence
    from splice.resolver.resolvers import Hunk, Resolution, resolve_all

    if lang is None:
        lang = language_for_path(path)
    parsed = parse(text)
    conflicts = parsed.conflicts
    if not conflicts:
        return FileOutcome(text)
    bases = index_bases(conflicts, stages) if stages else {}

    # The file seen from each side: every conflict replaced by that side (base: ours if unknown).
    views: dict[str, list[str]] = {"ours": [], "theirs": [], "base": []}
    spans: list[tuple[int, int]] = []  # each conflict's lines in the ours view
    k = 0
    for piece in parsed.pieces:
        if isinstance(piece, str):
            for view in views.values():
                view.extend(_lines(piece))
            continue
        start = len(views["ours"])
        views["ours"].extend(piece.ours)
        views["theirs"].extend(piece.theirs)
        base = piece.base if piece.base is not None else bases.get(k, piece.ours)
        views["base"].extend(base)
        spans.append((start, len(views["ours"])))
        k += 1
    ours_view = views["ours"]
    full = {name: "".join(view) for name, view in views.items()}

    threshold = effective_min_confidence(resolver, min_confidence)
    context = FileContext(views["base"], views["ours"], views["theirs"])
    hunks: dict[int, Hunk] = {}
    for i, c in enumerate(conflicts):
        base = c.base if c.base is not None else bases.get(i)
        if base is not None:
            start, end = spans[i]
            hunks[i] = Hunk(
                conflict=Conflict(tuple(base), c.ours, c.theirs),
                lang=lang,
                before=tuple(ours_view[max(0, start - CONTEXT_LINES) : start]),
                after=tuple(ours_view[end : end + CONTEXT_LINES]),
                path=path,
                file=context,
            )
    answers: dict[int, Resolution] = {}
    if resolver is not None and hunks:
        answers = dict(zip(hunks, resolve_all(resolver, list(hunks.values())), strict=True))
    applied: dict[int, tuple[str, ...]] = {}
    reports: list[ConflictReport] = []
    for i, c in enumerate(conflicts):
        report = ConflictReport(c.start + 1, False, "")
        reports.append(report)
        base = c.base if c.base is not None else bases.get(i)
        if base is None:
            if same_up_to_whitespace(c.ours, c.theirs):
                applied[i] = c.ours
                report.applied, report.reason = True, "both sides equal up to whitespace"
            else:
                report.reason = "no base section and no index stages: only equal sides resolve"
            continue
        if resolver is None:
            report.reason = "no resolver"
            continue
        start, end = spans[i]
        resolution = answers[i]
        report.suggestions = tuple(resolution.suggestions)
        chosen = resolution.chosen
        if chosen is None:
            report.reason = "no suggestion"
            continue
        tried = [chosen, *(s for s in resolution.suggestions if s.lines != chosen.lines)]
        report.reason = f"confidence {chosen.confidence:.2f} below {threshold:.2f}"
        for answer in tried:
            if answer.confidence < threshold:
                continue
            candidate = "".join(ours_view[:start]) + "".join(answer.lines)
            candidate += "".join(ours_view[end:])
            if _adds_parse_error(candidate, full["base"], full["ours"], full["theirs"], lang):
                report.reason = "adds a parse error"
                continue
            applied[i] = tuple(answer.lines)
            report.applied = True
            report.reason = f"applied: {answer.explanation} (confidence {answer.confidence:.2f})"
            break

    out: list[str] = []
    k = 0
    for piece in parsed.pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        out.append("".join(applied[k]) if k in applied else piece.text())
        k += 1
    return FileOutcome("".join(out), len(conflicts), len(applied), reports)


def explain(path: str, outcome: FileOutcome, top_k: int = 3) -> str:
    """Human-readable lines: each conflict, what happened, and its top suggestions."""
    lines = []
    for r in outcome.reports:
        state = "resolved" if r.applied else "kept markers"
        lines.append(f"{path}:{r.line}: {state}: {r.reason}")
        for k, s in enumerate(r.suggestions[:top_k], start=1):
            head = s.lines[0].rstrip("\r\n") if s.lines else "(empty)"
            more = f" (+{len(s.lines) - 1} lines)" if len(s.lines) > 1 else ""
            lines.append(f"  {k}. {s.confidence:.2f} {s.explanation}: {head!r}{more}")
    return "\n".join(lines)


def _git(args: list[str], cwd: str | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False)


def index_stages(path: str) -> tuple[str, str, str] | None:
    """The base, ours and theirs versions of an unmerged ``path`` from git's index, if any."""
    folder, name = os.path.split(os.path.abspath(path))
    texts = []
    for stage in (1, 2, 3):
        proc = _git(["show", f":{stage}:./{name}"], cwd=folder)
        if proc.returncode != 0:
            return None
        try:
            texts.append(proc.stdout.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    return texts[0], texts[1], texts[2]


def unmerged_paths() -> list[str] | None:
    """The unmerged files of the current repository (None outside a repository)."""
    top = _git(["rev-parse", "--show-toplevel"])
    if top.returncode != 0:
        return None
    root = top.stdout.decode().strip()
    proc = _git(["diff", "--name-only", "--diff-filter=U", "-z"])
    names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    return [os.path.relpath(os.path.join(root, n)) for n in dict.fromkeys(names)]


#: Marker-shaped lines reported per file before the rest are only counted.
MAX_MARKERS_SHOWN = 5


def _marker_shape(line: str) -> str | None:
    """The marker char of a line shaped like git's conflict markers, else None.

    As the parser reads them: 7 or more of one of ``<``, ``|``, ``=``, ``>``, then the end of the
    line or (not for ``=``) a space and a label; any marker size counts.
    """
    char = line[:1]
    if char not in ("<", "|", "=", ">"):
        return None
    body = line.removesuffix("\n").removesuffix("\r")
    size = len(body) - len(body.lstrip(char))
    rest = body[size:]
    if size < 7 or (rest and (char == "=" or rest[0] != " ")):
        return None
    return char


@dataclass
class MarkersLeft:
    """Where conflict markers are left in a text (1-based lines)."""

    #: First lines of complete conflicts left as they were (counted, not resolved).
    conflicts: list[int] = field(default_factory=list)
    #: Marker-shaped lines outside those conflicts, with their text: malformed markers.
    stray: list[tuple[int, str]] = field(default_factory=list)


def markers_left(text: str, original: str | None = None) -> MarkersLeft:
    """The conflicts and the stray marker lines left in ``text`` (``original``: before resolving).

    Stray lines are what malformed markers leave (a missing ``=======``, a stray ``<<<<<<<`` or
    ``>>>>>>>``, a nested conflict, mixed marker sizes). A complete conflict of ``text`` counts
    as a conflict left when ``original`` holds the same conflict; one that resolving made
    complete (the outer markers of a nested conflict) is stray. A lone ``=======`` line is also a
    Markdown or reStructuredText heading underline, so ``=`` lines count only in a file with some
    other stray marker line.
    """
    from collections import Counter

    from splice.resolver.chunks import split_lines
    from splice.resolver.markers import parse

    known = Counter(c.text() for c in parse(original).conflicts) if original else Counter()
    left = MarkersLeft()
    inside: set[int] = set()
    for c in parse(text).conflicts:
        if known[c.text()] > 0:
            known[c.text()] -= 1
            left.conflicts.append(c.start + 1)
            inside.update(range(c.start, c.end))
    found = [
        (n, line, char)
        for n, line in enumerate(split_lines(text))
        if n not in inside and (char := _marker_shape(line)) is not None
    ]
    if any(char != "=" for _, _, char in found):
        left.stray = [(n + 1, line.rstrip("\r\n")) for n, line, _ in found]
    return left


def _say(message: str) -> None:
    print(f"splice: {message}", file=sys.stderr)


def _checked_paths(paths: list[str], follow_links: bool) -> tuple[list[str], int]:
    """The files to work on and the status so far; status 2 when a named path is bad input.

    Without ``paths``, the repository's unmerged files: those that are not regular files in the
    work tree (deleted on one side, a submodule, a conflicted symbolic link) are skipped with a
    note and make the status 1.
    """
    if not paths:
        found = unmerged_paths()
        if found is None:
            _say("error: no PATH given and not in a git repository")
            return [], 2
        if not found:
            _say("no unmerged files")
            return [], 0
        kept: list[str] = []
        for p in found:
            if os.path.islink(p):
                _say(f"{p}: a conflicted symbolic link, skipped (resolve it with git)")
            elif os.path.isdir(p):
                _say(f"{p}: unmerged directory (a submodule?), skipped")
            elif not os.path.isfile(p):  # e.g. deleted on one side: nothing to resolve
                _say(f"{p}: unmerged but not in the work tree, skipped")
            else:
                kept.append(p)
        return kept, int(len(kept) < len(found))
    bad = False
    for p in paths:
        if os.path.islink(p) and not follow_links:
            _say(f"error: {p}: is a symbolic link, left as is (--follow-links resolves it)")
        elif not os.path.lexists(p):
            _say(f"error: {p}: no such file")
        elif os.path.isdir(p):
            _say(f"error: {p}: is a directory")
        else:
            continue
        bad = True
    return paths, 2 if bad else 0


def _save(path: str, raw: bytes, data: bytes, *, backup: bool, follow_links: bool) -> bool:
    """Keep the original bytes (``backup``), then write ``data``; False (said why) on failure."""
    from splice.files import describe, write_atomic, write_backup

    try:
        if backup:
            kept = write_backup(path, raw)
            if kept != f"{path}.orig":
                _say(f"{path}: {path}.orig exists, the original is kept in {kept}")
        write_atomic(path, data, follow_links=follow_links)
    except OSError as exc:
        _say(f"error: {describe(exc)}; {path} left as it was")
        return False
    return True


def run_resolve(
    paths: list[str],
    *,
    dry_run: bool = False,
    backup: bool = True,
    resolver: str = DEFAULT_RESOLVER,
    min_confidence: float | None = None,
    explain_to: bool = False,
    follow_links: bool = False,
) -> int:
    """Resolve ``paths`` (default: the unmerged files) in place; returns the exit status.

    0: no conflict marker is left in any file. 1: markers are left (a conflict not resolved, or
    a stray marker line of malformed markers, each said as ``PATH:LINE``), or a file was skipped
    (binary, not UTF-8, an unmerged path that is not a regular file). 2: bad input: a named path
    that is missing, a directory or a symbolic link (unless ``follow_links``: then its target is
    resolved explicitly and written, the link stays a link), a file that cannot be read or
    written, an unknown resolver. A bad path on the command line stops before any file changes.

    The backup ``PATH.orig`` holds the bytes from before this run; an existing one is never
    overwritten (the next free ``PATH.orig.N`` is used, see :func:`splice.files.write_backup`).
    """
    from splice.files import describe, looks_binary, read_regular, resolve_target

    paths, status = _checked_paths(paths, follow_links)
    if status == 2 or not paths:
        return status

    from splice.config import load_resolver

    try:
        engine = load_resolver(resolver)
    except KeyError as exc:
        _say(f"error: {exc.args[0]}")
        return 2

    for path in paths:
        try:
            target = resolve_target(path, follow_links=follow_links)
            raw = read_regular(path, follow_links=follow_links)
        except OSError as exc:
            _say(f"error: {describe(exc)}")
            status = 2
            continue
        if looks_binary(raw):
            _say(f"{path}: binary file, skipped")
            status = max(status, 1)
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            _say(f"{path}: not UTF-8 text, skipped")
            status = max(status, 1)
            continue
        outcome = resolve_text(
            text, engine, path=path, min_confidence=min_confidence, stages=index_stages(target)
        )
        left = markers_left(outcome.text, text)
        if left.conflicts or left.stray:
            status = max(status, 1)
        if outcome.total == 0 and not left.stray:
            _say(f"{path}: no conflict markers")
            continue
        if explain_to and outcome.total:
            print(explain(path, outcome))
        if outcome.total:
            n = outcome.total
            _say(f"{path}: {outcome.resolved} of {n} conflict{'s' * (n != 1)} resolved")
        # --explain already says where each conflict is and why it was left
        where = [] if explain_to else [(n, "conflict left for a human") for n in left.conflicts]
        where += [(n, f"conflict marker left (malformed): {m!r}") for n, m in left.stray]
        for line, what in sorted(where)[:MAX_MARKERS_SHOWN]:
            _say(f"{path}:{line}: {what}")
        if len(where) > MAX_MARKERS_SHOWN:
            _say(f"{path}: and {len(where) - MAX_MARKERS_SHOWN} more marker lines left")
        if not outcome.clean:
            status = max(status, 1)
        if outcome.resolved == 0:
            continue
        if dry_run:
            diff = difflib.unified_diff(
                _lines(text),
                _lines(outcome.text),
                fromfile=f"a/{path}",
                tofile=f"b/{path}",
            )
            for line in diff:
                sys.stdout.write(line if line.endswith("\n") else line + "\n")
            continue
        data = outcome.text.encode("utf-8")
        if not _save(path, raw, data, backup=backup, follow_links=follow_links):
            status = 2
    return status
