"""The git integration's defaults (cheap to import: the driver's start-up path).

What Splice reads from git (``merge.conflictStyle``, ``conflict-marker-size``, ``splice.*``) is
read through :mod:`splice.data.git`; the resolver by name through
:func:`splice.models.serving.load_resolver`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splice.data.git import DEFAULT_MARKER_SIZE, STYLES, conflict_style, marker_size_for

if TYPE_CHECKING:
    from splice.resolver.resolvers import Resolver

__all__ = [
    "DEFAULT_MARKER_SIZE",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_RESOLVER",
    "DEFAULT_TIMEOUT",
    "STYLES",
    "TOOL_NAME",
    "conflict_style",
    "load_resolver",
    "marker_size_for",
]

#: The resolver the driver, the mergetool and ``splice resolve`` use unless told otherwise
#: (the same as :data:`splice.models.serving.DEFAULT_RESOLVER`, without importing it).
DEFAULT_RESOLVER = "auto"
#: Seconds the driver gives the resolver before falling back to git's own merge.
DEFAULT_TIMEOUT = 10.0
#: Bytes above which (for any of the three inputs) the driver leaves the merge to git.
DEFAULT_MAX_SIZE = 2 * 1024 * 1024
#: The name of the merge driver and of the mergetool in git's configuration.
TOOL_NAME = "splice"


def load_resolver(name: str, *, model_dir: str | None = None) -> Resolver:
    """:func:`splice.models.serving.load_resolver` (imported on first use)."""
    from splice.models.serving import load_resolver as load

    return load(name, model_dir=model_dir)
