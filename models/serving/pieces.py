"""Pieces: the conflicts the classifier labels, cut from a line-level hunk in two ways.

- Token route: the hunk is token-merged (:func:`~splice.resolver.tokenmerge.merge_hunk`); each
  token conflict is a piece, its context the text around it (the hunk's stable tokens, the other
  token conflicts taken as ours, and the file lines around the hunk).
- Hunk route: the whole hunk is one piece, its sides tokenized, its context the file lines before
  and after.

A piece's class is one of the 10 :class:`~splice.resolver.patterns.Pattern`; :func:`assemble`
turns a choice of patterns back into the hunk's resolved lines (token route: one pattern per token
conflict; hunk route: one pattern applied to the hunk's lines, lines as units).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

from splice.resolver.chunks import Chunk, Conflict, Stable, join, split_lines
from splice.resolver.patterns import Pattern, apply
from splice.resolver.resolvers import Hunk
from splice.resolver.tokenmerge import hunk_tokens, merge_hunk, render

#: Beyond this many token conflicts a hunk gets only its hunk-route piece (as in ``expressible``).
MAX_TOKEN_CONFLICTS = 64


class Route(IntEnum):
    TOKEN = 0
    HUNK = 1


@dataclass(frozen=True)
class Piece:
    """One conflict to classify, with its context and what is needed to assemble a resolution."""

    route: Route
    #: The conflict, code tokens as units.
    conflict: Conflict
    prefix: str
    suffix: str
    #: The line-level conflict of the hunk this piece comes from.
    lines: Conflict
    #: Token route: index of this conflict among the hunk's token conflicts (-1: hunk route).
    index: int = -1
    #: Token route: the hunk's token chunks (stable tokens and token conflicts).
    chunks: tuple[Chunk, ...] = ()


def token_pieces(hunk: Hunk, chunks: Sequence[Chunk] | None = None) -> list[Piece]:
    """One piece per token conflict of the hunk (none when its token merge is clean)."""
    if chunks is None:
        chunks = merge_hunk(hunk.conflict, hunk.lang)
    chunks = tuple(chunks)
    before, after = join(hunk.before), join(hunk.after)
    # Text of each chunk with every conflict taken as ours, for the context of the others.
    texts = [join(c.units) if isinstance(c, Stable) else join(c.ours) for c in chunks]
    pieces: list[Piece] = []
    for pos, chunk in enumerate(chunks):
        if isinstance(chunk, Conflict):
            pieces.append(
                Piece(
                    route=Route.TOKEN,
                    conflict=chunk,
                    prefix=before + "".join(texts[:pos]),
                    suffix="".join(texts[pos + 1 :]) + after,
                    lines=hunk.conflict,
                    index=len(pieces),
                    chunks=chunks,
                )
            )
    return pieces


def hunk_piece(hunk: Hunk) -> Piece:
    """The whole hunk as one piece (sides tokenized)."""
    c = hunk.conflict
    tokens = hunk_tokens(c, hunk.lang)
    return Piece(Route.HUNK, tokens, join(hunk.before), join(hunk.after), lines=c)


def hunk_pieces(hunk: Hunk, max_token_conflicts: int = MAX_TOKEN_CONFLICTS) -> list[Piece]:
    """The token-route pieces of ``hunk`` (in order; none beyond ``max_token_conflicts``), then
    its hunk-route piece."""
    chunks = merge_hunk(hunk.conflict, hunk.lang)
    n = sum(isinstance(c, Conflict) for c in chunks)
    pieces = token_pieces(hunk, chunks) if n <= max_token_conflicts else []
    pieces.append(hunk_piece(hunk))
    return pieces


def assemble(pieces: Sequence[Piece], patterns: Sequence[Pattern]) -> tuple[str, ...]:
    """The hunk's resolved lines for a choice of patterns.

    Either every token-route piece of one hunk (in order) with one pattern each, or a single
    hunk-route piece with one pattern. A token-clean hunk is assembled from no pieces only through
    :func:`~splice.resolver.tokenmerge.render` of its chunks, so ``pieces`` may not be empty.
    """
    if not pieces:
        raise ValueError("no pieces to assemble")
    if len(pieces) != len(patterns):
        raise ValueError(f"{len(pieces)} pieces but {len(patterns)} patterns")
    first = pieces[0]
    if first.route == Route.HUNK:
        if len(pieces) != 1:
            raise ValueError("a hunk-route resolution takes exactly one piece")
        return apply(patterns[0], first.lines)
    if any(p.route != Route.TOKEN or p.chunks != first.chunks for p in pieces):
        raise ValueError("token-route pieces of one hunk expected")
    if [p.index for p in pieces] != list(range(len(pieces))):
        raise ValueError("every token conflict of the hunk, in order, expected")
    picks = [apply(pat, p.conflict) for p, pat in zip(pieces, patterns, strict=True)]
    return tuple(split_lines(render(first.chunks, picks)))
