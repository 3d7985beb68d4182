"""One Information diagnostic per conflict, naming the suggestion and its confidence."""

from __future__ import annotations

from lsprotocol import types
from splice.lsp.analysis import Analysis, ConflictView

SOURCE = "splice"
CODE = "merge-conflict"
NO_SUGGESTION = "no confident suggestion"
PENDING = "Merge conflict (Splice is still computing a suggestion)"


def message(view: ConflictView) -> str:
    """E.g. "Merge conflict: suggested resolution ours_theirs (confidence 0.93)"."""
    chosen = view.confident
    if chosen is not None:
        name, p = chosen.name, chosen.confidence
        return f"Merge conflict: suggested resolution {name} (confidence {p:.2f})"
    top = view.top
    if top is not None:
        why = f" (best: {top.name}, confidence {top.confidence:.2f})"
    elif view.base is None:
        why = " (no base: merge-style markers; diff3 markers or an unmerged file give one)"
    else:
        why = ""
    return f"Merge conflict: {NO_SUGGESTION}{why}"


def diagnostic(view: ConflictView, pending: bool = False) -> types.Diagnostic:
    return types.Diagnostic(
        range=view.range,
        message=PENDING if pending and not view.candidates else message(view),
        severity=types.DiagnosticSeverity.Information,
        source=SOURCE,
        code=CODE,
        data={"conflict": view.index},
    )


def diagnostics(analysis: Analysis, pending: bool = False) -> list[types.Diagnostic]:
    """The document's diagnostics (empty when the markers are gone); ``pending``: the analysis
    holds the markers only, the resolver has not answered yet."""
    return [diagnostic(view, pending) for view in analysis.conflicts]
