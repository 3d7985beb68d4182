"""The resolver interface: the one place where a way of resolving a line-level conflict plugs in.

A resolver looks at one line-level conflict hunk (with the file around it) and either proposes
the lines that replace it, with a confidence, or abstains (returns None). ``splice eval`` compares
resolvers by name; the git driver, ``splice resolve`` and the language server use one of them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from splice.resolver.chunks import Conflict

if TYPE_CHECKING:
    from splice.resolver.filecontext import FileContext
    from splice.resolver.thresholds import Thresholds


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


#: The source of the answers the code language model wrote (no pattern gives them), and how
#: they are shown.
WRITTEN_SOURCE = "lm"
WRITTEN = "written by the model"


@dataclass(frozen=True)
class Suggestion:
    """One candidate resolution of a hunk."""

    lines: tuple[str, ...]
    confidence: float
    #: How it was obtained, in words (shown to users).
    explanation: str = ""
    #: The registered name of the resolver that produced it ("token-merge", "model", ...).
    source: str = ""


@dataclass(frozen=True)
class Resolution:
    """A resolver's answer: the chosen candidate (None = abstain) and ranked alternatives."""

    chosen: Suggestion | None
    suggestions: tuple[Suggestion, ...] = field(default_factory=tuple)


class Resolver:
    """The base class of every resolver: ``resolve`` is required, the rest has defaults.

    - ``resolve_many``: the answers for all hunks of one file (default: hunk by hunk); a model
      overrides it to batch its run and let its reranker see the file's other hunks.
    - ``min_confidence``: the calibrated confidence an answer that keeps both sides' edits needs
      to be applied (None: the pipeline's default).
    - ``discard_min_confidence``: the calibrated confidence an answer that drops one side's edits
      needs (None: never applied automatically; it stays a suggestion).
    - ``checks_syntax``: whether the pipeline's syntax check applies (baselines turn it off).
    - ``thresholds``: calibrated thresholds by group of answer (:mod:`splice.resolver.thresholds`),
      when the resolver has more than the two above (None: just those two).
    """

    name: str = ""
    min_confidence: float | None = None
    discard_min_confidence: float | None = None
    checks_syntax: bool = True
    thresholds: Thresholds | None = None

    def resolve(self, hunk: Hunk) -> Resolution:
        raise NotImplementedError

    def resolve_many(self, hunks: Sequence[Hunk]) -> list[Resolution]:
        return [self.resolve(h) for h in hunks]


def resolve_all(resolver: Resolver, hunks: Sequence[Hunk]) -> list[Resolution]:
    """``resolver``'s answer for each of ``hunks`` (one :meth:`Resolver.resolve_many` call)."""
    answers = list(resolver.resolve_many(hunks))
    if len(answers) != len(hunks):
        raise ValueError(f"{resolver.name}: {len(answers)} answers for {len(hunks)} hunks")
    return answers


#: A factory builds a resolver from options (e.g. ``model_dir``); unknown options are ignored.
Factory = Callable[..., Resolver]

_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Register a resolver factory under ``name`` (decorator)."""

    def deco(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return deco


def _load_builtin() -> None:
    """Import the resolver layer's own resolvers (serving registers the model's on import)."""
    import splice.resolver.baselines  # noqa: F401
    import splice.resolver.policy  # noqa: F401


def get_resolver(name: str, **options: Any) -> Resolver:
    """Build the resolver registered as ``name``, passing ``options`` its factory accepts."""
    import inspect

    _load_builtin()
    if name not in _REGISTRY:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise KeyError(f"unknown resolver {name!r} (known: {known})")
    factory = _REGISTRY[name]
    params = inspect.signature(factory).parameters
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        options = {k: v for k, v in options.items() if k in params}
    return factory(**{k: v for k, v in options.items() if v is not None})


def resolver_names() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)
