"""CodeLens: one per conflict, showing the top suggestion; running it applies the suggestion."""

from __future__ import annotations

from lsprotocol import types
from splice.lsp.analysis import Analysis, ConflictView

#: The command a lens runs: arguments are the document URI and the conflict's opening line.
APPLY = "splice.applySuggestion"


#: The title of a lens whose suggestion is still being computed.
PENDING = "Splice: computing a suggestion…"


def title(view: ConflictView, pending: bool = False) -> str:
    top = view.top
    if top is None:
        return PENDING if pending else "Splice: no suggestion"
    return f"Splice: apply {top.name} (confidence {top.confidence:.2f})"


def lens(analysis: Analysis, view: ConflictView, pending: bool = False) -> types.CodeLens:
    start = view.range.start
    command = types.Command(title=title(view, pending), command="")
    if view.top is not None:
        command = types.Command(
            title=title(view), command=APPLY, arguments=[analysis.uri, view.first_line]
        )
    return types.CodeLens(range=types.Range(start, start), command=command)


def lenses(analysis: Analysis, pending: bool = False) -> list[types.CodeLens]:
    """One lens per conflict; ``pending``: the resolver has not answered yet."""
    return [lens(analysis, view, pending) for view in analysis.conflicts]
