"""``splice ci``: test-merge a pull request's head into its base and say what Splice resolves.

The merge is ``git merge-tree --write-tree`` (git >= 2.38): nothing in the work tree, the index or
any branch changes. Every file git reports as a content conflict between text files is merged
again by the resolver pipeline (as the merge driver would merge it); every other conflict (binary
files, modify/delete, rename/delete, file/directory, modes, submodules) is reported with git's
own message and never guessed. ``--apply BRANCH`` writes the merge commit to a new branch.

Exit status: 0 when the merge is clean or every conflict was resolved, 1 when a human is needed,
2 on an error (bad ref, not a repository, git too old).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import click

from splice.data import git
from splice.models.serving import DEFAULT_RESOLVER

if TYPE_CHECKING:
    from splice.resolver.pipeline import HunkReport, MergeOutcome
    from splice.resolver.resolvers import Resolver

#: Oldest git with ``merge-tree --write-tree``.
MIN_GIT = (2, 38)
#: Conflict types (from ``merge-tree --messages``) that are plain content conflicts.
CONTENT_TYPES = {"CONFLICT (contents)", "CONFLICT (add/add)"}
REGULAR_MODES = {"100644", "100755"}

#: A conflict's state: resolved (an answer applied), suggested (markers kept, a suggestion
#: offered), unresolved (markers kept, nothing to suggest). A file's state is the worst of its
#: conflicts'; a report's is "clean", "resolved" or "conflicts-left".
RESOLVED, SUGGESTED, UNRESOLVED = "resolved", "suggested", "unresolved"
CONFLICTS_LEFT = "conflicts-left"


class CIError(Exception):
    """A problem with the input or with git, reported as is (exit status 2)."""


@dataclass
class ConflictResult:
    """One line-level conflict hunk of a file and what the resolver made of it."""

    line: int
    status: str
    base: tuple[str, ...]
    ours: tuple[str, ...]
    theirs: tuple[str, ...]
    #: The applied lines (resolved) or the best suggestion's lines (suggested), else None.
    resolution: tuple[str, ...] | None = None
    pattern: str = ""
    confidence: float | None = None
    reason: str = ""
    #: What the resolution (applied or suggested) keeps, in words ("both sides kept", ...).
    kept: str = ""


@dataclass
class FileResult:
    """A file git could not merge: a content conflict (with its hunks) or another kind."""

    path: str
    kind: str
    status: str
    messages: list[str] = field(default_factory=list)
    conflicts: list[ConflictResult] = field(default_factory=list)
    #: The merged text (resolved hunks applied, the others with markers), content conflicts only.
    merged: str | None = None


@dataclass
class CIReport:
    """The outcome of one test merge."""

    base_ref: str
    head_ref: str
    base_commit: str
    head_commit: str
    tree: str
    resolver: str
    threshold: float
    files: list[FileResult] = field(default_factory=list)
    applied_branch: str | None = None
    applied_commit: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        """git merged everything by itself."""
        return not self.files

    @property
    def needs_human(self) -> bool:
        return any(f.status != RESOLVED for f in self.files)

    @property
    def status(self) -> str:
        if self.clean:
            return "clean"
        return CONFLICTS_LEFT if self.needs_human else RESOLVED

    @property
    def exit_code(self) -> int:
        return 1 if self.needs_human else 0

    def counts(self) -> dict[str, int]:
        """Conflict hunks by status, and files git could not merge by content."""
        out = {RESOLVED: 0, SUGGESTED: 0, UNRESOLVED: 0, "other-files": 0}
        for f in self.files:
            if f.kind != "content":
                out["other-files"] += 1
            for c in f.conflicts:
                out[c.status] += 1
        return out


# --------------------------------------------------------------------------- git


def _git(cwd: str, *args: str, stdin: bytes | None = None, env: dict[str, str] | None = None):
    """``git ARGS`` through the one runner (:func:`splice.data.git.run`)."""
    proc = git.run(args, cwd=cwd, stdin=stdin, env=env)
    if proc.returncode == 127 and not proc.stdout:
        raise CIError(f"cannot run git ({proc.stderr.decode(errors='replace').strip()})")
    return proc


def _out(proc: subprocess.CompletedProcess[bytes], what: str) -> str:
    if proc.returncode != 0:
        detail = proc.stderr.decode("utf-8", "replace").strip()
        raise CIError(f"{what}: {detail}" if detail else what)
    return proc.stdout.decode("utf-8", "surrogateescape")


def git_version(cwd: str = ".") -> tuple[int, int]:
    out = _out(_git(cwd, "version"), "git version failed")
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def check_git(cwd: str) -> str:
    """The repository's top folder; CIError for an old git or outside a repository."""
    version = git_version(cwd)
    if version < MIN_GIT:
        have = ".".join(map(str, version))
        raise CIError(
            f"git {have} is too old: splice ci needs `git merge-tree --write-tree`, "
            "which git 2.38 added; install a newer git"
        )
    proc = _git(cwd, "rev-parse", "--show-toplevel")
    if proc.returncode != 0:
        proc = _git(cwd, "rev-parse", "--git-dir")  # a bare repository
        if proc.returncode != 0:
            raise CIError(f"not a git repository: {os.path.abspath(cwd)}")
        return cwd
    return proc.stdout.decode().strip()


def resolve_ref(cwd: str, ref: str) -> str:
    proc = _git(cwd, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        raise CIError(f"unknown revision {ref!r} (not a commit in this repository)")
    return proc.stdout.decode().strip()


@dataclass
class _Stage:
    mode: str
    oid: str


@dataclass
class TreeMerge:
    """What ``merge-tree --write-tree`` said: the tree, stages per path, messages per path."""

    tree: str
    clean: bool
    stages: dict[str, dict[int, _Stage]] = field(default_factory=dict)
    messages: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def merge_tree(cwd: str, base: str, head: str) -> TreeMerge:
    """Run ``git merge-tree --write-tree -z`` and parse its output."""
    proc = _git(cwd, "merge-tree", "--write-tree", "-z", "--messages", base, head)
    if proc.returncode not in (0, 1):
        _out(proc, "git merge-tree failed")
    fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
    result = TreeMerge(tree=fields[0], clean=proc.returncode == 0)
    i = 1
    if not result.clean:
        while i < len(fields) and fields[i]:
            info, path = fields[i].split("\t", 1)
            mode, oid, stage = info.split(" ")
            result.stages.setdefault(path, {})[int(stage)] = _Stage(mode, oid)
            i += 1
        i += 1  # the empty field that ends the conflicted file info
    while i + 1 < len(fields) and fields[i].isdigit():
        n = int(fields[i])
        paths = fields[i + 1 : i + 1 + n]
        kind, message = fields[i + 1 + n], fields[i + 2 + n]
        for path in paths:
            result.messages.setdefault(path, []).append((kind, message.strip()))
        i += 3 + n
    return result


def _blob(cwd: str, oid: str) -> bytes:
    proc = _git(cwd, "cat-file", "blob", oid)
    if proc.returncode != 0:
        raise CIError(f"cannot read blob {oid}")
    return proc.stdout


# --------------------------------------------------------------------------- resolving


def _classify(report: HunkReport) -> ConflictResult:
    conflict = report.hunk.conflict
    result = ConflictResult(
        line=report.ours_start + 1,
        status=UNRESOLVED,
        base=tuple(conflict.base),
        ours=tuple(conflict.ours),
        theirs=tuple(conflict.theirs),
    )
    resolution = report.resolution
    chosen = resolution.chosen if resolution is not None else None
    if report.applied is not None and resolution is not None:
        used = next(
            (s for s in (chosen, *resolution.suggestions) if s and s.lines == report.applied),
            chosen,
        )
        result.status = RESOLVED
        result.resolution = tuple(report.applied)
        result.kept = report.kept.describe() if report.kept is not None else ""
        if used is not None:
            result.pattern, result.confidence = used.explanation, used.confidence
        return result
    if chosen is not None:
        from splice.resolver.keeps import classify

        result.status = SUGGESTED
        result.resolution = tuple(chosen.lines)
        result.pattern, result.confidence = chosen.explanation, chosen.confidence
        result.kept = classify(conflict, chosen.lines, report.hunk.lang).describe()
        result.reason = report.rejected or ""
    else:
        result.reason = "no resolver proposed a resolution"
    return result


def _content_result(
    path: str, texts: tuple[str, str, str], resolver: Resolver, opts: dict
) -> FileResult:
    from splice.resolver.pipeline import merge_file

    base, ours, theirs = texts
    outcome: MergeOutcome = merge_file(base, ours, theirs, resolver, path=path, **opts)
    conflicts = [_classify(h) for h in outcome.hunks]
    if outcome.clean:
        status = RESOLVED
    elif any(c.status == SUGGESTED for c in conflicts):
        status = SUGGESTED
    else:
        status = UNRESOLVED
    return FileResult(path, "content", status, conflicts=conflicts, merged=outcome.text)


def _other_kind(messages: list[tuple[str, str]], stages: dict[int, _Stage]) -> str:
    for kind, _ in messages:
        if kind.startswith("CONFLICT") and kind not in CONTENT_TYPES:
            return kind.removeprefix("CONFLICT (").rstrip(")")
    if any(s.mode == "160000" for s in stages.values()):
        return "submodule"
    if any(s.mode == "120000" for s in stages.values()):
        return "symlink"
    if 2 not in stages or 3 not in stages:
        return "deleted on one side"
    return "distinct modes"


def check(
    base: str,
    head: str,
    *,
    cwd: str = ".",
    resolver_name: str = DEFAULT_RESOLVER,
    min_confidence: float | None = None,
    allow_discard: bool = False,
) -> CIReport:
    """Test-merge ``head`` into ``base`` and resolve what can be resolved (writes nothing)."""
    from splice.models.serving import load_resolver
    from splice.resolver.pipeline import DecisionRule, Labels

    top = check_git(cwd)
    base_commit, head_commit = resolve_ref(top, base), resolve_ref(top, head)
    merged = merge_tree(top, base, head)  # refs, so that git's messages name them
    try:
        resolver = load_resolver(resolver_name)
    except KeyError as exc:
        raise CIError(str(exc.args[0])) from exc
    allow_discard = allow_discard or git.config_bool("splice.allowDiscard", cwd=top)
    rule = DecisionRule.for_resolver(
        resolver, min_confidence=min_confidence, allow_discard=allow_discard
    )
    report = CIReport(
        base_ref=base,
        head_ref=head,
        base_commit=base_commit,
        head_commit=head_commit,
        tree=merged.tree,
        resolver=resolver_name,
        threshold=rule.min_confidence,
    )
    style = git.conflict_style(cwd=top)
    for path in sorted(merged.stages):
        stages = merged.stages[path]
        messages = merged.messages.get(path, [])
        texts = [m for k, m in messages if k.startswith("CONFLICT")]
        kinds = {k for k, _ in messages if k.startswith("CONFLICT")}
        content = (
            kinds <= CONTENT_TYPES
            and 2 in stages
            and 3 in stages
            and all(s.mode in REGULAR_MODES for s in stages.values())
        )
        data: list[bytes] = []
        if content:
            data = [_blob(top, stages[n].oid) if n in stages else b"" for n in (1, 2, 3)]
            if any(b"\0" in d for d in data):
                why = texts or ["binary file"]
                report.files.append(FileResult(path, "binary", UNRESOLVED, why))
                continue
            try:
                decoded = tuple(d.decode("utf-8") for d in data)
            except UnicodeDecodeError:
                report.files.append(FileResult(path, "not UTF-8", UNRESOLVED, texts))
                continue
            opts = {
                "style": style,
                "marker_size": git.marker_size_for(path, cwd=top),
                "labels": Labels(ours=base, base="merge base", theirs=head),
                "rule": rule,
            }
            result = _content_result(path, decoded, resolver, opts)  # type: ignore[arg-type]
            result.messages = texts
            report.files.append(result)
            continue
        report.files.append(FileResult(path, _other_kind(messages, stages), UNRESOLVED, texts))
    return report


# --------------------------------------------------------------------------- --apply


def _commit_env(cwd: str) -> dict[str, str]:
    env = dict(os.environ)
    for who in ("AUTHOR", "COMMITTER"):
        if _git(cwd, "var", f"GIT_{who}_IDENT").returncode != 0:
            env.setdefault(f"GIT_{who}_NAME", "Splice CI")
            env.setdefault(f"GIT_{who}_EMAIL", "splice-ci@localhost")
    return env


def apply(report: CIReport, branch: str, *, cwd: str = ".", allow_markers: bool = False) -> str:
    """Write the merge commit to the new ``branch`` (never the current one); its commit id.

    Resolved files get their resolution; files with conflicts left keep git's result (markers)
    only with ``allow_markers``, else CIError.
    """
    top = check_git(cwd)
    if _git(top, "check-ref-format", "--branch", branch).returncode != 0:
        raise CIError(f"invalid branch name {branch!r}")
    if _git(top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").returncode == 0:
        raise CIError(f"branch {branch!r} already exists; choose a new name")
    if report.needs_human and not allow_markers:
        raise CIError(
            f"not writing {branch!r}: conflicts need a human (use --allow-markers to commit "
            "them with their conflict markers)"
        )
    index = os.path.join(_out(_git(top, "rev-parse", "--absolute-git-dir"), "no git dir").strip())
    index = os.path.join(index, f"splice-ci-{os.getpid()}.index")
    env = {**_commit_env(top), "GIT_INDEX_FILE": index}
    try:
        _out(_git(top, "read-tree", report.tree, env=env), "git read-tree failed")
        for f in report.files:
            if f.merged is None or (f.status != RESOLVED and not allow_markers):
                continue
            oid = _out(
                _git(top, "hash-object", "-w", "--stdin", stdin=f.merged.encode("utf-8")),
                "git hash-object failed",
            ).strip()
            current = _out(_git(top, "ls-files", "-s", "--", f.path, env=env), "ls-files").split()
            mode = current[0] if current else "100644"
            info = f"{mode},{oid},{f.path}"
            _out(_git(top, "update-index", "--cacheinfo", info, env=env), "update-index failed")
        tree = _out(_git(top, "write-tree", env=env), "git write-tree failed").strip()
    finally:
        if os.path.exists(index):
            os.unlink(index)
    message = f"Merge {report.head_ref} into {report.base_ref}\n\nWritten by splice ci.\n"
    args = ["commit-tree", tree, "-p", report.base_commit, "-p", report.head_commit]
    commit = _out(_git(top, *args, stdin=message.encode(), env=env), "commit-tree").strip()
    _out(_git(top, "branch", branch, commit), f"cannot create branch {branch!r}")
    report.applied_branch, report.applied_commit = branch, commit
    return commit


# --------------------------------------------------------------------------- command


@click.command("ci")
@click.option("--base", "base", required=True, help="The branch merged into (e.g. main).")
@click.option("--head", "head", required=True, help="The branch to merge (the pull request).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "markdown", "html"]),
    default="text",
    show_default=True,
)
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report here.")
@click.option("--apply", "apply_branch", metavar="BRANCH", help="Write the merge to a new branch.")
@click.option("--allow-markers", is_flag=True, help="With --apply: commit unresolved markers too.")
@click.option("--resolver", default=DEFAULT_RESOLVER, show_default=True)
@click.option("--min-confidence", type=click.FloatRange(0, 1), help="Apply only this sure.")
@click.option(
    "--allow-discard",
    is_flag=True,
    help="Also apply answers that drop a side's edits (git config splice.allowDiscard).",
)
@click.option("-C", "repo", default=".", type=click.Path(file_okay=False), help="Repository.")
def ci_command(
    base: str,
    head: str,
    fmt: str,
    output: str | None,
    apply_branch: str | None,
    allow_markers: bool,
    resolver: str,
    min_confidence: float | None,
    allow_discard: bool,
    repo: str,
) -> None:
    """Test-merge HEAD into BASE without touching the work tree; report what Splice resolves.

    Exit 0: clean or all resolved; 1: a human is needed; 2: error.
    """
    from splice.cli.ci_report import render

    try:
        report = check(
            base,
            head,
            cwd=repo,
            resolver_name=resolver,
            min_confidence=min_confidence,
            allow_discard=allow_discard,
        )
        if apply_branch:
            try:
                apply(report, apply_branch, cwd=repo, allow_markers=allow_markers)
            except CIError as exc:
                if not report.needs_human or allow_markers:
                    raise
                report.notes.append(str(exc))
    except CIError as exc:
        click.echo(f"splice ci: error: {exc}", err=True)
        sys.exit(2)
    text = render(report, fmt)
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
        click.echo(f"splice ci: {report.status}; report written to {output}", err=True)
    else:
        click.echo(text, nl=not text.endswith("\n"))
    for note in report.notes:
        click.echo(f"splice ci: {note}", err=True)
    sys.exit(report.exit_code)
