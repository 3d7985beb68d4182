"""Splice: neural merge-conflict resolution and a model-merging engine.

The library in three calls (everything loads lazily, so ``import splice`` stays cheap)::

    import splice

    outcome = splice.merge(base, ours, theirs, path="app.py")   # three versions of a file
    outcome = splice.resolve(text_with_markers, path="app.py")  # a file that holds markers
    outcome.text        # the merged text: resolved conflicts applied, the rest with markers
    outcome.hunks       # one report per conflict: the answer applied (None: markers kept),
                        # what it keeps ("both sides kept"), or why it was left
    outcome.summary()   # "2 of 3 conflicts resolved (both sides kept), 1 left"

Both go through the one pipeline (:mod:`splice.resolver.pipeline`) with the resolver the git
driver uses (``auto``: the shipped model with the token-merge policy); the merging engine is
:mod:`splice.models.merging`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from splice.resolver.pipeline import MergeOutcome

__version__ = "0.1.0"
__all__ = ["merge", "resolve"]


def merge(
    base: str, ours: str, theirs: str, *, path: str | None = None, resolver: str = "auto", **kw: Any
) -> MergeOutcome:
    """Merge three versions of a file like ``git merge-file`` and resolve what Splice is sure of
    (keyword arguments of :func:`splice.resolver.pipeline.merge_file`: ``style``,
    ``marker_size``, ``labels``, ``min_confidence``, ``rule``)."""
    from splice.models.serving import load_resolver
    from splice.resolver.pipeline import merge_file

    return merge_file(base, ours, theirs, load_resolver(resolver), path=path, **kw)


def resolve(
    text: str,
    *,
    path: str | None = None,
    stages: tuple[str, str, str] | None = None,
    resolver: str = "auto",
    **kw: Any,
) -> MergeOutcome:
    """Resolve what Splice is sure of among the conflicts marked in ``text`` (``stages``: the
    file's base, ours and theirs from git's index, when the markers carry no base)."""
    from splice.models.serving import load_resolver
    from splice.resolver.pipeline import merge_marked

    return merge_marked(text, load_resolver(resolver), path=path, stages=stages, **kw)
