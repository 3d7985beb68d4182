"""Line-level three-way merge that reproduces ``git merge-file`` (git 2.39, default Myers diff).

The merge diffs base against each side with a reimplementation of git's xdiff Myers diff
(common prefix/suffix trimming, discarding of unmatched and too frequent lines, the heuristic
cut-offs, then change compaction without the indent heuristic, as merge-file uses none), lines
comparing as exact strings. The two edit scripts are merged as xdiff's merge does for each style:

* ``"merge"``: level ZEALOUS_ALNUM: every conflict is re-diffed (ours against theirs) and split
  into the parts that really differ; conflicts separated by at most 3 lines, or by lines without
  ASCII letters or digits, are joined again.
* ``"diff3"``: level capped at EAGER: conflicts are neither refined nor joined.
* ``"zdiff3"``: as diff3, then lines that ours and theirs share at the start and at the end of
  each conflict are moved out of it (returned as Stable chunks around it); the base part stays
  whole. A conflict may so end up with an empty ours and theirs.

Identical changes on both sides are not conflicts. For diff3 and zdiff3, ``Conflict.base`` is
what git prints between ``|||||||`` and ``=======``. In merge style git prints no base; there it
is the span of base lines that the hunk's ours and theirs lines are aligned with by the two diffs.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from splice.resolver.chunks import Chunk, Conflict, Stable

STYLES = ("merge", "diff3", "zdiff3")

_MAX_EQLIMIT = 1024  # lines occurring this often (at most) in the other file may be discarded
_SIMSCAN_WINDOW = 100  # how far the discard scan looks around a multi-match line
_KPDIS_RUN = 4
_MAX_COST_MIN = 256  # lower bound of the edit cost after which the search gives up
_HEUR_MIN_COST = 256  # edit cost after which the "good snake" heuristic may cut
_SNAKE_CNT = 20  # a snake this long (strictly longer) counts as good
_K_HEUR = 4
_LINE_MAX = (1 << 63) - 1

_ALNUM = re.compile(r"[A-Za-z0-9]")

# An edit script entry: (start in file 1, lines in file 1, start in file 2, lines in file 2).
Change = tuple[int, int, int, int]


def _bogosqrt(n: int) -> int:
    """xdiff's rough square root: the power of two 2**ceil(bits(n) / 2)."""
    i = 1
    while n > 0:
        i <<= 1
        n >>= 2
    return i


def _clean_mmatch(dis: bytearray, i: int, s: int, e: int) -> bool:
    """Whether the multi-match line ``i`` sits in a run of mostly unmatched lines (discard it)."""
    s = max(s, i - _SIMSCAN_WINDOW)
    e = min(e, i + _SIMSCAN_WINDOW)
    rdis0, rpdis0 = 0, 1
    r = 1
    while i - r >= s:
        v = dis[i - r]
        if v == 0:
            rdis0 += 1
        elif v == 2:
            rpdis0 += 1
        else:
            break
        r += 1
    if rdis0 == 0:
        return False
    rdis1, rpdis1 = 0, 1
    r = 1
    while i + r <= e:
        v = dis[i + r]
        if v == 0:
            rdis1 += 1
        elif v == 2:
            rpdis1 += 1
        else:
            break
        r += 1
    if rdis1 == 0:
        return False
    rdis1 += rdis0
    rpdis1 += rpdis0
    return rpdis1 * _KPDIS_RUN < rpdis1 + rdis1


def _split(
    ha1: list[int],
    off1: int,
    lim1: int,
    ha2: list[int],
    off2: int,
    lim2: int,
    kvdf: list[int],
    kvdb: list[int],
    need_min: bool,
    mxcost: int,
) -> tuple[int, int, bool, bool]:
    """Find a split point of the box on a (near) middle snake, as xdiff's ``xdl_split``.

    ``kvdf``/``kvdb`` are indexed by diagonal; negative diagonals use Python's wrap-around
    (the lists are long enough that the two ranges never meet).
    """
    dmin, dmax = off1 - lim2, lim1 - off2
    fmid, bmid = off1 - off2, lim1 - lim2
    odd = (fmid - bmid) & 1
    fmin = fmax = fmid
    bmin = bmax = bmid
    kvdf[fmid] = off1
    kvdb[bmid] = lim1
    ec = 0
    while True:
        ec += 1
        got_snake = False
        if fmin > dmin:
            fmin -= 1
            kvdf[fmin - 1] = -1
        else:
            fmin += 1
        if fmax < dmax:
            fmax += 1
            kvdf[fmax + 1] = -1
        else:
            fmax -= 1
        for d in range(fmax, fmin - 1, -2):
            a, b = kvdf[d - 1], kvdf[d + 1]
            i1 = a + 1 if a >= b else b
            i2 = i1 - d
            if i1 < lim1 and i2 < lim2 and ha1[i1] == ha2[i2]:
                prev1 = i1
                i1 += 1
                i2 += 1
                while i1 < lim1 and i2 < lim2 and ha1[i1] == ha2[i2]:
                    i1 += 1
                    i2 += 1
                if i1 - prev1 > _SNAKE_CNT:
                    got_snake = True
            kvdf[d] = i1
            if odd and bmin <= d <= bmax and kvdb[d] <= i1:
                return i1, i2, True, True

        if bmin > dmin:
            bmin -= 1
            kvdb[bmin - 1] = _LINE_MAX
        else:
            bmin += 1
        if bmax < dmax:
            bmax += 1
            kvdb[bmax + 1] = _LINE_MAX
        else:
            bmax -= 1
        for d in range(bmax, bmin - 1, -2):
            a, b = kvdb[d - 1], kvdb[d + 1]
            i1 = a if a < b else b - 1
            i2 = i1 - d
            if i1 > off1 and i2 > off2 and ha1[i1 - 1] == ha2[i2 - 1]:
                prev1 = i1
                i1 -= 1
                i2 -= 1
                while i1 > off1 and i2 > off2 and ha1[i1 - 1] == ha2[i2 - 1]:
                    i1 -= 1
                    i2 -= 1
                if prev1 - i1 > _SNAKE_CNT:
                    got_snake = True
            kvdb[d] = i1
            if not odd and fmin <= d <= fmax and i1 <= kvdf[d]:
                return i1, i2, True, True

        if need_min:
            continue

        if got_snake and ec > _HEUR_MIN_COST:
            best = 0
            spl = (0, 0)
            for d in range(fmax, fmin - 1, -2):
                dd = d - fmid if d > fmid else fmid - d
                i1 = kvdf[d]
                i2 = i1 - d
                v = (i1 - off1) + (i2 - off2) - dd
                if (
                    v > _K_HEUR * ec
                    and v > best
                    and off1 + _SNAKE_CNT <= i1 < lim1
                    and off2 + _SNAKE_CNT <= i2 < lim2
                ):
                    k = 1
                    while ha1[i1 - k] == ha2[i2 - k]:
                        if k == _SNAKE_CNT:
                            best = v
                            spl = (i1, i2)
                            break
                        k += 1
            if best > 0:
                return spl[0], spl[1], True, False

            best = 0
            for d in range(bmax, bmin - 1, -2):
                dd = d - bmid if d > bmid else bmid - d
                i1 = kvdb[d]
                i2 = i1 - d
                v = (lim1 - i1) + (lim2 - i2) - dd
                if (
                    v > _K_HEUR * ec
                    and v > best
                    and off1 < i1 <= lim1 - _SNAKE_CNT
                    and off2 < i2 <= lim2 - _SNAKE_CNT
                ):
                    k = 0
                    while ha1[i1 + k] == ha2[i2 + k]:
                        if k == _SNAKE_CNT - 1:
                            best = v
                            spl = (i1, i2)
                            break
                        k += 1
            if best > 0:
                return spl[0], spl[1], False, True

        if ec >= mxcost:
            fbest = fbest1 = -1
            for d in range(fmax, fmin - 1, -2):
                i1 = min(kvdf[d], lim1)
                i2 = i1 - d
                if lim2 < i2:
                    i1, i2 = lim2 + d, lim2
                if fbest < i1 + i2:
                    fbest, fbest1 = i1 + i2, i1
            bbest = bbest1 = _LINE_MAX
            for d in range(bmax, bmin - 1, -2):
                i1 = max(off1, kvdb[d])
                i2 = i1 - d
                if i2 < off2:
                    i1, i2 = off2 + d, off2
                if i1 + i2 < bbest:
                    bbest, bbest1 = i1 + i2, i1
            if (lim1 + lim2) - bbest < fbest - (off1 + off2):
                return fbest1, fbest - fbest1, True, False
            return bbest1, bbest - bbest1, False, True


def _compare(
    ha1: list[int],
    rindex1: list[int],
    rchg1: bytearray,
    ha2: list[int],
    rindex2: list[int],
    rchg2: bytearray,
) -> None:
    """Mark changed lines of the two reduced sequences in ``rchg1``/``rchg2`` (``xdl_recs_cmp``)."""
    n1, n2 = len(ha1), len(ha2)
    kvdf = [0] * (n1 + n2 + 3)
    kvdb = [0] * (n1 + n2 + 3)
    mxcost = max(_bogosqrt(n1 + n2 + 3), _MAX_COST_MIN)
    # Depth-first, low half before high half, as the recursion in xdiff.
    stack = [(0, n1, 0, n2, False)]
    while stack:
        off1, lim1, off2, lim2, need_min = stack.pop()
        while off1 < lim1 and off2 < lim2 and ha1[off1] == ha2[off2]:
            off1 += 1
            off2 += 1
        while off1 < lim1 and off2 < lim2 and ha1[lim1 - 1] == ha2[lim2 - 1]:
            lim1 -= 1
            lim2 -= 1
        if off1 == lim1:
            for k in range(off2, lim2):
                rchg2[rindex2[k]] = 1
        elif off2 == lim2:
            for k in range(off1, lim1):
                rchg1[rindex1[k]] = 1
        else:
            s1, s2, min_lo, min_hi = _split(
                ha1, off1, lim1, ha2, off2, lim2, kvdf, kvdb, need_min, mxcost
            )
            stack.append((s1, lim1, s2, lim2, min_hi))
            stack.append((off1, s1, off2, s2, min_lo))


def _compact(ha: list[int], rchg: bytearray, hao: list[int], rchgo: bytearray) -> None:
    """Slide groups of changed lines as far down as possible, then back up to line up with a
    change group of the other file when one was passed (``xdl_change_compact``, no indent
    heuristic). Adjacent groups that touch while sliding merge."""
    n, no = len(ha), len(hao)

    def nxt(r: bytearray, nrec: int, end: int) -> tuple[int, int] | None:
        if end == nrec:
            return None
        start = end + 1
        end = start
        while r[end]:
            end += 1
        return start, end

    def prev(r: bytearray, start: int) -> tuple[int, int] | None:
        if start == 0:
            return None
        end = start - 1
        start = end
        while r[start - 1]:
            start -= 1
        return start, end

    gs = ge = 0
    while rchg[ge]:
        ge += 1
    os_ = oe = 0
    while rchgo[oe]:
        oe += 1

    while True:
        if ge != gs:
            while True:
                groupsize = ge - gs
                end_matching_other = -1
                # Slide up as far as possible.
                while gs > 0 and ha[gs - 1] == ha[ge - 1]:
                    gs -= 1
                    rchg[gs] = 1
                    ge -= 1
                    rchg[ge] = 0
                    while rchg[gs - 1]:
                        gs -= 1
                    p = prev(rchgo, os_)
                    if p is None:
                        raise AssertionError("group sync broken sliding up")
                    os_, oe = p
                earliest_end = ge
                if oe > os_:
                    end_matching_other = ge
                # Slide down as far as possible.
                while ge < n and ha[gs] == ha[ge]:
                    rchg[gs] = 0
                    gs += 1
                    rchg[ge] = 1
                    ge += 1
                    while rchg[ge]:
                        ge += 1
                    q = nxt(rchgo, no, oe)
                    if q is None:
                        raise AssertionError("group sync broken sliding down")
                    os_, oe = q
                    if oe > os_:
                        end_matching_other = ge
                if groupsize == ge - gs:
                    break
            if ge != earliest_end and end_matching_other != -1:
                while oe == os_:
                    # Slide up by one to line up with the other file's change group.
                    gs -= 1
                    rchg[gs] = 1
                    ge -= 1
                    rchg[ge] = 0
                    while rchg[gs - 1]:
                        gs -= 1
                    p = prev(rchgo, os_)
                    if p is None:
                        raise AssertionError("group sync broken sliding to match")
                    os_, oe = p
        q = nxt(rchg, n, ge)
        if q is None:
            break
        gs, ge = q
        q = nxt(rchgo, no, oe)
        if q is None:
            raise AssertionError("group sync broken moving to next group")
        os_, oe = q


def diff_lines(a: Sequence[str], b: Sequence[str]) -> list[Change]:
    """git's default (Myers) line diff of ``a`` to ``b`` as an edit script.

    Each entry ``(i1, n1, i2, n2)`` replaces ``a[i1:i1+n1]`` by ``b[i2:i2+n2]``; entries are in
    order and separated by at least one common line.
    """
    ids: dict[str, int] = {}
    ha1 = [ids.setdefault(x, len(ids)) for x in a]
    ha2 = [ids.setdefault(x, len(ids)) for x in b]
    n1, n2 = len(ha1), len(ha2)
    # One extra zero at the end: it is both rchg[n] and (via index -1) rchg[-1].
    rchg1 = bytearray(n1 + 1)
    rchg2 = bytearray(n2 + 1)

    # Trim the common prefix and suffix.
    lim = min(n1, n2)
    pre = 0
    while pre < lim and ha1[pre] == ha2[pre]:
        pre += 1
    suf = 0
    lim -= pre
    while suf < lim and ha1[n1 - 1 - suf] == ha2[n2 - 1 - suf]:
        suf += 1
    dend1, dend2 = n1 - suf - 1, n2 - suf - 1

    if pre <= dend1 or pre <= dend2:
        cnt1 = [0] * len(ids)
        cnt2 = [0] * len(ids)
        for h in ha1:
            cnt1[h] += 1
        for h in ha2:
            cnt2[h] += 1
        red1, idx1 = _discard(ha1, cnt2, pre, dend1, rchg1)
        red2, idx2 = _discard(ha2, cnt1, pre, dend2, rchg2)
        _compare(red1, idx1, rchg1, red2, idx2, rchg2)
        _compact(ha1, rchg1, ha2, rchg2)
        _compact(ha2, rchg2, ha1, rchg1)

    script: list[Change] = []
    i1 = i2 = 0
    while i1 < n1 or i2 < n2:
        if rchg1[i1] or rchg2[i2]:
            s1, s2 = i1, i2
            while rchg1[i1]:
                i1 += 1
            while rchg2[i2]:
                i2 += 1
            script.append((s1, i1 - s1, s2, i2 - s2))
        else:
            i1 += 1
            i2 += 1
    return script


def _discard(
    ha: list[int], other_count: list[int], start: int, end: int, rchg: bytearray
) -> tuple[list[int], list[int]]:
    """Drop lines absent from the other file, and frequent lines amid such lines, from the
    Myers search (marking them changed); returns the kept lines' classes and indices."""
    mlim = min(_bogosqrt(len(ha)), _MAX_EQLIMIT)
    dis = bytearray(len(ha) + 1)
    for i in range(start, end + 1):
        nm = other_count[ha[i]]
        dis[i] = 0 if nm == 0 else (2 if nm >= mlim else 1)
    kept: list[int] = []
    index: list[int] = []
    for i in range(start, end + 1):
        v = dis[i]
        if v == 1 or (v == 2 and not _clean_mmatch(dis, i, start, end)):
            kept.append(ha[i])
            index.append(i)
        else:
            rchg[i] = 1
    return kept, index


@dataclass
class _Hunk:
    """xdiff's merge record: mode 0 conflict, 1 ours, 2 theirs, 4 identical (dropped), and
    Splice's 5: a conflict resolved with ``lines``."""

    mode: int
    i0: int
    chg0: int
    i1: int
    chg1: int
    i2: int
    chg2: int
    lines: tuple[str, ...] = ()


def _append(hunks: list[_Hunk], mode: int, i0: int, c0: int, i1: int, c1: int, i2: int, c2: int):
    """Add a hunk, or extend the last one into a conflict if they touch or overlap."""
    if hunks:
        m = hunks[-1]
        if i1 <= m.i1 + m.chg1 or i2 <= m.i2 + m.chg2:
            if mode != m.mode:
                m.mode = 0
            m.chg0 = i0 + c0 - m.i0
            m.chg1 = i1 + c1 - m.i1
            m.chg2 = i2 + c2 - m.i2
            return
    hunks.append(_Hunk(mode, i0, c0, i1, c1, i2, c2))


def _combine(
    x1: list[Change], x2: list[Change], n0: int, n1: int, n2: int, ours, theirs
) -> list[_Hunk]:
    """Walk both edit scripts (base->ours, base->theirs) in base order into merge hunks."""
    hunks: list[_Hunk] = []
    p1 = p2 = 0
    while p1 < len(x1) and p2 < len(x2):
        a0, ac0, a1, ac1 = x1[p1]
        b0, bc0, b2, bc2 = x2[p2]
        if a0 + ac0 < b0:
            _append(hunks, 1, a0, ac0, a1, ac1, b2 - b0 + a0, ac0)
            p1 += 1
            continue
        if b0 + bc0 < a0:
            _append(hunks, 2, b0, bc0, a1 - a0 + b0, bc0, b2, bc2)
            p2 += 1
            continue
        if a0 != b0 or ac0 != bc0 or ac1 != bc2 or ours[a1 : a1 + ac1] != theirs[b2 : b2 + bc2]:
            off = a0 - b0
            ffo = off + ac0 - bc0
            i0, i1, i2 = a0, a1, b2
            if off > 0:
                i0 -= off
                i1 -= off
            else:
                i2 += off
            c0 = a0 + ac0 - i0
            c1 = a1 + ac1 - i1
            c2 = b2 + bc2 - i2
            if ffo < 0:
                c0 -= ffo
                c1 -= ffo
            else:
                c2 += ffo
            _append(hunks, 0, i0, c0, i1, c1, i2, c2)
        e1, e2 = a0 + ac0, b0 + bc0
        if e1 >= e2:
            p2 += 1
        if e2 >= e1:
            p1 += 1
    for a0, ac0, a1, ac1 in x1[p1:]:
        _append(hunks, 1, a0, ac0, a1, ac1, a0 + n2 - n0, ac0)
    for b0, bc0, b2, bc2 in x2[p2:]:
        _append(hunks, 2, b0, bc0, b0 + n1 - n0, bc0, b2, bc2)
    return hunks


def _refine(hunks: list[_Hunk], ours: Sequence[str], theirs: Sequence[str]) -> list[_Hunk]:
    """Re-diff each conflict's ours against its theirs and keep only the differing parts."""
    out: list[_Hunk] = []
    for m in hunks:
        if m.mode or not m.chg1 or not m.chg2:
            out.append(m)
            continue
        script = diff_lines(ours[m.i1 : m.i1 + m.chg1], theirs[m.i2 : m.i2 + m.chg2])
        if not script:
            m.mode = 4
            out.append(m)
            continue
        for s1, c1, s2, c2 in script:
            out.append(_Hunk(0, m.i0, m.chg0, m.i1 + s1, c1, m.i2 + s2, c2))
    return out


def _simplify(hunks: list[_Hunk], ours: Sequence[str], alnum: bool) -> list[_Hunk]:
    """Join neighbouring conflicts separated by at most 3 lines or (``alnum``) by lines with no
    ASCII letter or digit."""
    out: list[_Hunk] = []
    for m in hunks:
        if out:
            p = out[-1]
            if p.mode == 0 and m.mode == 0:
                begin, end = p.i1 + p.chg1, m.i1
                if end - begin <= 3 or (
                    alnum and not any(_ALNUM.search(line) for line in ours[begin:end])
                ):
                    p.chg1 = m.i1 + m.chg1 - p.i1
                    p.chg2 = m.i2 + m.chg2 - p.i2
                    continue
        out.append(m)
    return out


def _zdiff3_trim(hunks: list[_Hunk], ours: Sequence[str], theirs: Sequence[str]) -> None:
    """Move lines common to ours and theirs at a conflict's start and end out of it."""
    for m in hunks:
        if m.mode:
            continue
        while m.chg1 and m.chg2 and ours[m.i1] == theirs[m.i2]:
            m.i1 += 1
            m.i2 += 1
            m.chg1 -= 1
            m.chg2 -= 1
        while m.chg1 and m.chg2 and ours[m.i1 + m.chg1 - 1] == theirs[m.i2 + m.chg2 - 1]:
            m.chg1 -= 1
            m.chg2 -= 1


def _base_span(script: list[Change], starts: list[int], start: int, end: int) -> tuple[int, int]:
    """The base range aligned with side lines ``[start, end)`` by a base->side ``script``
    (``starts``: its side start positions).

    A deletion exactly at ``start`` or ``end`` counts as inside the range.
    """

    def to_base(pos: int, is_end: bool) -> int:
        k = bisect_right(starts, pos) - 1
        if is_end and k >= 0 and starts[k] == pos and script[k][3] > 0:
            k -= 1  # a group starting at the exclusive end lies after the range
        if k < 0:
            return pos
        b0, bc, s2, sc = script[k]
        if s2 == pos and sc == 0:
            return b0 + bc if is_end else b0
        if s2 <= pos < s2 + sc and not is_end:
            return b0
        if s2 < pos <= s2 + sc and is_end:
            return b0 + bc
        return pos - (s2 + sc) + (b0 + bc)

    return to_base(start, False), to_base(end, True)


def merge_lines(
    base: Sequence[str],
    ours: Sequence[str],
    theirs: Sequence[str],
    style: str = "merge",
    scripts: tuple[list[Change], list[Change]] | None = None,
    resolved: Mapping[int, Sequence[str]] | None = None,
) -> list[Chunk]:
    """Three-way merge of line lists (as from ``split_lines``) exactly as ``git merge-file``.

    ``style`` is ``"merge"`` (default conflict style), ``"diff3"`` or ``"zdiff3"``. Adjacent
    stable units are returned as one Stable chunk; no chunk is empty except the sides of a
    Conflict. ``scripts``: ``diff_lines(base, ours)`` and ``diff_lines(base, theirs)`` when the
    caller already has them.

    ``resolved`` maps the index of a diff3 conflict (in the order ``style="diff3"`` lists them)
    to the lines that resolve it: those become stable, and the other conflicts are cut in
    ``style`` exactly as they would be without the resolved ones being conflicts (a resolved
    conflict separates its neighbours like a one-sided change does).
    """
    if style not in STYLES:
        raise ValueError(f"unknown conflict style {style!r} (expected one of {STYLES})")
    x1, x2 = scripts if scripts is not None else (diff_lines(base, ours), diff_lines(base, theirs))
    if not x1:
        return [Stable(tuple(theirs))] if theirs else []
    if not x2:
        return [Stable(tuple(ours))] if ours else []
    hunks = _combine(x1, x2, len(base), len(ours), len(theirs), ours, theirs)
    if resolved:
        k = 0
        for m in hunks:
            if m.mode == 0:
                if k in resolved:
                    m.mode, m.lines = 5, tuple(resolved[k])
                k += 1
    if style == "merge":
        hunks = _simplify(_refine(hunks, ours, theirs), ours, alnum=True)
    elif style == "zdiff3":
        _zdiff3_trim(hunks, ours, theirs)

    starts1 = [s for _, _, s, _ in x1]
    starts2 = [s for _, _, s, _ in x2]
    chunks: list[Chunk] = []
    pending: list[str] = []
    i = 0
    for m in hunks:
        if m.mode == 4:
            continue
        pending.extend(ours[i : m.i1])
        if m.mode == 1:
            pending.extend(ours[m.i1 : m.i1 + m.chg1])
        elif m.mode == 2:
            pending.extend(theirs[m.i2 : m.i2 + m.chg2])
        elif m.mode == 5:
            pending.extend(m.lines)
        else:
            if pending:
                chunks.append(Stable(tuple(pending)))
                pending = []
            if style == "merge":
                a0, a1 = _base_span(x1, starts1, m.i1, m.i1 + m.chg1)
                b0, b1 = _base_span(x2, starts2, m.i2, m.i2 + m.chg2)
                i0, e0 = min(a0, b0), max(a1, b1)
            else:
                i0, e0 = m.i0, m.i0 + m.chg0
            chunks.append(
                Conflict(
                    tuple(base[i0:e0]),
                    tuple(ours[m.i1 : m.i1 + m.chg1]),
                    tuple(theirs[m.i2 : m.i2 + m.chg2]),
                )
            )
        i = m.i1 + m.chg1
    pending.extend(ours[i:])
    if pending:
        chunks.append(Stable(tuple(pending)))
    return chunks
