"""The edits Splice offers: each replaces exactly one conflict region (markers included)."""

from __future__ import annotations

from lsprotocol import types
from splice.lsp.analysis import Analysis, Candidate, ConflictView


def choices(view: ConflictView) -> list[tuple[str, str]]:
    """(title, replacement text) of the plain resolutions: the sides, both orders, base, none."""
    ours, theirs = "".join(view.marked.ours), "".join(view.marked.theirs)
    out = [
        ("Take ours", ours),
        ("Take theirs", theirs),
        ("Take both (ours then theirs)", ours + theirs),
        ("Take both (theirs then ours)", theirs + ours),
    ]
    if view.base is not None:
        out.append(("Take base", "".join(view.base)))
    out.append(("Take none", ""))
    return out


def suggestion_title(candidate: Candidate) -> str:
    """How a suggestion is named in actions and lenses."""
    kept = f", {candidate.kept}" if candidate.kept else ""
    return f"Apply suggestion: {candidate.name}{kept} (confidence {candidate.confidence:.2f})"


def text_edit(view: ConflictView, text: str) -> types.TextEdit:
    return types.TextEdit(range=view.range, new_text=text)


def workspace_edit(
    analysis: Analysis, edits: list[types.TextEdit], document_changes: bool
) -> types.WorkspaceEdit:
    """A workspace edit of the analysed document version (versioned when the client can)."""
    if document_changes and analysis.version is not None:
        doc = types.OptionalVersionedTextDocumentIdentifier(
            uri=analysis.uri, version=analysis.version
        )
        return types.WorkspaceEdit(
            document_changes=[types.TextDocumentEdit(text_document=doc, edits=list(edits))]
        )
    return types.WorkspaceEdit(changes={analysis.uri: list(edits)})
