"""The resolver the server keeps loaded, and a cache of its answers per hunk.

The resolver is built once per (resolver name, model path) and reused for every document, so a
request never pays for loading the model. Answers are cached by :class:`Hunk` (the conflict with
its context): re-analysing a document after an edit elsewhere asks the resolver nothing new.

The server runs the engine on one worker thread and may stop it between batches: before each
batch :meth:`Engine.resolve` asks :attr:`Engine.cancelled` and raises :class:`Cancelled` when the
document has moved on (its answers so far stay cached).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from splice.lsp.settings import Settings
from splice.models.serving import FALLBACK_RESOLVER

if TYPE_CHECKING:
    from splice.resolver.resolvers import Hunk, Resolution, Resolver

#: Hunks whose answers are kept.
CACHE_SIZE = 4096
#: Hunks asked in one resolver call at most. A file with at most this many hunks is asked in one
#: call (as the driver asks it); a bigger one is asked only its new hunks, in batches of this size,
#: nearest the last edit first, with a chance to stop between batches.
BATCH = 64

Log = Callable[[str], None]


def build_resolver(settings: Settings, log: Log) -> Resolver:
    """The resolver ``settings`` ask for, or :data:`FALLBACK_RESOLVER` (logged) when it fails."""
    from splice.models.serving import load_resolver
    from splice.resolver.resolvers import get_resolver

    try:  # the registry's factory with the model folder: the driver's resolver, same options
        return load_resolver(settings.resolver, model_dir=settings.model_path, report=log)
    except Exception as exc:  # a missing model, an unknown name: never fatal
        log(f"cannot load resolver {settings.resolver!r}: {exc}; using {FALLBACK_RESOLVER}")
        return get_resolver(FALLBACK_RESOLVER)


class Cancelled(Exception):
    """The analysis asking was stopped: its document changed or closed."""


def _never() -> bool:
    return False


class Engine:
    """A loaded resolver with its answer cache."""

    def __init__(self, settings: Settings, log: Log) -> None:
        self.key = settings.engine_key
        self.log = log
        self.resolver = build_resolver(settings, log)
        self.cache: OrderedDict[Hunk, Resolution] = OrderedDict()
        #: Asked before each resolver call: true stops :meth:`resolve` with :class:`Cancelled`.
        self.cancelled: Callable[[], bool] = _never
        #: The index (among the hunks :meth:`resolve` gets) nearest the last edit, if known.
        self.focus: int | None = None

    @property
    def name(self) -> str:
        return self.resolver.name or type(self.resolver).__name__

    def threshold(self, settings: Settings) -> float:
        """The confidence a suggestion needs to count as confident."""
        from splice.resolver.decision import DecisionRule

        rule = DecisionRule.for_resolver(
            self.resolver, min_confidence=settings.confidence_threshold
        )
        return rule.min_confidence

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
        file's hunks are answered together, as the driver answers them). A file of more than
        :data:`BATCH` hunks asks only its new hunks, in batches, nearest :attr:`focus` first.

        Raises :class:`Cancelled` when :attr:`cancelled` says so before a batch."""
        asked = list(dict.fromkeys(hunks))
        new = [h for h in asked if h not in self.cache]
        if new:
            todo = asked if len(asked) <= BATCH else self._nearest_first(asked, new)
            for start in range(0, len(todo), BATCH):
                if self.cancelled():
                    raise Cancelled
                self._ask(todo[start : start + BATCH])
        out = []
        for hunk in hunks:
            self.cache.move_to_end(hunk)
            out.append(self.cache[hunk])
        while len(self.cache) > CACHE_SIZE:
            self.cache.popitem(last=False)
        return out

    def _ask(self, hunks: list[Hunk]) -> None:
        """One resolver call for ``hunks``; the answers go to the cache."""
        from splice.resolver.resolvers import Resolution, resolve_all

        try:
            answers = resolve_all(self.resolver, hunks)
        except Exception as exc:  # a resolver bug must not take the server down
            self.log(f"resolver {self.name} failed: {type(exc).__name__}: {exc}")
            answers = [Resolution(chosen=None) for _ in hunks]
        for hunk, answer in zip(hunks, answers, strict=True):
            self.cache[hunk] = answer

    def _nearest_first(self, asked: list[Hunk], new: list[Hunk]) -> list[Hunk]:
        """``new`` ordered by distance (in hunks) from :attr:`focus`, document order on ties."""
        if self.focus is None:
            return new
        where = {h: i for i, h in enumerate(asked)}
        focus = self.focus
        return sorted(new, key=lambda h: abs(where[h] - focus))
