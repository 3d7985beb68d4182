"""Code actions: per conflict, the plain resolutions and the top-3 suggestions; per file, fix-all.

Each action carries its edit (a WorkspaceEdit replacing exactly the conflict region), so no
round trip is needed to apply it. ``source.fixAll.splice`` applies every confident suggestion.
"""

from __future__ import annotations

from collections.abc import Sequence

from lsprotocol import types
from splice.lsp import diagnostics, edits
from splice.lsp.analysis import Analysis, ConflictView

FIX_ALL = "source.fixAll.splice"


def wanted(kind: str, only: Sequence[str] | None) -> bool:
    """Whether an action of ``kind`` passes the client's ``only`` filter (a kind prefix)."""
    return not only or any(kind == o or kind.startswith(o + ".") for o in only)


def conflict_actions(
    analysis: Analysis, view: ConflictView, document_changes: bool, numbered: bool
) -> list[types.CodeAction]:
    """The quick fixes of one conflict: suggestions first, then the plain resolutions."""
    suffix = f" (conflict {view.index + 1})" if numbered else ""
    diag = [diagnostics.diagnostic(view)]
    preferred = view.confident
    titled = [(edits.suggestion_title(c) + suffix, c.text, c is preferred) for c in view.candidates]
    titled += [(title + suffix, text, False) for title, text in edits.choices(view)]
    return [
        types.CodeAction(
            title=title,
            kind=types.CodeActionKind.QuickFix,
            diagnostics=diag,
            is_preferred=is_preferred or None,
            edit=edits.workspace_edit(analysis, [edits.text_edit(view, text)], document_changes),
        )
        for title, text, is_preferred in titled
    ]


def fix_all(analysis: Analysis, document_changes: bool) -> types.CodeAction | None:
    """Every confident suggestion of the file in one edit (None when there is none)."""
    found = analysis.fix_all
    if not found:
        return None
    n = len(found)
    return types.CodeAction(
        title=f"Splice: apply {n} confident suggestion{'s' * (n != 1)}",
        kind=FIX_ALL,
        edit=edits.workspace_edit(
            analysis, [edits.text_edit(v, c.text) for v, c in found], document_changes
        ),
    )


def code_actions(
    analysis: Analysis, params: types.CodeActionParams, document_changes: bool
) -> list[types.CodeAction]:
    """The actions for the requested range, filtered by ``context.only``."""
    only = params.context.only
    out: list[types.CodeAction] = []
    if wanted(types.CodeActionKind.QuickFix, only):
        views = analysis.overlapping(params.range.start.line, params.range.end.line)
        for view in views:
            out += conflict_actions(analysis, view, document_changes, len(views) > 1)
    if analysis.conflicts and wanted(FIX_ALL, only):
        action = fix_all(analysis, document_changes)
        if action is not None:
            out.append(action)
    return out
