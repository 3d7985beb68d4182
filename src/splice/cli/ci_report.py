"""Renderings of a ``splice ci`` report: text, JSON, Markdown (a pull-request comment), HTML.

The HTML page is self-contained (inline style, no script, nothing fetched) and shows each
conflict side by side: the base branch, the merge base, the head branch and the resolution.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from typing import Any

from splice.cli.ci import (
    RESOLVED,
    SUGGESTED,
    UNRESOLVED,
    CIReport,
    ConflictResult,
    FileResult,
)

_LABEL = {
    RESOLVED: "resolved",
    SUGGESTED: "left, with a suggestion",
    UNRESOLVED: "left, no suggestion",
}
_ICON = {RESOLVED: "✅", SUGGESTED: "💡", UNRESOLVED: "❌"}


def _conf(c: ConflictResult) -> str:
    return "" if c.confidence is None else f"{c.confidence:.2f}"


def _how(c: ConflictResult) -> str:
    """What was (or would be) applied, what it keeps, its confidence; or why nothing was."""
    if c.status == UNRESOLVED:
        return c.reason
    kept = f"; {c.kept}" if c.kept else ""
    out = f"{c.pattern or 'resolver'}{kept}, confidence {_conf(c)}"
    return f"{out}; not applied: {c.reason}" if c.status == SUGGESTED and c.reason else out


def _summary(report: CIReport) -> str:
    if report.clean:
        return f"{report.head_ref} merges cleanly into {report.base_ref}"
    n = report.counts()
    left = n[SUGGESTED] + n[UNRESOLVED]
    total = n[RESOLVED] + left
    parts = [f"{n[RESOLVED]} of {total} conflict{'s' * (total != 1)} resolved"]
    if left:
        parts.append(
            f"{left} left for a human ({n[SUGGESTED]} with a suggestion, {n[UNRESOLVED]} without)"
        )
    if n["other-files"]:
        parts.append(f"{n['other-files']} file(s) git could not merge by content")
    verdict = "a human is needed" if report.needs_human else "every conflict resolved"
    return f"{verdict}: " + ", ".join(parts)


# --------------------------------------------------------------------------- text


def to_text(report: CIReport) -> str:
    out = [f"splice ci: {report.head_ref} into {report.base_ref}: {_summary(report)}"]
    for f in report.files:
        if f.kind != "content":
            out.append(f"{f.path}: {f.kind}: not merged by git, left to a human")
            out += [f"  {m}" for m in f.messages]
            continue
        for c in f.conflicts:
            out.append(f"{f.path}:{c.line}: {_LABEL[c.status]} ({_how(c)})")
    if report.applied_branch:
        out.append(f"merge written to branch {report.applied_branch} ({report.applied_commit})")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- json


def _conflict_json(c: ConflictResult) -> dict[str, Any]:
    return {
        "line": c.line,
        "status": c.status,
        "pattern": c.pattern or None,
        "confidence": c.confidence,
        "reason": c.reason or None,
        "kept": c.kept or None,
        "base": "".join(c.base),
        "ours": "".join(c.ours),
        "theirs": "".join(c.theirs),
        "resolution": None if c.resolution is None else "".join(c.resolution),
    }


def to_json(report: CIReport) -> str:
    data = {
        "base": {"ref": report.base_ref, "commit": report.base_commit},
        "head": {"ref": report.head_ref, "commit": report.head_commit},
        "tree": report.tree,
        "status": report.status,
        "exit_code": report.exit_code,
        "resolver": report.resolver,
        "threshold": report.threshold,
        "counts": report.counts(),
        "files": [
            {
                "path": f.path,
                "kind": f.kind,
                "status": f.status,
                "messages": f.messages,
                "conflicts": [_conflict_json(c) for c in f.conflicts],
                "merged": f.merged,
            }
            for f in report.files
        ],
        "applied": (
            {"branch": report.applied_branch, "commit": report.applied_commit}
            if report.applied_branch
            else None
        ),
    }
    return json.dumps(data, indent=2) + "\n"


# --------------------------------------------------------------------------- markdown


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _fence(body: str) -> str:
    """A code fence longer than any run of backticks in ``body``."""
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    return "`" * max(3, longest + 1)


def _diff_lines(old: tuple[str, ...], new: tuple[str, ...]) -> list[str]:
    strip = [x.rstrip("\r\n") for x in old], [x.rstrip("\r\n") for x in new]
    diff = list(difflib.unified_diff(*strip, lineterm="", n=3))
    return [line for line in diff[2:] if not line.startswith("@@")] if diff else []


def conflict_diff(report: CIReport, f: FileResult, c: ConflictResult) -> str:
    """What each side changed from the merge base, then the resolution, as diff text."""
    out = [f"@@ {f.path}:{c.line}: {_LABEL[c.status]} @@"]
    out.append(f"@@ {report.base_ref} (ours) @@")
    out += _diff_lines(c.base, c.ours) or [" (no change)"]
    out.append(f"@@ {report.head_ref} (theirs) @@")
    out += _diff_lines(c.base, c.theirs) or [" (no change)"]
    if c.resolution is not None:
        title = "resolution" if c.status == RESOLVED else "suggestion (not applied)"
        out.append(f"@@ {title}: {c.pattern or 'resolver'} ({_conf(c)}) @@")
        out += [f"+{line.rstrip(chr(13) + chr(10))}" for line in c.resolution] or ["+"]
    return "\n".join(out)


def to_markdown(report: CIReport) -> str:
    icon = "✅" if not report.needs_human else "❌"
    out = [f"### {icon} Splice: `{report.head_ref}` into `{report.base_ref}`", ""]
    out.append(_summary(report) + ".")
    if report.clean:
        return "\n".join(out) + "\n"
    out += ["", "| File | Line | Status | Resolution | Keeps | Confidence |"]
    out += ["|---|---|---|---|---|---|"]
    for f in report.files:
        if f.kind != "content":
            kind = f"{_ICON[UNRESOLVED]} {f.kind} (not merged by git)"
            out.append(f"| `{_cell(f.path)}` | | {kind} | | | |")
            continue
        for c in f.conflicts:
            status = f"{_ICON[c.status]} {_LABEL[c.status]}"
            row = [f"`{_cell(f.path)}`", str(c.line), status, _cell(c.pattern), _cell(c.kept)]
            row.append(_conf(c))
            out.append("| " + " | ".join(row) + " |")
    for f in report.files:
        if f.kind != "content":
            out += ["", f"**`{f.path}`**: {f.kind}."]
            out += [f"> {_cell(m)}" for m in f.messages]
            continue
        for c in f.conflicts:
            body = conflict_diff(report, f, c)
            fence = _fence(body)
            out += ["", f"**`{f.path}:{c.line}`**: {_LABEL[c.status]}", f"{fence}diff", body, fence]
    out += ["", f"<sub>resolver `{report.resolver}`, threshold {report.threshold:.2f}</sub>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- html

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#1f2328;background:#fff}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{border:1px solid #d0d7de;padding:4px 8px;vertical-align:top}
th{background:#f6f8fa;text-align:left}
.resolved{color:#1a7f37}.suggested{color:#9a6700}.unresolved{color:#cf222e}
.conflicts-left{color:#cf222e}
.sbs{width:100%;table-layout:fixed}.sbs td{padding:0}
pre{margin:0;padding:6px;font:12px/1.4 ui-monospace,monospace;white-space:pre-wrap;
word-break:break-all}
.col-res pre{background:#dafbe1}.col-sug pre{background:#fff8c5}
.empty{color:#8c959f;font-style:italic}
"""


def _pre(lines: tuple[str, ...] | None) -> str:
    if lines is None:
        return '<pre class="empty">(none)</pre>'
    if not lines:
        return '<pre class="empty">(empty)</pre>'
    return f"<pre>{html.escape(''.join(lines))}</pre>"


def _side_by_side(report: CIReport, c: ConflictResult) -> str:
    last = "resolution" if c.status == RESOLVED else "suggestion"
    cls = "col-res" if c.status == RESOLVED else "col-sug"
    heads = [
        f"{html.escape(report.base_ref)} (ours)",
        "merge base",
        f"{html.escape(report.head_ref)} (theirs)",
        last,
    ]
    cells = [_pre(c.ours), _pre(c.base), _pre(c.theirs)]
    cells.append(f'<div class="{cls}">{_pre(c.resolution)}</div>')
    row_h = "".join(f"<th>{h}</th>" for h in heads)
    row_c = "".join(f"<td>{x}</td>" for x in cells)
    return f'<table class="sbs"><tr>{row_h}</tr><tr>{row_c}</tr></table>'


def to_html(report: CIReport) -> str:
    esc = html.escape
    title = f"Splice: {report.head_ref} into {report.base_ref}"
    body = [f"<h1>{esc(title)}</h1>", f'<p class="{report.status}">{esc(_summary(report))}</p>']
    if not report.clean:
        rows = []
        for f in report.files:
            if f.kind != "content":
                rows.append(
                    f'<tr><td>{esc(f.path)}</td><td></td><td class="{UNRESOLVED}">{esc(f.kind)}: '
                    "not merged by git</td><td></td><td></td><td></td></tr>"
                )
                continue
            for c in f.conflicts:
                rows.append(
                    f'<tr><td><a href="#{esc(f.path)}:{c.line}">{esc(f.path)}</a></td>'
                    f'<td>{c.line}</td><td class="{c.status}">{_LABEL[c.status]}</td>'
                    f"<td>{esc(c.pattern)}</td><td>{esc(c.kept)}</td><td>{_conf(c)}</td></tr>"
                )
        head = "<tr><th>File</th><th>Line</th><th>Status</th><th>Resolution</th><th>Keeps</th>"
        head += "<th>Confidence</th>"
        body.append(f'<table id="summary">{head}</tr>{"".join(rows)}</table>')
        for f in report.files:
            if f.kind != "content":
                body.append(f"<h2>{esc(f.path)}: {esc(f.kind)}</h2>")
                body += [f"<p>{esc(m)}</p>" for m in f.messages]
                continue
            for c in f.conflicts:
                anchor = esc(f"{f.path}:{c.line}")
                body.append(
                    f'<h2 id="{anchor}">{anchor}: <span class="{c.status}">'
                    f"{_LABEL[c.status]}</span></h2>"
                )
                if c.status != UNRESOLVED:
                    body.append(f"<p>{esc(_how(c))}</p>")
                elif c.reason:
                    body.append(f"<p>{esc(c.reason)}</p>")
                body.append(_side_by_side(report, c))
    body.append(
        f"<p><small>resolver {esc(report.resolver)}, threshold {report.threshold:.2f}; "
        f"{esc(report.base_commit[:12])} ← {esc(report.head_commit[:12])}</small></p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def render(report: CIReport, fmt: str) -> str:
    """The report in ``fmt``: text, json, markdown or html."""
    renderers = {"text": to_text, "json": to_json, "markdown": to_markdown, "html": to_html}
    return renderers[fmt](report)
