"""A generic diff of two sequences of hashable units: Myers' O(ND) algorithm.

Used on token lists (hundreds to a few thousand tokens) and on lines. The pipeline:

1. trim the common prefix and suffix;
2. drop units that occur only in one of the two sequences (they can never match, so the length
   of the longest common subsequence is unchanged; this is xdiff's "discard" step, exact);
3. run Myers' greedy forward search, recording one diagonal frontier per edit distance ``d``
   for the backtrack (memory about ``D**2 / 2`` integers);
4. if the edit distance passes ``max_cost``, fall back to anchoring on units that occur exactly
   once in both sequences (patience anchors, longest increasing run), diffing each gap with Myers
   again, and treating any gap that still passes ``max_cost`` as a plain replacement.

Below ``max_cost`` the result is a shortest edit script (a longest common subsequence); above it
the result is a valid, usually good, but not necessarily minimal diff.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Literal, NamedTuple

#: Default bound on the edit distance searched by Myers before falling back to anchors.
MAX_COST = 1000

Tag = Literal["equal", "replace", "delete", "insert"]


class Match(NamedTuple):
    """``a[a_start : a_start + size] == b[b_start : b_start + size]``."""

    a_start: int
    b_start: int
    size: int


class Opcode(NamedTuple):
    """An edit turning ``a[a1:a2]`` into ``b[b1:b2]`` (difflib's convention)."""

    tag: Tag
    a1: int
    a2: int
    b1: int
    b2: int


def matching_pairs(
    a: Sequence[Hashable], b: Sequence[Hashable], max_cost: int = MAX_COST
) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)`` with ``a[i] == b[j]`` of a common subsequence, increasing in both."""
    n, m = len(a), len(b)
    pre = 0
    while pre < n and pre < m and a[pre] == b[pre]:
        pre += 1
    suf = 0
    while suf < n - pre and suf < m - pre and a[n - 1 - suf] == b[m - 1 - suf]:
        suf += 1
    pairs = [(i, i) for i in range(pre)]
    mid_a, mid_b = a[pre : n - suf], b[pre : m - suf]
    if mid_a and mid_b:
        for i, j in _diff_core(mid_a, mid_b, max_cost):
            pairs.append((i + pre, j + pre))
    pairs.extend((n - suf + t, m - suf + t) for t in range(suf))
    return pairs


def matching_blocks(
    a: Sequence[Hashable], b: Sequence[Hashable], max_cost: int = MAX_COST
) -> list[Match]:
    """Maximal runs of matched units, in order (no sentinel block at the end)."""
    blocks: list[Match] = []
    for i, j in matching_pairs(a, b, max_cost):
        if blocks:
            last = blocks[-1]
            if last.a_start + last.size == i and last.b_start + last.size == j:
                blocks[-1] = Match(last.a_start, last.b_start, last.size + 1)
                continue
        blocks.append(Match(i, j, 1))
    return blocks


def opcodes(a: Sequence[Hashable], b: Sequence[Hashable], max_cost: int = MAX_COST) -> list[Opcode]:
    """The edit script from ``a`` to ``b`` as equal/replace/delete/insert ranges covering both."""
    ops: list[Opcode] = []
    i = j = 0
    for blk in [*matching_blocks(a, b, max_cost), Match(len(a), len(b), 0)]:
        if i < blk.a_start or j < blk.b_start:
            if i < blk.a_start and j < blk.b_start:
                tag: Tag = "replace"
            elif i < blk.a_start:
                tag = "delete"
            else:
                tag = "insert"
            ops.append(Opcode(tag, i, blk.a_start, j, blk.b_start))
        a_end, b_end = blk.a_start + blk.size, blk.b_start + blk.size
        if blk.size:
            ops.append(Opcode("equal", blk.a_start, a_end, blk.b_start, b_end))
        i, j = a_end, b_end
    return ops


def _diff_core(
    a: Sequence[Hashable], b: Sequence[Hashable], max_cost: int
) -> list[tuple[int, int]]:
    """Matched pairs of two sequences that share no prefix or suffix."""
    # Units as small integers; units absent from the other side are dropped (they never match).
    ids: dict[Hashable, int] = {}
    ia = [ids.setdefault(u, len(ids)) for u in a]
    in_a = len(ids)
    ib = [ids.setdefault(u, len(ids)) for u in b]
    seen_b = set(ib)
    keep_a = [i for i, u in enumerate(ia) if u in seen_b]
    keep_b = [j for j, u in enumerate(ib) if u < in_a]
    if not keep_a or not keep_b:
        return []
    ra = [ia[i] for i in keep_a]
    rb = [ib[j] for j in keep_b]
    pairs = _myers(ra, rb, max_cost)
    if pairs is None:
        pairs = _anchored(ra, rb, max_cost)
    return [(keep_a[i], keep_b[j]) for i, j in pairs]


def _myers(a: list[int], b: list[int], max_cost: int) -> list[tuple[int, int]] | None:
    """Matched pairs of a shortest edit script, or None when the distance exceeds ``max_cost``."""
    n, m = len(a), len(b)
    limit = min(n + m, max_cost)
    off = limit + 1
    v = [0] * (2 * limit + 3)
    # frontier[d][(k + d) // 2] = furthest x on diagonal k after d edits.
    frontier: list[list[int]] = []
    for d in range(limit + 1):
        for k in range(-d, d + 1, 2):
            if k == -d or (k != d and v[off + k - 1] < v[off + k + 1]):
                x = v[off + k + 1]
            else:
                x = v[off + k - 1] + 1
            y = x - k
            while x < n and y < m and a[x] == b[y]:
                x += 1
                y += 1
            v[off + k] = x
            if x >= n and y >= m:
                frontier.append(v[off - d : off + d + 1 : 2])
                return _backtrack(frontier, n, m)
        frontier.append(v[off - d : off + d + 1 : 2])
    return None


def _backtrack(frontier: list[list[int]], n: int, m: int) -> list[tuple[int, int]]:
    """Walk the recorded frontiers from ``(n, m)`` back to ``(0, 0)``, collecting snakes."""
    pairs: list[tuple[int, int]] = []
    x, y = n, m
    for d in range(len(frontier) - 1, 0, -1):
        prev = frontier[d - 1]
        k = x - y

        def at(kk: int, prev: list[int] = prev, dd: int = d - 1) -> int:
            return prev[(kk + dd) // 2]

        if k == -d or (k != d and at(k - 1) < at(k + 1)):
            pk = k + 1
            px = at(pk)
            sx = px  # a down move (insertion of b[py]) keeps x
        else:
            pk = k - 1
            px = at(pk)
            sx = px + 1  # a right move (deletion of a[px]) advances x
        while x > sx:
            x -= 1
            y -= 1
            pairs.append((x, y))
        x, y = px, px - pk
    while x > 0 and y > 0:
        x -= 1
        y -= 1
        pairs.append((x, y))
    pairs.reverse()
    return pairs


def _anchored(a: list[int], b: list[int], max_cost: int) -> list[tuple[int, int]]:
    """Fallback for very different sequences: unique common units as anchors, Myers in between."""
    count_a = Counter(a)
    count_b = Counter(b)
    pos_b = {u: j for j, u in enumerate(b) if count_b[u] == 1}
    cands = [(i, pos_b[u]) for i, u in enumerate(a) if count_a[u] == 1 and u in pos_b]
    anchors = _longest_increasing(cands)
    pairs: list[tuple[int, int]] = []
    pi = pj = 0
    for ai, bj in [*anchors, (len(a), len(b))]:
        if pi < ai and pj < bj:
            sub = _myers(a[pi:ai], b[pj:bj], max_cost)
            if sub is not None:
                pairs.extend((i + pi, j + pj) for i, j in sub)
        if ai < len(a):
            pairs.append((ai, bj))
        pi, pj = ai + 1, bj + 1
    return pairs


def _longest_increasing(cands: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest run of ``cands`` (sorted by first item) whose second items increase."""
    tails: list[int] = []  # smallest second item ending a run of each length
    tail_idx: list[int] = []
    back: list[int] = []
    for idx, (_, j) in enumerate(cands):
        pos = bisect_left(tails, j)
        if pos == len(tails):
            tails.append(j)
            tail_idx.append(idx)
        else:
            tails[pos] = j
            tail_idx[pos] = idx
        back.append(tail_idx[pos - 1] if pos else -1)
    out: list[tuple[int, int]] = []
    idx = tail_idx[-1] if tail_idx else -1
    while idx >= 0:
        out.append(cands[idx])
        idx = back[idx]
    out.reverse()
    return out
