"""The resolver interface: the one place where a way of resolving a line-level conflict plugs in.

A resolver looks at one line-level conflict hunk (with the file around it) and either proposes
the lines that replace it, with a confidence, or abstains (returns None). ``splice eval`` compares
resolvers by name; the git driver, ``splice resolve`` and the language server use one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from splice.resolver.chunks import Conflict

if TYPE_CHECKING:
    from splice.resolver.filecontext import FileContext


@dataclass(frozen=True)
class Hunk:
    """A line-level conflict and its surroundings in the merged file."""

    conflict: Conflict
    lang: str | None
    #: Merged lines before and after the hunk (the stable context, possibly truncated).
    before: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    path: str | None = None
    #: The whole file (shared by its hunks; None when the hunk was built alone).
    file: FileContext | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Suggestion:
    """One candidate resolution of a hunk."""

    lines: tuple[str, ...]
    confidence: float
    #: How it was obtained, e.g. "token-merge" or a pattern name per token conflict.
    explanation: str = ""


@dataclass(frozen=True)
class Resolution:
    """A resolver's answer: the chosen candidate (None = abstain) and ranked alternatives."""

    chosen: Suggestion | None
    suggestions: tuple[Suggestion, ...] = field(default_factory=tuple)


class Resolver(Protocol):
    name: str

    def resolve(self, hunk: Hunk) -> Resolution: ...


def resolve_all(resolver: Resolver, hunks: Sequence[Hunk]) -> list[Resolution]:
    """``resolver``'s answer for each of ``hunks``: one ``resolve_many`` call when it has one
    (a batched model run, and the model's reranker sees the file's other hunks), else hunk by
    hunk."""
    many = getattr(resolver, "resolve_many", None)
    if many is not None:
        return list(many(hunks))
    return [resolver.resolve(h) for h in hunks]


_REGISTRY: dict[str, Callable[[], Resolver]] = {}


def register(name: str) -> Callable[[Callable[[], Resolver]], Callable[[], Resolver]]:
    """Register a resolver factory under ``name`` (decorator)."""

    def deco(factory: Callable[[], Resolver]) -> Callable[[], Resolver]:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    """Import the modules that register Splice's own resolvers."""
    # "model" and "auto": cheap to import (onnxruntime loads only when a model is built)
    import splice.models.auto_resolver  # noqa: F401
    import splice.models.onnx_resolver  # noqa: F401
    import splice.resolver.baselines  # noqa: F401
    import splice.resolver.policy  # noqa: F401


def get_resolver(name: str) -> Resolver:
    """Build the resolver registered as ``name``."""
    _load_builtin()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown resolver {name!r} (known: {known})")
    return _REGISTRY[name]()


def resolver_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)
