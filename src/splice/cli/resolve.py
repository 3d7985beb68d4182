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
    from splice.resolver.resolvers import Resolver, Suggestion


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
        reports.append(ConflictReport(line, answer is not None, why, suggestions))
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


def run_resolve(
    paths: list[str],
    *,
    dry_run: bool = False,
    backup: bool = True,
    resolver: str = DEFAULT_RESOLVER,
    min_confidence: float | None = None,
    explain_to: bool = False,
) -> int:
    """Resolve ``paths`` (default: the unmerged files); exit 0 all resolved, 1 not, 2 bad input."""
    status = 0
    if not paths:
        found = unmerged_paths()
        if found is None:
            print("splice: error: no PATH given and not in a git repository", file=sys.stderr)
            return 2
        if not found:
            print("splice: no unmerged files", file=sys.stderr)
            return 0
        paths = [p for p in found if os.path.isfile(p)]
        for p in found:
            if p not in paths:  # e.g. deleted on one side: nothing to resolve in the file
                print(f"splice: {p}: unmerged but not in the work tree, skipped", file=sys.stderr)
        if len(paths) < len(found):
            status = 1
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        for p in missing:
            print(f"splice: error: {p}: no such file", file=sys.stderr)
        return 2

    from splice.config import load_resolver

    try:
        engine = load_resolver(resolver)
    except KeyError as exc:
        print(f"splice: error: {exc.args[0]}", file=sys.stderr)
        return 2

    for path in paths:
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            print(f"splice: {path}: not UTF-8 text, skipped", file=sys.stderr)
            status = 1
            continue
        outcome = resolve_text(
            text, engine, path=path, min_confidence=min_confidence, stages=index_stages(path)
        )
        if outcome.total == 0:
            print(f"splice: {path}: no conflict markers", file=sys.stderr)
            continue
        if explain_to:
            print(explain(path, outcome))
        n = outcome.total
        print(
            f"splice: {path}: {outcome.resolved} of {n} conflict{'s' * (n != 1)} resolved",
            file=sys.stderr,
        )
        if not outcome.clean:
            status = 1
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
        if backup:
            with open(f"{path}.orig", "wb") as fh:
                fh.write(raw)
        from splice.cli.driver import write_atomic

        write_atomic(path, outcome.text.encode("utf-8"))
    return status
