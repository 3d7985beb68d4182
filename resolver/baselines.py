"""Baseline resolvers: always ours, always theirs, and the naive token-level merge."""

from __future__ import annotations

from splice.resolver.chunks import Conflict, split_lines
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion, register


class TakeSide(Resolver):
    """Always answer with one side of the hunk (confidence 1; a baseline, not a policy)."""

    checks_syntax = False

    def __init__(self, side: str) -> None:
        self.side = side
        self.name = side

    def resolve(self, hunk: Hunk) -> Resolution:
        lines = getattr(hunk.conflict, self.side)
        chosen = Suggestion(tuple(lines), 1.0, f"take {self.side}", self.name)
        return Resolution(chosen=chosen, suggestions=(chosen,))


class NaiveTokenMerge(Resolver):
    """Answer whenever the token-level merge of the hunk leaves no conflicting token."""

    name = "token-merge-naive"
    checks_syntax = False

    def resolve(self, hunk: Hunk) -> Resolution:
        from splice.resolver.tokenmerge import merge_hunk

        chunks = merge_hunk(hunk.conflict, hunk.lang)
        if any(isinstance(c, Conflict) for c in chunks):
            return Resolution(chosen=None)
        text = "".join(u for c in chunks for u in c.units)
        chosen = Suggestion(tuple(split_lines(text)), 1.0, "token-level merge", self.name)
        return Resolution(chosen=chosen, suggestions=(chosen,))


register("ours")(lambda: TakeSide("ours"))
register("theirs")(lambda: TakeSide("theirs"))
register("token-merge-naive")(NaiveTokenMerge)
