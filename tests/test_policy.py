"""The model-free policy's shapes and confidences, and the pipeline's gates around a resolver."""

from __future__ import annotations

import pytest
from splice.resolver.chunks import Conflict, split_lines
from splice.resolver.pipeline import DEFAULT_MIN_CONFIDENCE, merge_file
from splice.resolver.policy import SafeTokenMerge, edit_shape
from splice.resolver.resolvers import (
    Hunk,
    Resolution,
    Resolver,
    Suggestion,
    get_resolver,
    resolver_names,
)


def _conflict(base: str, ours: str, theirs: str) -> Conflict:
    return Conflict(*(tuple(split_lines(t)) for t in (base, ours, theirs)))


def test_whitespace_only_side_is_subsumed() -> None:
    shape = edit_shape(_conflict("f(a,b)\n", "f(a, b)\n", "g(a,b)\n"), "python")
    assert shape is not None and shape.kind == "theirs"
    assert shape.merged == "g(a, b)\n"
    assert shape.ours_size == 0 and shape.theirs_size == 2  # g replaces f: 1 removed + 1 added
    assert SafeTokenMerge().confidence(shape) >= DEFAULT_MIN_CONFIDENCE


def test_subset_of_the_same_edits_is_subsumed() -> None:
    base, theirs = "call(a, b)\n", "call(x, b)\n"
    ours = "call(x, y)\n"  # ours made theirs' edit and one more
    shape = edit_shape(_conflict(base, ours, theirs), "python")
    assert shape is not None and shape.kind == "ours" and shape.merged == ours
    assert SafeTokenMerge().confidence(shape) >= DEFAULT_MIN_CONFIDENCE


def test_combination_is_only_a_suggestion() -> None:
    c = _conflict("call(a, 1, 2, b)\n", "call(x, 1, 2, b)\n", "call(a, 1, 2, y)\n")
    shape = edit_shape(c, "python")
    assert shape is not None and shape.kind == "combined" and shape.gap == 5  # , 1 , 2 ,
    assert shape.merged == "call(x, 1, 2, y)\n"
    resolution = SafeTokenMerge().resolve(Hunk(conflict=c, lang="python"))
    assert resolution.chosen is not None
    assert resolution.chosen.confidence < DEFAULT_MIN_CONFIDENCE


def test_token_conflict_abstains() -> None:
    c = _conflict("x = 1\n", "x = 2\n", "x = 3\n")
    assert edit_shape(c, "python") is None
    assert SafeTokenMerge().resolve(Hunk(conflict=c, lang="python")).chosen is None


def test_registry_names_and_unknown_resolver() -> None:
    assert {"ours", "theirs", "token-merge", "token-merge-naive"} <= set(resolver_names())
    with pytest.raises(KeyError, match="unknown resolver 'nope'"):
        get_resolver("nope")


class _Fixed(Resolver):
    """A resolver that always answers with given text (to exercise the pipeline's gates; its
    answers drop both sides' edits, so they are judged like the rest: ``allow_discard``)."""

    name = "fixed"

    def __init__(self, text: str, confidence: float = 1.0) -> None:
        self.answer = Suggestion(tuple(split_lines(text)), confidence, "fixed")

    def resolve(self, hunk: Hunk) -> Resolution:
        return Resolution(chosen=self.answer, suggestions=(self.answer,))


BASE = "def f():\n    return 1\n"
OURS = "def f():\n    return 2\n"
THEIRS = "def f():\n    return 3\n"


def test_pipeline_rejects_an_answer_that_adds_a_parse_error() -> None:
    outcome = merge_file(
        BASE, OURS, THEIRS, _Fixed("    return (\n"), path="f.py", allow_discard=True
    )
    assert not outcome.clean and "<<<<<<<" in outcome.text
    assert outcome.hunks[0].rejected == "adds a parse error"


def test_pipeline_applies_a_valid_answer_and_honours_the_threshold() -> None:
    good = merge_file(
        BASE, OURS, THEIRS, _Fixed("    return 4\n", 0.9), path="f.py", allow_discard=True
    )
    assert good.clean and good.text == "def f():\n    return 4\n"
    low = merge_file(
        BASE, OURS, THEIRS, _Fixed("    return 4\n", 0.5), path="f.py", allow_discard=True
    )
    assert not low.clean and "below" in (low.hunks[0].rejected or "")
    forced = merge_file(
        BASE,
        OURS,
        THEIRS,
        _Fixed("    return 4\n", 0.5),
        path="f.py",
        min_confidence=0.0,
        allow_discard=True,
    )
    assert forced.clean


def test_no_grammar_means_no_syntax_check() -> None:
    outcome = merge_file("a\n", "b\n", "c\n", _Fixed("((\n"), path="notes.txt", allow_discard=True)
    assert outcome.clean and outcome.text == "((\n"
