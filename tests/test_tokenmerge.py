"""Token-level diff and three-way merge: hand-computed cases and properties."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from splice.resolver.chunks import Conflict, Stable, has_conflicts, split_lines
from splice.resolver.seqdiff import matching_blocks, matching_pairs, opcodes
from splice.resolver.tokenize import tokenize
from splice.resolver.tokenmerge import merge_hunk, merge_tokens, render


def tok(text: str, lang: str | None = None) -> list[str]:
    """The project tokenizer (lossless; whitespace runs are tokens)."""
    return tokenize(text, lang)


def merged_text(o: str, a: str, b: str) -> list:
    return merge_tokens(tok(o), tok(a), tok(b))


def _lcs_len(a: list, b: list) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


small = st.lists(st.sampled_from("abcd"), max_size=14)


# --- seqdiff ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(small, small)
def test_myers_is_a_longest_common_subsequence(a: list[str], b: list[str]) -> None:
    pairs = matching_pairs(a, b)
    assert all(a[i] == b[j] for i, j in pairs)
    assert all(p < q for (p, _), (q, _) in zip(pairs, pairs[1:], strict=False))
    assert all(p < q for (_, p), (_, q) in zip(pairs, pairs[1:], strict=False))
    assert len(pairs) == _lcs_len(a, b)


@settings(max_examples=200, deadline=None)
@given(small, small)
def test_capped_search_still_gives_a_valid_edit_script(a: list[str], b: list[str]) -> None:
    out: list[str] = []
    for op in opcodes(a, b, max_cost=1):
        out += a[op.a1 : op.a2] if op.tag == "equal" else b[op.b1 : op.b2]
        if op.tag == "equal":
            assert a[op.a1 : op.a2] == b[op.b1 : op.b2]
    assert out == b


def test_opcodes_and_blocks() -> None:
    a, b = list("abcdef"), list("abXdeYf")
    assert matching_blocks(a, b) == [(0, 0, 2), (3, 3, 2), (5, 6, 1)]
    assert [op.tag for op in opcodes(a, b)] == ["equal", "replace", "equal", "insert", "equal"]
    assert opcodes([], ["x"]) == [("insert", 0, 0, 0, 1)]
    assert opcodes(["x"], []) == [("delete", 0, 1, 0, 0)]


def test_large_dissimilar_inputs_fall_back() -> None:
    a = [f"a{i}" for i in range(3000)]
    b = [f"a{i}" for i in range(0, 3000, 2)] + [f"b{i}" for i in range(3000)]
    pairs = matching_pairs(a, b, max_cost=50)
    assert all(a[i] == b[j] for i, j in pairs)
    assert len(pairs) == 1500  # unique anchors recover every common unit


# --- merge_tokens: hand-computed cases -------------------------------------------------------


def test_one_sided_changes_merge() -> None:
    assert merged_text("x = 1", "x = 2", "x = 1") == [Stable(("x", " ", "=", " ", "2"))]
    assert merged_text("x = 1", "x = 1", "y = 1") == [Stable(("y", " ", "=", " ", "1"))]


def test_changes_to_different_tokens_of_one_line_merge() -> None:
    chunks = merged_text("foo(a, b)", "foo(x, b)", "foo(a, y)")
    assert chunks == [Stable(tuple(tok("foo(x, y)")))]


def test_overlapping_edits_conflict() -> None:
    chunks = merged_text("f(a)", "f(b)", "f(c)")
    assert chunks == [Stable(("f", "(")), Conflict(("a",), ("b",), ("c",)), Stable((")",))]


def test_identical_edits_merge() -> None:
    assert merged_text("f(a)", "f(b, c)", "f(b, c)") == [Stable(tuple(tok("f(b, c)")))]


def test_insertions_at_the_same_point_conflict() -> None:
    chunks = merged_text("f(a)", "f(a, x)", "f(a, y)")
    assert chunks == [
        Stable(("f", "(", "a")),
        Conflict((), (",", " ", "x"), (",", " ", "y")),
        Stable((")",)),
    ]


def test_identical_insertions_merge() -> None:
    assert merged_text("f(a)", "f(a, x)", "f(a, x)") == [Stable(tuple(tok("f(a, x)")))]


def test_insertion_touching_a_replacement_conflicts() -> None:
    # ours replaces "b"; theirs inserts right after it: no base token kept by both in between.
    chunks = merge_tokens(["a", "b", "c"], ["a", "B", "c"], ["a", "b", "X", "c"])
    assert chunks == [Stable(("a",)), Conflict(("b",), ("B",), ("b", "X")), Stable(("c",))]


def test_adjacent_replacements_conflict_but_separated_ones_merge() -> None:
    assert merge_tokens("ab", "Xb", "aY") == [Conflict(("a", "b"), ("X", "b"), ("a", "Y"))]
    assert merge_tokens("a-b", "X-b", "a-Y") == [Stable(("X", "-", "Y"))]


def test_deletion_and_edit_elsewhere_merge() -> None:
    assert merged_text("a b c", "a c", "a b c d") == [Stable(tuple(tok("a c d")))]


def test_empty_sides() -> None:
    assert merge_tokens([], [], []) == []
    assert merge_tokens([], [], ["a"]) == [Stable(("a",))]
    assert merge_tokens(["a"], [], []) == []
    assert merge_tokens(["a"], [], ["a"]) == []
    assert merge_tokens([], ["a"], ["b"]) == [Conflict((), ("a",), ("b",))]
    assert merge_tokens(["a"], [], ["b"]) == [Conflict(("a",), (), ("b",))]


# --- merge_tokens: properties ----------------------------------------------------------------

tokens = st.lists(st.sampled_from(["a", "b", "c", " ", "(", ")", "\n"]), max_size=20)


@settings(max_examples=200, deadline=None)
@given(tokens, tokens)
def test_only_ours_changed(o: list[str], a: list[str]) -> None:
    chunks = merge_tokens(o, a, o)
    assert not has_conflicts(chunks)
    assert render(chunks) == "".join(a)


@settings(max_examples=200, deadline=None)
@given(tokens, tokens)
def test_only_theirs_changed(o: list[str], b: list[str]) -> None:
    chunks = merge_tokens(o, o, b)
    assert not has_conflicts(chunks)
    assert render(chunks) == "".join(b)


@settings(max_examples=200, deadline=None)
@given(tokens, tokens)
def test_same_change_on_both_sides(o: list[str], a: list[str]) -> None:
    chunks = merge_tokens(o, a, a)
    assert not has_conflicts(chunks)
    assert render(chunks) == "".join(a)


@settings(max_examples=200, deadline=None)
@given(tokens, tokens, tokens)
def test_chunks_are_well_formed(o: list[str], a: list[str], b: list[str]) -> None:
    chunks = merge_tokens(o, a, b)
    for c in chunks:
        assert c.units if isinstance(c, Stable) else (c.ours != c.theirs)
    kinds = [type(c) for c in chunks]
    assert all(not (x is y is Stable) for x, y in zip(kinds, kinds[1:], strict=False))
    # Every base token is either stable or inside exactly one conflict's base slice.
    n_base = sum(len(c.base) for c in chunks if isinstance(c, Conflict))
    assert n_base <= len(o)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.sampled_from(["x", "y", "z"]), min_size=3, max_size=12),
    st.sampled_from(["P", "Q"]),
    st.sampled_from(["R", "S"]),
)
def test_separated_changes_both_survive(words: list[str], new_a: str, new_b: str) -> None:
    o = list(" ".join(words).replace(" ", "\0 \0").split("\0"))
    a = [new_a, *o[1:]]
    b = [*o[:-1], new_b]
    chunks = merge_tokens(o, a, b)
    assert not has_conflicts(chunks)
    assert render(chunks) == new_a + "".join(o[1:-1]) + new_b


# --- merge_hunk -------------------------------------------------------------------------------


def _line_conflict(o: str, a: str, b: str) -> Conflict:
    return Conflict(tuple(split_lines(o)), tuple(split_lines(a)), tuple(split_lines(b)))


def test_merge_hunk_resolves_a_same_line_conflict() -> None:
    c = _line_conflict("x = f(a, b)\n", "x = f(a2, b)\n", "y = f(a, b3)\n")
    chunks = merge_hunk(c, "python")
    assert not has_conflicts(chunks)
    assert render(chunks) == "y = f(a2, b3)\n"


def test_merge_hunk_leaves_a_token_conflict() -> None:
    c = _line_conflict("x = f(a)\n", "x = f(b)\n", "x = f(c)\n")
    chunks = merge_hunk(c, None)
    assert [type(k) for k in chunks] == [Stable, Conflict, Stable]
    assert render(chunks, [("c",)]) == "x = f(c)\n"
    assert render(chunks, [("b",)]) == "x = f(b)\n"


def test_merge_hunk_with_a_given_tokenizer() -> None:
    c = _line_conflict("x = f(a, b)  # note\n", "x = f(a2, b)  # note\n", "x = f(a, b3)  # note\n")
    chunks = merge_hunk(c, "python", tokenize)
    assert render(chunks) == "x = f(a2, b3)  # note\n"
