"""What the front ends load: a resolver by name, the neural ones registered, never torch.

Importing this module registers ``model`` and ``auto`` beside the resolver layer's own resolvers,
so every front end (driver, mergetool, ``splice resolve``, the language server, ``splice ci``,
``splice eval``) builds the same resolver from the same name and options.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import splice.models.serving.auto  # noqa: F401  (registers "auto")
import splice.models.serving.neural  # noqa: F401  (registers "model")
from splice.models.serving.neural import ModelUnavailable, notice
from splice.resolver.resolvers import Resolver, get_resolver

#: The resolver every front end uses unless told otherwise: the neural ``model`` with the
#: token-merge policy when a model is installed, else ``token-merge`` alone.
DEFAULT_RESOLVER = "auto"
#: What is used when the model was asked for but cannot be loaded.
FALLBACK_RESOLVER = "token-merge"


def load_resolver(
    name: str,
    *,
    model_dir: str | Path | None = None,
    report: Callable[[str], None] | None = None,
) -> Resolver:
    """Build the resolver registered as ``name`` (``model_dir``: a model folder other than the
    shipped one). When the model cannot be loaded, says so in one line (``report``, default
    stderr) and returns :data:`FALLBACK_RESOLVER`, so a merge never fails for want of a model;
    an unknown name raises KeyError."""
    try:
        return get_resolver(name, model_dir=None if model_dir is None else str(model_dir))
    except ModelUnavailable as exc:
        if report is None:
            notice(exc, FALLBACK_RESOLVER)
        else:
            report(f"model unavailable ({' '.join(str(exc).split())}): using {FALLBACK_RESOLVER}")
        return get_resolver(FALLBACK_RESOLVER)
