"""``splice eval``: measure resolvers on real merge conflicts with known human resolutions.

The unit is a line-level conflict hunk as ``git merge-file --diff3`` reports it. The human
resolution of a hunk is located in the committed file by aligning the merge's stable lines with
it (see :func:`locate_resolutions`); hunks that cannot be located are counted, never dropped
silently. A resolution is correct when it equals the human one ignoring all whitespace.

Every answer is also classified by what it keeps of each side's edits
(:func:`splice.resolver.keeps.classify`: ``both``, ``drops-ours``, ``drops-theirs``,
``drops-both``), and coverage and precision are split by that kind, for the applied answers and
for each resolver's top answer (whether applied or not). With ``rows_path`` every hunk's
candidates (text, confidence, kind, syntax check, correctness) are saved for offline fitting
(``scripts/fit_decision.py``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from splice.resolver.chunks import Stable, split_lines, text_key

#: Bump when the meaning of a field of the JSON report changes (2: ``by_kind``).
SCHEMA_VERSION = 2
#: The kinds of :mod:`splice.resolver.keeps`, in report order.
KINDS = ("both", "drops-ours", "drops-theirs", "drops-both")


#: The comparison key: the text with every whitespace character removed.
normalize = text_key


def located_hunks(record: dict[str, Any]) -> list[tuple[Any, tuple[str, ...]]]:
    """A merge record's line-level hunks whose human resolution is located: each hunk's
    :class:`~splice.resolver.pipeline.HunkReport` (with its file context) and the resolution."""
    from splice.resolver.pipeline import find_hunks

    b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
    chunks, reports = find_hunks(b, o, t, record.get("lang"), record.get("path"))
    truths = locate_resolutions(chunks, split_lines(record["merged"]))
    return [(r, truth) for r, truth in zip(reports, truths, strict=True) if truth is not None]


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
    #: resolver name -> kind of the applied answer (absent: nothing applied)
    kinds: dict[str, str] = field(default_factory=dict)
    #: resolver name -> (kind, correct) of the top answer, applied or not (absent: none)
    top: dict[str, tuple[str, bool]] = field(default_factory=dict)
    #: Everything needed to refit the decision offline (only with ``details``; see module doc).
    detail: dict[str, Any] | None = None


#: Suggestions looked at for ``top3_always``.
TOP_K = 3
_RESOLVERS: dict[str, Any] = {}


def _resolver(name: str) -> Any:
    """The resolver ``name``, built once per process (a model loads once, not per file)."""
    from splice.models.serving import load_resolver

    if name not in _RESOLVERS:
        _RESOLVERS[name] = load_resolver(name)
    return _RESOLVERS[name]


def evaluate_record(
    record: dict[str, Any],
    resolver_names: Sequence[str],
    details: bool = False,
    allow_discard: bool = False,
) -> list[HunkRow]:
    """Run every resolver on every conflict hunk of one record (``details``: keep each hunk's
    candidates in ``HunkRow.detail``; ``allow_discard``: answers that drop a side's edits are
    judged like the rest, as ``--allow-discard`` does)."""
    from splice.resolver.keeps import classify
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
        if details:
            c = report.hunk.conflict
            row.detail = {
                "repo": row.repo,
                "lang": lang,
                "path": record.get("path"),
                "merge": record.get("merge"),
                "index": report.index,
                "n_hunks": len(reports),
                "base": "".join(c.base),
                "ours": "".join(c.ours),
                "theirs": "".join(c.theirs),
                "truth": None if truth is None else "".join(truth),
                "resolvers": {},
            }
        rows.append(row)
    syntax = _SyntaxJudge(chunks, base, ours, theirs, lang) if details else None
    for name in resolver_names:
        resolver = _resolver(name)
        decide(
            chunks, reports, resolver, base, ours, theirs, lang=lang, allow_discard=allow_discard
        )
        for report, truth, row in zip(reports, truths, rows, strict=True):
            key = None if truth is None else normalize("".join(truth))
            applied = report.applied
            proposed = applied is not None
            correct = proposed and key is not None and normalize("".join(applied)) == key
            row.outcomes[name] = (proposed, correct)
            conflict = report.hunk.conflict
            if proposed:
                kept = report.kept or classify(conflict, applied, lang)
                row.kinds[name] = kept.kind
            resolution = report.resolution
            chosen = resolution.chosen if resolution else None
            if chosen is not None:
                right = key is not None and normalize("".join(chosen.lines)) == key
                row.top[name] = (classify(conflict, chosen.lines, lang).kind, right)
            suggestions = resolution.suggestions if resolution else ()
            if suggestions:
                row.ranks[name] = 0
                if key is not None:
                    for k, s in enumerate(suggestions[:TOP_K], start=1):
                        if normalize("".join(s.lines)) == key:
                            row.ranks[name] = k
                            break
            if row.detail is not None and syntax is not None:
                row.detail["resolvers"][name] = _candidates(
                    report, resolver, key, syntax, applied, lang
                )
            report.answer = report.kept = report.rejected = report.resolution = None
    return rows


class _SyntaxJudge:
    """The pipeline's syntax check for any candidate of a file (as in ``pipeline.decide``)."""

    def __init__(self, chunks: list, base: str, ours: str, theirs: str, lang: str) -> None:
        from splice.resolver.syntax import SyntaxCheck

        self.check = SyntaxCheck(base, ours, theirs, lang)
        self.with_ours: list[str] = []
        for chunk in chunks:
            self.with_ours.extend(chunk.units if isinstance(chunk, Stable) else chunk.ours)
        self._ours_errors: int | None = None

    def ok(self, start: int, length: int, lines: Sequence[str]) -> bool:
        """False when putting ``lines`` in place of ``length`` lines at ``start`` adds errors."""
        from splice.resolver.syntax import error_count

        if self.check.lang is None:
            return True
        w = self.with_ours
        candidate = "".join(w[:start]) + "".join(lines) + "".join(w[start + length :])
        if not self.check.adds_parse_error(candidate):
            return True
        if self._ours_errors is None:
            self._ours_errors = error_count("".join(w), self.check.lang)
        return error_count(candidate, self.check.lang) <= self._ours_errors


def _candidates(
    report: Any, resolver: Any, key: str | None, syntax: _SyntaxJudge, applied: Any, lang: str
) -> dict[str, Any]:
    """A hunk's candidates in the order the pipeline tries them (chosen first)."""
    from splice.resolver.keeps import classify

    resolution = report.resolution
    out: dict[str, Any] = {
        "applied": None if applied is None else "".join(applied),
        "rejected": report.rejected,
        "candidates": [],
    }
    if resolution is None or resolution.chosen is None:
        return out
    chosen = resolution.chosen
    tried = [chosen, *(s for s in resolution.suggestions if s.lines != chosen.lines)]
    checks = getattr(resolver, "checks_syntax", True)
    conflict = report.hunk.conflict
    for s in tried:
        kept = classify(conflict, s.lines, lang)
        out["candidates"].append(
            {
                "text": "".join(s.lines),
                "confidence": s.confidence,
                "explanation": s.explanation,
                "source": s.source,
                "kind": kept.kind,
                "ours_dropped": kept.ours_dropped,
                "theirs_dropped": kept.theirs_dropped,
                "syntax_ok": (
                    not checks or syntax.ok(report.ours_start, len(conflict.ours), s.lines)
                ),
                "correct": key is not None and normalize("".join(s.lines)) == key,
            }
        )
    return out


def _work(args: tuple[dict[str, Any], Sequence[str], bool, bool]) -> list[HunkRow]:
    record, names, details, allow_discard = args
    try:
        return evaluate_record(record, names, details, allow_discard)
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
    out["by_kind"] = kind_metrics(located, name)
    return out


def kind_metrics(located: list[HunkRow], name: str) -> dict[str, dict[str, Any]]:
    """Per kind of answer: the applied answers (``proposed``, ``correct``, ``coverage`` of all
    located hunks, ``precision``) and the top answers (``top``, ``top_correct``,
    ``top_precision``), applied or not."""
    n = len(located)
    out: dict[str, dict[str, Any]] = {}
    for kind in KINDS:
        applied = [r for r in located if r.kinds.get(name) == kind]
        right = sum(1 for r in applied if r.outcomes[name][1])
        top = [r.top[name][1] for r in located if name in r.top and r.top[name][0] == kind]
        out[kind] = {
            "proposed": len(applied),
            "correct": right,
            "coverage": len(applied) / n if n else 0.0,
            "precision": right / len(applied) if applied else 0.0,
            "top": len(top),
            "top_correct": sum(top),
            "top_precision": sum(top) / len(top) if top else 0.0,
        }
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
    rows_path: str | Path | None = None,
    allow_discard: bool = False,
) -> dict[str, Any]:
    """Evaluate resolvers over records (in ``workers`` processes) and summarize; with
    ``rows_path``, also write every hunk's candidates there (:func:`write_rows`)."""
    rows: list[HunkRow] = []
    n_files = 0
    details = rows_path is not None
    jobs = ((rec, tuple(resolver_names), details, allow_discard) for rec in records)
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
    if rows_path is not None:
        write_rows(rows, rows_path)
    return summarize(rows, resolver_names, dataset, n_files)


def write_rows(rows: Iterable[HunkRow], path: str | Path) -> None:
    """Each hunk's ``detail`` as one JSON line of a gzip file (for ``scripts/fit_decision.py``)."""
    import gzip

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        for row in rows:
            if row.detail is not None:
                f.write(json.dumps(row.detail, sort_keys=True) + "\n")


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """The hunks :func:`write_rows` wrote."""
    import gzip

    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


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
    lines += ["", "By what the answer keeps (applied answers; top answers applied or not):", ""]
    lines.append(
        "| resolver | lang | kind | applied | coverage | precision | top | top precision |"
    )
    lines.append("|---|---|---|---:|---:|---:|---:|---:|")
    for name, res in report["resolvers"].items():
        for lang, m in [("all", res["overall"]), *res["by_lang"].items()]:
            for kind, k in m.get("by_kind", {}).items():
                if k["proposed"] or k["top"]:
                    lines.append(
                        f"| {name} | {lang} | {kind} | {k['proposed']} | {k['coverage']:.1%} | "
                        f"{k['precision']:.1%} | {k['top']} | {k['top_precision']:.1%} |"
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
