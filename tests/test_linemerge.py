"""``merge_lines`` against the real ``git merge-file`` (hand-made cases, fuzzing, real data)."""

from __future__ import annotations

import importlib.util
import json
import lzma
import random
import shutil
import sys
from pathlib import Path

import pytest
from splice.resolver.chunks import Conflict, Stable, split_lines
from splice.resolver.linemerge import diff_lines, merge_lines

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")

_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "git_agreement.py"
_spec = importlib.util.spec_from_file_location("git_agreement", _SCRIPT)
assert _spec and _spec.loader
ga = importlib.util.module_from_spec(_spec)
sys.modules["git_agreement"] = ga
_spec.loader.exec_module(ga)

STYLES = ("merge", "diff3", "zdiff3")


def L(text: str) -> list[str]:
    """Lines from a compact spec: ``"a b c"`` -> ``["a\\n", "b\\n", "c\\n"]``."""
    return [w + "\n" for w in text.split()]


def check(base: list[str], ours: list[str], theirs: list[str], style: str) -> list:
    """Assert that our merge is git's, segment by segment; return our chunks."""
    chunks = merge_lines(base, ours, theirs, style)
    for c in chunks:
        assert not isinstance(c, Stable) or c.units, "empty Stable chunk"
    git = ga.parse_git(*ga.git_merge("".join(base), "".join(ours), "".join(theirs), style))
    mine = ga.segments(chunks, style)
    assert len(mine) == len(git), (mine, git)
    for m, g in zip(mine, git, strict=True):
        assert ga.segment_equal(m, g), (m, g)
    return chunks


def conflicts(chunks: list) -> list[Conflict]:
    return [c for c in chunks if isinstance(c, Conflict)]


@pytest.mark.parametrize("style", STYLES)
def test_identical_change_is_not_a_conflict(style: str) -> None:
    chunks = check(L("a b c d"), L("a B c d"), L("a B c d"), style)
    assert chunks == [Stable(tuple(L("a B c d")))]


@pytest.mark.parametrize("style", STYLES)
def test_one_sided_changes_merge_cleanly(style: str) -> None:
    base = L("a b c d e f g")
    chunks = check(base, L("a X c d e f g"), L("a b c d e Y g"), style)
    assert chunks == [Stable(tuple(L("a X c d e Y g")))]
    assert check(base, base, L("a b Z"), style) == [Stable(tuple(L("a b Z")))]
    assert check(base, L("q"), base, style) == [Stable(tuple(L("q")))]
    assert check([], [], [], style) == []


@pytest.mark.parametrize("style", STYLES)
def test_adjacent_changes_conflict(style: str) -> None:
    """Changes touching in base (no common line between them) conflict."""
    chunks = check(L("a b c d"), L("a X c d"), L("a b Y d"), style)
    assert len(conflicts(chunks)) == 1


def test_refinement_shrinks_and_splits_conflicts_only_in_merge_style() -> None:
    base = L("a b c d e f g")
    ours = L("a B1 m1 m2 m3 m4 F1 g")
    theirs = L("a B2 m1 m2 m3 m4 F2 g")
    diff3 = conflicts(check(base, ours, theirs, "diff3"))
    merge = conflicts(check(base, ours, theirs, "merge"))
    assert len(diff3) == 1 and diff3[0].ours == tuple(ours[1:7])
    assert len(merge) == 2
    assert merge[0].ours == tuple(L("B1")) and merge[1].theirs == tuple(L("F2"))
    # git prints no base in merge style; ours is the base span aligned with the hunk.
    assert merge[0].base == tuple(L("b c d e f")) == diff3[0].base
    # Identical lines at the start and end of both sides leave the conflict (merge style only).
    ours, theirs = L("a X Y1 Z g"), L("a X Y2 Z g")
    m = conflicts(check(base, ours, theirs, "merge"))
    assert [(c.ours, c.theirs) for c in m] == [(tuple(L("Y1")), tuple(L("Y2")))]
    assert conflicts(check(base, ours, theirs, "diff3"))[0].ours == tuple(L("X Y1 Z"))


@pytest.mark.parametrize("gap", [1, 3, 4, 6])
def test_conflicts_joined_across_short_or_alnum_free_gaps(gap: int) -> None:
    """Refined conflicts are joined when at most 3 lines, or only non-alnum lines, separate
    them; this applies to the merge style only."""
    for filler in ("w", "}", "{", "\t", "//", "ä"):
        mid = [f"{filler}\n" if filler != "w" else f"w{i}\n" for i in range(gap)]
        base = L("a b") + mid + L("d e")
        ours = L("a B1") + mid + L("D1 e")
        theirs = L("a B2") + mid + L("D2 e")
        for style in STYLES:
            n = len(conflicts(check(base, ours, theirs, style)))
            if style != "merge":
                assert n == 2
        merged = conflicts(merge_lines(base, ours, theirs))
        # C's isalnum: only ASCII letters and digits count.
        joined = gap <= 3 or filler in ("}", "{", "\t", "//", "ä")
        assert len(merged) == (1 if joined else 2), (gap, filler)


@pytest.mark.parametrize("style", STYLES)
def test_refined_conflict_that_vanishes(style: str) -> None:
    """Overlapping changes whose union is the same on both sides (merge style: no conflict)."""
    base = L("a b c d e")
    check(base, L("a X Y d e"), L("a X Y d e"), style)
    check(base, L("a X c Y e"), L("a X Y e"), style)
    check(base, L("a b X d e"), L("a Y X Z e"), style)


def test_zdiff3_moves_common_edges_out() -> None:
    base = L("a b c d e")
    ours = L("a P Q1 R e")
    theirs = L("a P Q2 R e")
    chunks = check(base, ours, theirs, "zdiff3")
    assert chunks == [
        Stable(tuple(L("a P"))),
        Conflict(tuple(L("b c d")), tuple(L("Q1")), tuple(L("Q2"))),
        Stable(tuple(L("R e"))),
    ]
    # One side a prefix of the other: one side empties; both empty is still a conflict.
    check(base, L("a P Q e"), L("a P Q S e"), "zdiff3")
    check(base, L("a P b Q d e"), L("a P Q e"), "zdiff3")
    check(L("a b c d e f"), L("a X c Y e f"), L("a X d Y e f"), "zdiff3")


@pytest.mark.parametrize("style", STYLES)
def test_missing_final_newline_and_crlf(style: str) -> None:
    base = split_lines("a\nb\nc")
    check(base, split_lines("a\nb\nX"), split_lines("a\nb\nY"), style)
    check(base, split_lines("a\nb\nc\n"), split_lines("a\nb\nc"), style)
    check(base, split_lines("a\nb\nc\n"), split_lines("a\nB\nc"), style)
    crlf = split_lines("a\r\nb\r\nc\r\nd\r\n")
    check(crlf, split_lines("a\r\nX\r\nc\r\nd\r\n"), split_lines("a\r\nY\r\nc\r\nd\r\n"), style)
    # "x\n" and "x\r\n" and "x" are three different lines.
    check(L("x y"), split_lines("x\r\ny\n"), split_lines("x\ny"), style)


@pytest.mark.parametrize("style", STYLES)
def test_compaction_slides_groups(style: str) -> None:
    """Ambiguous insertions/deletions slide down, or back up to meet the other file's group."""
    base = L("a b c a b c x")
    check(base, L("a b c a b c a b c x"), L("a b c a b c x y"), style)
    check(L("s { x } { y } t"), L("s { x } { z } { y } t"), L("s { x } { y } t u"), style)
    check(L("a b c d e f"), L("a c d e f"), L("a b c d f"), style)
    check(L("a x a x a b"), L("a x a b"), L("a x a x a x a b"), style)


@pytest.mark.parametrize("style", STYLES)
def test_no_indent_heuristic(style: str) -> None:
    """``git diff`` (indent heuristic on) puts ours' insertion before base line 3, clear of
    theirs' change of line 4; merge-file slides it fully down, onto that change: a conflict."""
    base = split_lines("    x = 1\n}\n    x = 1\n}\n    return 1\n    x = 1\n    pass\n}\nA\n")
    ours = base[:3] + split_lines("}\n}\n    return 1\n\n") + base[3:]
    theirs = base[:4] + ["    return 2\n"] + base[5:]
    assert diff_lines(base, ours) == [(4, 0, 4, 4)]
    assert len(conflicts(check(base, ours, theirs, style))) == 1


def test_diff_discards_unmatched_and_frequent_lines() -> None:
    """A line frequent in the other file amid lines found nowhere else is dropped from the
    search, which makes the script differ from a minimal diff: git agrees with ours."""
    # "}" is common (>= sqrt(n) times) in b; in a it sits between lines b lacks.
    a = L("u1 u2 } u3 u4 } u5 u6 } u7 u8") + L("k1 k2 k3")
    b = L("} } } } } } } } } v1 v2 } } k1 k2 k3 } }")
    for style in STYLES:
        check(a, b, L("k1 k2 k3"), style)
        check(a, b, a + L("tail"), style)
    assert diff_lines(a, b)[0][0] == 0


def _mutate(rng: random.Random, lines: list[str], alphabet: list[str], n: int) -> list[str]:
    out = list(lines)
    for _ in range(n):
        op = rng.random()
        k = rng.randrange(len(out) + 1)
        if op < 0.4 and out:
            del out[min(k, len(out) - 1) : min(k, len(out) - 1) + rng.randint(1, 3)]
        elif op < 0.7:
            out[k:k] = rng.choices(alphabet, k=rng.randint(1, 3))
        elif out:
            out[min(k, len(out) - 1)] = rng.choice(alphabet)
    return out


def test_fuzz_small_alphabets() -> None:
    """Random small files over few distinct lines: many ambiguous diffs and slides."""
    rng = random.Random(1234)
    for case in range(120):
        alphabet = L("a b c } {") + [f"u{case}_{i}\n" for i in range(rng.randint(0, 6))]
        base = rng.choices(alphabet, k=rng.randint(0, 30))
        ours = _mutate(rng, base, alphabet, rng.randint(1, 6))
        theirs = _mutate(rng, base, alphabet, rng.randint(1, 6))
        for style in STYLES:
            check(base, ours, theirs, style)


def test_large_inputs_hit_the_cost_cutoffs() -> None:
    """Thousands of scattered edits: the Myers search gives up at its cost limits (and the
    good-snake heuristic cuts); the result is still git's."""
    rng = random.Random(7)
    alphabet = [f"l{i}\n" for i in range(40)]
    base = rng.choices(alphabet, k=3000)
    ours = _mutate(rng, base, alphabet, 900)
    theirs = _mutate(rng, base, alphabet, 900)
    for style in ("merge", "diff3"):
        check(base, ours, theirs, style)
    # Long common runs between the edits: the snake heuristic applies.
    chunks = [[f"c{i}_{j}\n" for j in range(30)] for i in range(60)]
    base = [x for i, c in enumerate(chunks) for x in c + [f"b{i}\n"] * (i % 7)]
    ours = [x for i, c in enumerate(chunks) for x in c[::-1] + [f"o{i}\n"] * (i % 5)]
    theirs = [x for i, c in enumerate(chunks) for x in c + [f"t{i}\n"] * (i % 3)]
    check(base, ours, theirs, "merge")


def test_huge_inputs_take_the_good_snake_shortcuts() -> None:
    """Over 65k lines the cost limit rises above 256, so the "good snake" heuristic cuts
    first: forward (sparse edits everywhere) and backward (dense edits first, sparse after)."""
    rng = random.Random(5)
    n = 34000
    base = [f"b{i}\n" for i in range(n)]
    sparse = list(base)
    for i in range(0, n, 30):
        sparse[i] = base[rng.randrange(n)]
    dense = list(base)
    for i in range(0, 2000, 2):  # swapped pairs: every line still matches, no long snake
        dense[i], dense[i + 1] = base[i + 1], base[i]
    for i in range(2000, n, 30):
        dense[i] = base[rng.randrange(n)]
    theirs = list(base)
    for i in range(15, n, 40):
        theirs[i] = base[rng.randrange(n)]
    check(base, sparse, theirs, "diff3")
    check(base, dense, theirs, "merge")


def _sample(n: int, seed: int) -> list[dict]:
    shards = sorted(ga.DATA.glob("*.jsonl.xz"))
    rng = random.Random(seed)
    picked = []
    for shard in rng.sample(shards, min(len(shards), n // 5)):
        with lzma.open(shard, "rt", encoding="utf-8") as fh:
            lines = fh.readlines()
        for line in rng.sample(lines, min(len(lines), 5)):
            picked.append(json.loads(line))
    return picked[:n]


@pytest.mark.slow
@pytest.mark.skipif(not ga.DATA.is_dir(), reason=f"shared data folder {ga.DATA} is absent")
def test_real_merges_agree_with_git() -> None:
    """A fixed sample of 150 real conflicting files: identical to git for merge and diff3."""
    records = _sample(150, seed=2024)
    assert len(records) >= 100
    bad = []
    for rec in records:
        for style in ("merge", "diff3"):
            res = ga.compare(rec["base"], rec["ours"], rec["theirs"], style)
            if not res["same"]:
                bad.append((rec["id"], style))
    assert not bad


def test_resolving_a_conflict_leaves_the_others_cut_as_git_cut_them() -> None:
    """``resolved``: in diff3 style the text equals git's with only that region replaced (on real
    conflicts; re-merging the substituted sides used to re-cut the others)."""
    from pathlib import Path

    from splice.resolver.chunks import Conflict
    from splice.resolver.markers import parse, render

    from splice.data.dataset import iter_records

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"
    if not data.is_dir():
        pytest.skip(f"no data set at {data}")
    checked = 0
    for rec in iter_records(data, split="val", per_repo_limit=5, limit=80):
        b, o, t = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        plain = merge_lines(b, o, t, style="diff3")
        n = sum(1 for c in plain if isinstance(c, Conflict))
        if n < 2:
            continue
        opts = {"style": "diff3", "marker_size": 7, "labels": (None, None, None), "base_lines": b}
        pieces = list(parse(render(plain, **opts)).pieces)
        for k in range(n):
            mark = ("RESOLVED\n",)
            got = render(merge_lines(b, o, t, style="diff3", resolved={k: mark}), **opts)
            regions = [p for p in pieces if not isinstance(p, str)]
            want = "".join(
                p if isinstance(p, str) else "".join(mark) if p is regions[k] else p.text()
                for p in pieces
            )
            assert got == want, rec["id"]
            for style in ("merge", "zdiff3"):  # and it never fails in the other styles
                out = merge_lines(b, o, t, style=style, resolved={k: mark})
                assert any(isinstance(c, Stable) and "RESOLVED\n" in c.units for c in out)
            checked += 1
    assert checked > 20
