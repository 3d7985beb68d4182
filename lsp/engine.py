"""The resolver the server keeps loaded, and a cache of its answers per hunk.

The resolver is built once per (resolver name, model path) and reused for every document, so a
request never pays for loading the model. Answers are cached by :class:`Hunk` (the conflict with
its context): re-analysing a document after an edit elsewhere asks the resolver nothing new.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from splice.lsp.settings import Settings

from splice.config import FALLBACK_RESOLVER

if TYPE_CHECKING:
    from splice.resolver.resolvers import Hunk, Resolution, Resolver

#: Hunks whose answers are kept.
CACHE_SIZE = 4096

Log = Callable[[str], None]


def build_resolver(settings: Settings, log: Log) -> Resolver:
    """The resolver ``settings`` ask for, or :data:`FALLBACK_RESOLVER` (logged) when it fails."""
    from splice.resolver.resolvers import get_resolver

    from splice.config import load_resolver

    try:
        if settings.model_path and settings.resolver in ("auto", "model"):
            from splice.models.serving.neural import NeuralResolver

            return NeuralResolver(settings.model_path)
        return load_resolver(settings.resolver)
    except Exception as exc:  # a missing model, an unknown name: never fatal
        log(f"cannot load resolver {settings.resolver!r}: {exc}; using {FALLBACK_RESOLVER}")
        return get_resolver(FALLBACK_RESOLVER)


class Engine:
    """A loaded resolver with its answer cache."""

    def __init__(self, settings: Settings, log: Log) -> None:
        self.key = settings.engine_key
        self.log = log
        self.resolver = build_resolver(settings, log)
        self.cache: OrderedDict[Hunk, Resolution] = OrderedDict()

    @property
    def name(self) -> str:
        return getattr(self.resolver, "name", type(self.resolver).__name__)

    def threshold(self, settings: Settings) -> float:
        """The confidence a suggestion needs to count as confident."""
        from splice.resolver.pipeline import DEFAULT_MIN_CONFIDENCE

        if settings.confidence_threshold is not None:
            return settings.confidence_threshold
        own = getattr(self.resolver, "min_confidence", None)
        return DEFAULT_MIN_CONFIDENCE if own is None else float(own)

    def warm(self) -> None:
        """Run the resolver once on a tiny hunk (not cached): the first real answer is then fast."""
        from splice.resolver.chunks import Conflict
        from splice.resolver.resolvers import Hunk

        hunk = Hunk(Conflict(("x = 0\n",), ("x = 1\n",), ("x = 2\n",)), "python", path="warm.py")
        self.resolve([hunk])
        self.cache.pop(hunk, None)

    def resolve(self, hunks: Sequence[Hunk]) -> list[Resolution]:
        """The resolver's answer per hunk: cached answers when every hunk has one, else one
        batched call for all of them (the model's reranker reads the file's other hunks, so a
        file's hunks are answered together, as the driver answers them)."""
        from splice.resolver.resolvers import Resolution, resolve_all

        asked = list(dict.fromkeys(hunks))
        if any(h not in self.cache for h in asked):
            try:
                answers = resolve_all(self.resolver, asked)
            except Exception as exc:  # a resolver bug must not take the server down
                self.log(f"resolver {self.name} failed: {type(exc).__name__}: {exc}")
                answers = [Resolution(chosen=None) for _ in asked]
            for hunk, answer in zip(asked, answers, strict=True):
                self.cache[hunk] = answer
        out = []
        for hunk in hunks:
            self.cache.move_to_end(hunk)
            out.append(self.cache[hunk])
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return out
