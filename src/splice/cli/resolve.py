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
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from splice.cli.config import DEFAULT_RESOLVER
from splice.cli.options import (
    allow_discard_option,
    confidence,
    min_confidence_option,
    resolver_option,
)
from splice.data.git import config_bool, index_stages, unmerged_paths

#: Marker-shaped lines reported per file before the rest are only counted.
MAX_MARKERS_SHOWN = 5

if TYPE_CHECKING:
    from splice.resolver.resolvers import Resolver, Suggestion


@dataclass
class ConflictReport:
    """What happened to one conflict: its first line, whether it was resolved and why not, and
    the resolver's top suggestions (for ``--explain`` and the language server)."""

    line: int
    applied: bool
    reason: str
    suggestions: tuple[Suggestion, ...] = ()
    #: What the structured merge did (its explanation, or why it abstained).
    structured: str | None = None


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


def _lines(text: str) -> list[str]:
    from splice.resolver.chunks import split_lines

    return split_lines(text)


def resolve_text(
    text: str,
    resolver: Resolver | None,
    *,
    path: str | None = None,
    lang: str | None = None,
    min_confidence: float | None = None,
    stages: tuple[str, str, str] | None = None,
    allow_discard: bool = False,
) -> FileOutcome:
    """Resolve what can be resolved among the conflicts marked in ``text`` (the one pipeline:
    :func:`splice.resolver.pipeline.merge_marked`)."""
    from splice.resolver.pipeline import DecisionRule, merge_marked

    rule = DecisionRule.for_resolver(
        resolver, min_confidence=min_confidence, allow_discard=allow_discard
    )
    outcome = merge_marked(
        text,
        resolver,
        path=path,
        lang=lang,
        stages=stages,
        min_confidence=min_confidence,
        rule=rule,
    )
    from splice.resolver.markers import parse

    starts = [c.start + 1 for c in parse(text).conflicts] if outcome.hunks else []
    reports = []
    for report, line in zip(outcome.hunks, starts, strict=True):
        answer = report.answer
        if answer is not None:
            why = f"{report.outcome}: {answer.explanation} (confidence {answer.confidence:.2f})"
        else:
            why = report.outcome
        suggestions = tuple(report.resolution.suggestions) if report.resolution else ()
        reports.append(
            ConflictReport(line, answer is not None, why, suggestions, report.structured)
        )
    return FileOutcome(outcome.text, len(outcome.hunks), outcome.resolved, reports)


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
        if r.structured is not None and r.structured.startswith("abstained"):
            lines.append(f"  structured merge {r.structured}")
    return "\n".join(lines)


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
    from splice.data.files import describe, write_atomic, write_backup

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
    allow_discard: bool = False,
) -> int:
    """Resolve ``paths`` (default: the unmerged files) in place; returns the exit status.

    0: no conflict marker is left in any file. 1: markers are left (a conflict not resolved, or
    a stray marker line of malformed markers, each said as ``PATH:LINE``), or a file was skipped
    (binary, not UTF-8, an unmerged path that is not a regular file). 2: bad input: a named path
    that is missing, a directory or a symbolic link (unless ``follow_links``: then its target is
    resolved explicitly and written, the link stays a link), a file that cannot be read or
    written, an unknown resolver. A bad path on the command line stops before any file changes.

    The backup ``PATH.orig`` holds the bytes from before this run; an existing one is never
    overwritten (the next free ``PATH.orig.N`` is used, see :func:`splice.data.files.write_backup`).
    """
    from splice.data.files import describe, looks_binary, read_regular, resolve_target
    from splice.resolver.markers import markers_left

    paths, status = _checked_paths(paths, follow_links)
    if status == 2 or not paths:
        return status

    from splice.cli.config import load_resolver

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
            text,
            engine,
            path=path,
            min_confidence=min_confidence,
            stages=index_stages(target),
            allow_discard=allow_discard or config_bool("splice.allowDiscard"),
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


# --------------------------------------------------------------------------- the command


@click.command("resolve")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print a unified diff; write nothing.")
@click.option("--no-backup", is_flag=True, help="Do not keep PATH.orig.")
@resolver_option
@min_confidence_option
@allow_discard_option
@click.option(
    "--explain", is_flag=True, help="Print each conflict's outcome and top-3 suggestions."
)
@click.option(
    "--follow-links",
    is_flag=True,
    help="Resolve the file a symbolic link PATH points to (default: refuse links).",
)
def resolve_command(
    paths: tuple[str, ...],
    dry_run: bool,
    no_backup: bool,
    resolver: str,
    min_confidence: float | None,
    explain: bool,
    follow_links: bool,
    allow_discard: bool,
) -> None:
    """Resolve conflict markers already in files (default: the repository's unmerged files).

    PATH.orig keeps each changed file's bytes from before the run; an existing PATH.orig is
    never overwritten (PATH.orig.1, .2... are used). Exit status: 0 no conflict marker left;
    1 markers left (unresolved or malformed conflicts, said as PATH:LINE) or a file skipped
    (binary, not UTF-8); 2 bad input (a missing path, a directory, a symbolic link without
    --follow-links, a file that cannot be read or written).
    """
    sys.exit(
        run_resolve(
            list(paths),
            dry_run=dry_run,
            backup=not no_backup,
            resolver=resolver,
            min_confidence=confidence(min_confidence),
            explain_to=explain,
            follow_links=follow_links,
            allow_discard=allow_discard,
        )
    )
