"""``splice eval``: measure resolvers on real merge conflicts with known human resolutions.

The unit is a line-level conflict hunk as ``git merge-file --diff3`` reports it. The human
resolution of a hunk is located in the committed file by aligning the merge's stable lines with
it (see :func:`locate_resolutions`); hunks that cannot be located are counted, never dropped
silently. A resolution is correct when it equals the human one ignoring all whitespace.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splice.resolver.chunks import Stable, split_lines, text_key

#: Bump when the meaning of a field of the JSON report changes.
SCHEMA_VERSION = 1


#: The comparison key: the text with every whitespace character removed.
normalize = text_key


def locate_resolutions(chunks: Sequence, merged: Sequence[str]) -> list[tuple[str, ...] | None]:
    """The human resolution of each conflict chunk, as lines of ``merged`` (None: not located).

    Method: the merge's stable lines (with one unique placeholder per conflict) are aligned with
    the committed file by a Myers diff (:mod:`splice.resolver.seqdiff`). A conflict's resolution
    is what the committed file holds between the stable line just before the conflict and the
    stable line just after it (the file's start or end at the edges); both of those lines must
    be aligned with the committed file, else the hunk is reported as not located.
    """
    skeleton: list[object] = []
    before_index: list[int] = []  # per conflict: skeleton index of the line before it, or -1
    for chunk in chunks:
        if isinstance(chunk, Stable):
            skeleton.extend(chunk.units)
        else:
            before_index.append(len(skeleton) - 1)
            skeleton.append(object())  # a placeholder that never matches
    position = _align(skeleton, list(merged))
    out: list[tuple[str, ...] | None] = []
    for before in before_index:
        after = before + 2  # the skeleton index just past the placeholder
        start = 0 if before < 0 else position.get(before)
        if start is not None and before >= 0:
            start += 1
        if after >= len(skeleton):
            end: int | None = len(merged)
        elif isinstance(skeleton[after], str):
            end = position.get(after)
        else:  # two conflicts with no stable line between them
            end = None
        if start is None or end is None or end < start:
            out.append(None)
        else:
            out.append(tuple(merged[start:end]))
    return out


def _align(a: list[object], b: list[str]) -> dict[int, int]:
    """Map indices of ``a`` to the indices of ``b`` they are aligned with (matching lines only)."""
    from splice.resolver.seqdiff import matching_pairs

    return dict(matching_pairs(a, b))


@dataclass
class HunkRow:
    """One located-or-not hunk and what each resolver did with it."""

    lang: str
    located: bool
    expressible: bool = False
    repo: str = ""
    #: resolver name -> (proposed, correct)
    outcomes: dict[str, tuple[bool, bool]] = field(default_factory=dict)
    #: resolver name -> 1-based rank of the first suggestion matching the human resolution
    #: (0: none of the first :data:`TOP_K` does); absent when the resolver gave no suggestions.
    ranks: dict[str, int] = field(default_factory=dict)


#: Suggestions looked at for ``top3_always``.
TOP_K = 3
_RESOLVERS: dict[str, Any] = {}


def _resolver(name: str) -> Any:
    """The resolver ``name``, built once per process (a model loads once, not per file)."""
    from splice.models.serving import load_resolver

    if name not in _RESOLVERS:
        _RESOLVERS[name] = load_resolver(name)
    return _RESOLVERS[name]


def evaluate_record(record: dict[str, Any], resolver_names: Sequence[str]) -> list[HunkRow]:
    """Run every resolver on every conflict hunk of one record."""
    from splice.resolver.patterns import expressible
    from splice.resolver.pipeline import decide, find_hunks

    lang = record.get("lang") or "unknown"
    base, ours, theirs = record["base"], record["ours"], record["theirs"]
    b, o, t = split_lines(base), split_lines(ours), split_lines(theirs)
    chunks, reports = find_hunks(b, o, t, lang, record.get("path"))
    truths = locate_resolutions(chunks, split_lines(record["merged"]))
    rows = []
    for report, truth in zip(reports, truths, strict=True):
        row = HunkRow(lang=lang, located=truth is not None, repo=record.get("repo") or "")
        if truth is not None:
            row.expressible = bool(expressible(report.hunk.conflict, lang, "".join(truth)))
        rows.append(row)
    for name in resolver_names:
        resolver = _resolver(name)
        decide(chunks, reports, resolver, base, ours, theirs, lang=lang)
        for report, truth, row in zip(reports, truths, rows, strict=True):
            applied = report.applied
            proposed = applied is not None
            correct = (
                proposed
                and truth is not None
                and normalize("".join(applied)) == normalize("".join(truth))
            )
            row.outcomes[name] = (proposed, correct)
            suggestions = report.resolution.suggestions if report.resolution else ()
            if suggestions:
                row.ranks[name] = 0
                if truth is not None:
                    key = normalize("".join(truth))
                    for k, s in enumerate(suggestions[:TOP_K], start=1):
                        if normalize("".join(s.lines)) == key:
                            row.ranks[name] = k
                            break
            report.answer = report.kept = report.rejected = report.resolution = None
    return rows


def _work(args: tuple[dict[str, Any], Sequence[str]]) -> list[HunkRow]:
    record, names = args
    try:
        return evaluate_record(record, names)
    except RecursionError:  # pathological input: count nothing rather than crash the run
        return []


def _metrics(rows: list[HunkRow], name: str, suggests: bool = False) -> dict[str, Any]:
    """Coverage, precision, accuracy; with ``suggests`` also ``top1_always``/``top3_always``."""
    located = [r for r in rows if r.located]
    proposed = sum(1 for r in located if r.outcomes[name][0])
    correct = sum(1 for r in located if r.outcomes[name][1])
    n = len(located)
    out = {
        "hunks": n,
        "proposed": proposed,
        "correct": correct,
        "coverage": proposed / n if n else 0.0,
        "precision": correct / proposed if proposed else 0.0,
        "accuracy": correct / n if n else 0.0,
    }
    if suggests:
        for k in (1, TOP_K):
            hits = sum(1 for r in located if 0 < r.ranks.get(name, 0) <= k)
            out[f"top{k}_always"] = hits / n if n else 0.0
    return out


def summarize(
    rows: list[HunkRow], resolver_names: Sequence[str], dataset: str, n_files: int
) -> dict[str, Any]:
    """The JSON report (schema in docs/EVALUATION.md)."""
    by_lang: dict[str, list[HunkRow]] = defaultdict(list)
    by_repo: dict[str, list[HunkRow]] = defaultdict(list)
    for row in rows:
        by_lang[row.lang].append(row)
        by_repo[row.repo].append(row)
    located = [r for r in rows if r.located]
    suggests = {name: any(name in r.ranks for r in rows) for name in resolver_names}

    def expressible_share(rs: list[HunkRow]) -> float:
        loc = [r for r in rs if r.located]
        return sum(r.expressible for r in loc) / len(loc) if loc else 0.0

    report = {
        "schema_version": SCHEMA_VERSION,
        "dataset": dataset,
        "n_files": n_files,
        "n_hunks": len(rows),
        "unlocated": len(rows) - len(located),
        "resolvers": {
            name: {
                "overall": _metrics(rows, name, suggests[name]),
                "by_lang": {
                    lang: _metrics(rs, name, suggests[name]) for lang, rs in sorted(by_lang.items())
                },
                "by_repo": {
                    repo: _metrics(rs, name, suggests[name]) for repo, rs in sorted(by_repo.items())
                },
            }
            for name in resolver_names
        },
        "expressible": {
            "overall": expressible_share(rows),
            "by_lang": {lang: expressible_share(rs) for lang, rs in sorted(by_lang.items())},
        },
    }
    for res in report["resolvers"].values():
        res["repo_mean"] = repo_mean(res["by_repo"])
    return report


def repo_mean(by_repo: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Each rate of :func:`_metrics` averaged over the repositories with located hunks, every
    repository counted once (one large repository can sway the pooled numbers)."""
    repos = [m for m in by_repo.values() if m["hunks"]]
    keys = ("coverage", "accuracy", "top1_always", "top3_always")
    return {k: sum(m[k] for m in repos) / len(repos) for k in keys if repos and k in repos[0]}


def evaluate(
    records: Iterable[dict[str, Any]],
    resolver_names: Sequence[str],
    *,
    dataset: str,
    workers: int = 1,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, Any]:
    """Evaluate resolvers over records (in ``workers`` processes) and summarize."""
    rows: list[HunkRow] = []
    n_files = 0
    jobs = ((rec, tuple(resolver_names)) for rec in records)
    bar = None
    if progress:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        bar = Progress(
            TextColumn("eval"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[hunks]} hunks"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
    task = None
    try:
        if bar is not None:
            bar.start()
            task = bar.add_task("eval", total=total, hunks=0)
        if workers > 1:
            import multiprocessing as mp

            with mp.get_context("fork").Pool(workers) as pool:
                for result in pool.imap_unordered(_work, jobs, chunksize=4):
                    n_files += 1
                    rows.extend(result)
                    if bar is not None:
                        bar.update(task, advance=1, hunks=len(rows))
        else:
            for job in jobs:
                rows.extend(_work(job))
                n_files += 1
                if bar is not None:
                    bar.update(task, advance=1, hunks=len(rows))
    finally:
        if bar is not None:
            bar.stop()
    return summarize(rows, resolver_names, dataset, n_files)


def format_table(report: dict[str, Any]) -> str:
    """A Markdown table of the report: per resolver and language."""
    lines = [
        f"dataset: {report['dataset']}, files: {report['n_files']}, hunks: {report['n_hunks']}, "
        f"not located: {report['unlocated']}",
        "",
        "| resolver | lang | hunks | coverage | precision | accuracy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, res in report["resolvers"].items():
        for lang, m in [("all", res["overall"]), *res["by_lang"].items()]:
            lines.append(
                f"| {name} | {lang} | {m['hunks']} | {m['coverage']:.1%} | "
                f"{m['precision']:.1%} | {m['accuracy']:.1%} |"
            )
    lines.append("")
    for name, res in report["resolvers"].items():
        mean = res.get("repo_mean")
        if mean:
            n = sum(1 for m in res["by_repo"].values() if m["hunks"])
            top1 = f", top-1 always {mean['top1_always']:.1%}" if "top1_always" in mean else ""
            lines.append(
                f"{name}, mean over {n} repositories: coverage "
                f"{mean['coverage']:.1%}, accuracy {mean['accuracy']:.1%}{top1}"
            )
    ex = report["expressible"]
    lines.append("")
    lines.append(
        "expressible by primitive patterns (ceiling for a pattern classifier): "
        + f"all {ex['overall']:.1%}; "
        + ", ".join(f"{k} {v:.1%}" for k, v in ex["by_lang"].items())
    )
    return "\n".join(lines)


def write_json(report: dict[str, Any], path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
