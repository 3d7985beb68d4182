"""Token-level three-way merge (diff3 over tokens) and MergeBERT's two-level merge of a hunk.

The merge rule, precisely. Diff base->ours and base->theirs (:mod:`seqdiff`). A base token is
*kept by both* when both diffs match it; a maximal run of kept-by-both base tokens whose matches
are also contiguous on both sides is a *stable* region. Everything between two consecutive stable
regions (on all three sequences) is one *unstable* region, resolved as:

- ours equals base there: take theirs (a change on theirs only, including deletions);
- theirs equals base there: take ours;
- ours equals theirs there: take it (the same change on both sides);
- otherwise: a :class:`Conflict` holding the three token slices, untrimmed.

So two edits merge cleanly only when at least one base token that both sides kept lies between
them. Edits that *touch* (an insertion at the same base position as the other side's insertion, or
at the edge of a region the other side replaced or deleted; a replacement immediately next to the
other side's replacement) fall into one unstable region and conflict unless the results agree.
This is the rule of git's line merge, applied to tokens: since whitespace is a token, changing two
different words of one line merges (the space between them is kept by both), while two different
insertions at the same point always conflict. A conflict's ours and theirs slices are *not* trimmed
of a shared prefix or suffix (unlike git's "zealous" merge), so that the MergeBERT patterns see the
whole edit of each side (e.g. both appending ``", x"`` vs ``", y"`` keeps ``", "`` in each side).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

from splice.resolver.chunks import Chunk, Conflict, Stable, join
from splice.resolver.seqdiff import matching_pairs

Tokenizer = Callable[[str, str | None], list[str]]


def merge_tokens(base: Sequence[str], ours: Sequence[str], theirs: Sequence[str]) -> list[Chunk]:
    """Three-way merge of token sequences into Stable and Conflict chunks (see module doc).

    Consecutive stable tokens are gathered into one :class:`Stable`; empty chunks are never
    produced. Joining the Stable units and, for each conflict, either side reproduces a merge.
    """
    base_t, ours_t, theirs_t = tuple(base), tuple(ours), tuple(theirs)
    in_ours = dict(matching_pairs(base_t, ours_t))
    in_theirs = dict(matching_pairs(base_t, theirs_t))
    both = sorted(i for i in in_ours if i in in_theirs)

    out: list[Chunk] = []
    pending: list[str] = []  # stable tokens not yet emitted

    def flush() -> None:
        if pending:
            out.append(Stable(tuple(pending)))
            pending.clear()

    def unstable(o0: int, o1: int, a0: int, a1: int, b0: int, b1: int) -> None:
        o, a, b = base_t[o0:o1], ours_t[a0:a1], theirs_t[b0:b1]
        if a == o:
            pending.extend(b)
        elif b == o or a == b:
            pending.extend(a)
        else:
            flush()
            out.append(Conflict(o, a, b))

    o = a = b = 0
    for i in both:
        j, k = in_ours[i], in_theirs[i]
        if i == o and j == a and k == b:
            pending.append(base_t[i])
        else:
            unstable(o, i, a, j, b, k)
            pending.append(base_t[i])
        o, a, b = i + 1, j + 1, k + 1
    if o < len(base_t) or a < len(ours_t) or b < len(theirs_t):
        unstable(o, len(base_t), a, len(ours_t), b, len(theirs_t))
    flush()
    return out


def merge_hunk(
    conflict: Conflict, lang: str | None, tokenizer: Tokenizer | None = None
) -> list[Chunk]:
    """Token-merge a line-level conflict (MergeBERT's second level).

    Each side's lines are joined and tokenized (``tokenizer`` defaults to
    :func:`splice.resolver.tokenize.tokenize`). Joining the Stable units with, for each token
    conflict, the units of a resolution gives the text of the resolved hunk.
    """
    if tokenizer is None:
        return list(_merge_hunk_cached(conflict, lang))
    return merge_tokens(
        tokenizer(join(conflict.base), lang),
        tokenizer(join(conflict.ours), lang),
        tokenizer(join(conflict.theirs), lang),
    )


@lru_cache(maxsize=64)
def hunk_tokens(conflict: Conflict, lang: str | None) -> Conflict:
    """A line-level conflict with each side tokenized by the default tokenizer (cached: the
    token merge, the policy's edit shape and the model's pieces all need the same tokens)."""
    from splice.resolver.tokenize import tokenize

    return Conflict(
        tuple(tokenize(join(conflict.base), lang)),
        tuple(tokenize(join(conflict.ours), lang)),
        tuple(tokenize(join(conflict.theirs), lang)),
    )


@lru_cache(maxsize=64)
def _merge_hunk_cached(conflict: Conflict, lang: str | None) -> tuple[Chunk, ...]:
    """The default-tokenizer merge of a hunk, cached: the policy, the baselines and the
    expressibility search all ask for the same hunks in turn."""
    tokens = hunk_tokens(conflict, lang)
    return tuple(merge_tokens(tokens.base, tokens.ours, tokens.theirs))


def render(chunks: Sequence[Chunk], picks: Sequence[Sequence[str]] = ()) -> str:
    """Text of merged chunks, filling the i-th Conflict with ``picks[i]`` (its units).

    Raises ValueError when there are fewer picks than conflicts.
    """
    parts: list[str] = []
    it = iter(picks)
    for chunk in chunks:
        if isinstance(chunk, Stable):
            parts.extend(chunk.units)
        else:
            try:
                parts.extend(next(it))
            except StopIteration:
                raise ValueError("fewer picks than conflicts") from None
    return "".join(parts)
