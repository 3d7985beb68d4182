"""Primitive merge patterns, labels and hunk expressibility."""

from __future__ import annotations

import pytest
from splice.resolver.chunks import Conflict, split_lines
from splice.resolver.patterns import Pattern, apply, expressible, label, minus_base, squash

# The token conflict of base "foo(a)", ours "foo(a, b)", theirs "foo(c)" (see docs/patterns.md).
C = Conflict(base=("a",), ours=("a", ",", " ", "b"), theirs=("c",))

EXPECTED = {
    Pattern.OURS: "a, b",
    Pattern.THEIRS: "c",
    Pattern.BASE: "a",
    Pattern.OURS_THEIRS: "a, bc",
    Pattern.THEIRS_OURS: "ca, b",
    Pattern.OURS_MINUS_BASE: ", b",
    Pattern.THEIRS_MINUS_BASE: "c",
    Pattern.OURS_THEIRS_MINUS_BASE: ", bc",
    Pattern.THEIRS_OURS_MINUS_BASE: "c, b",
    Pattern.EMPTY: "",
}


@pytest.mark.parametrize("pattern", list(Pattern))
def test_every_pattern(pattern: Pattern) -> None:
    assert "".join(apply(pattern, C)) == EXPECTED[pattern]


def test_pattern_outputs_are_token_tuples() -> None:
    assert apply(Pattern.OURS_MINUS_BASE, C) == (",", " ", "b")
    assert apply(Pattern.EMPTY, C) == ()
    assert apply("theirs_ours", C) == ("c", "a", ",", " ", "b")  # type: ignore[arg-type]


def test_minus_base_removes_only_aligned_tokens() -> None:
    # The second "x" is not aligned with base's single "x": it stays.
    assert minus_base(("x", "+", "x"), ("x",)) == ("+", "x")
    assert minus_base(("p", "q"), ()) == ("p", "q")
    assert minus_base((), ("p",)) == ()


def test_label_ignores_whitespace() -> None:
    assert label(C, "c,b") == [Pattern.THEIRS_OURS_MINUS_BASE]
    assert label(C, " c ,\n\tb ") == [Pattern.THEIRS_OURS_MINUS_BASE]
    assert label(C, ["c", ",", " ", "b"]) == [Pattern.THEIRS_OURS_MINUS_BASE]
    assert squash(" a\tb\r\n c ") == "abc"


def test_label_can_return_several_patterns() -> None:
    assert label(C, "c") == [Pattern.THEIRS, Pattern.THEIRS_MINUS_BASE]
    empty_base = Conflict((), ("x",), ("y",))
    assert label(empty_base, "x y") == [Pattern.OURS_THEIRS, Pattern.OURS_THEIRS_MINUS_BASE]


def test_label_without_a_fit() -> None:
    assert label(C, "d") == []
    assert label(Conflict(("a",), ("b",), ("c",)), "") == [Pattern.EMPTY]


def _lines(o: str, a: str, b: str) -> Conflict:
    return Conflict(tuple(split_lines(o)), tuple(split_lines(a)), tuple(split_lines(b)))


def test_expressible_by_a_token_pattern() -> None:
    hunk = _lines("foo(a)\n", "foo(a, b)\n", "foo(c)\n")
    e = expressible(hunk, "python", "foo(c, b)\n")
    assert e.n_token_conflicts == 1
    assert e.token_combos == [(Pattern.THEIRS_OURS_MINUS_BASE,)]
    assert e.hunk_patterns == []
    assert e.expressible and e.complete and bool(e)


def test_expressible_when_the_token_merge_is_clean() -> None:
    hunk = _lines("f(a, b)\n", "f(x, b)\n", "f(a, y)\n")
    e = expressible(hunk, None, "f(x,y)")
    assert (e.n_token_conflicts, e.token_combos) == (0, [()])


def test_expressible_at_hunk_level_only() -> None:
    hunk = _lines("x = 1\n", "x = 2\n", "x = 3\n")
    e = expressible(hunk, None, "x = 2\nx = 3\n")
    assert e.token_combos == []
    assert Pattern.OURS_THEIRS in e.hunk_patterns
    assert e.expressible


def test_whole_side_counts_both_ways() -> None:
    hunk = _lines("x = 1\n", "x = 2\n", "x = 3\n")
    e = expressible(hunk, None, "x = 2\n")
    assert e.hunk_patterns == [Pattern.OURS, Pattern.OURS_MINUS_BASE]
    assert (Pattern.OURS,) in e.token_combos


def test_new_tokens_are_not_expressible() -> None:
    hunk = _lines("x = 1\n", "x = 2\n", "x = 3\n")
    e = expressible(hunk, None, "x = 4\n")
    assert not e.expressible and e.complete and not bool(e)


def test_several_token_conflicts_combine() -> None:
    hunk = _lines("f(a); g(b)\n", "f(A); g(B)\n", "f(1); g(2)\n")
    e = expressible(hunk, None, "f(A); g(2)\n")
    assert e.n_token_conflicts == 2
    ours = (Pattern.OURS, Pattern.OURS_MINUS_BASE)
    theirs = (Pattern.THEIRS, Pattern.THEIRS_MINUS_BASE)
    assert e.token_combos == [(a, b) for a in ours for b in theirs]


def test_search_cap() -> None:
    hunk = _lines("f(a); g(b)\n", "f(A); g(B)\n", "f(1); g(2)\n")
    e = expressible(hunk, None, "f(A); g(2)\n", max_conflicts=1)
    assert not e.complete and e.token_combos == []
    e = expressible(hunk, None, "f(A); g(2)\n", max_combos=1)
    assert e.token_combos == [(Pattern.OURS, Pattern.THEIRS)] and not e.complete
