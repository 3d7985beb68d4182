"""The tree-sitter syntax check, per language."""

from __future__ import annotations

import pytest
from splice.resolver.syntax import SyntaxCheck, adds_parse_error, error_count

# language -> (a valid file, the same file with one added error)
SAMPLES: dict[str, tuple[str, str]] = {
    "python": ("def f(x):\n    return x + 1\n", "def f(x):\n    return x +\n"),
    "java": (
        "class A { int f(int x) { return x + 1; } }\n",
        "class A { int f(int x) { return x + ; } }\n",
    ),
    "javascript": ("function f(x) { return x + 1; }\n", "function f(x) { return x + ; }\n"),
    "typescript": (
        "function f(x: number): number { return x + 1; }\n",
        "function f(x: number): number { return x + ; }\n",
    ),
    "tsx": (
        "const A = (x: number) => <div>{x}</div>;\n",
        "const A = (x: number) => <div>{x + }</div>;\n",
    ),
    "csharp": (
        "class A { int F(int x) { return x + 1; } }\n",
        "class A { int F(int x) { return x + ; } }\n",
    ),
    "go": (
        "package main\n\nfunc f(x int) int { return x + 1 }\n",
        "package main\n\nfunc f(x int) int { return x + }\n",
    ),
}


@pytest.mark.parametrize("lang", list(SAMPLES))
def test_valid_file_has_no_errors(lang: str) -> None:
    good, bad = SAMPLES[lang]
    assert error_count(good, lang) == 0
    assert error_count(bad, lang) >= 1
    assert not adds_parse_error(good, good, good, good, lang)


@pytest.mark.parametrize("lang", list(SAMPLES))
def test_added_error_is_rejected(lang: str) -> None:
    good, bad = SAMPLES[lang]
    assert adds_parse_error(bad, good, good, good, lang)
    # One clean input is enough to set the bar at zero errors.
    assert adds_parse_error(bad, bad, good, bad, lang)


@pytest.mark.parametrize("lang", list(SAMPLES))
def test_errors_already_in_the_inputs_are_tolerated(lang: str) -> None:
    good, bad = SAMPLES[lang]
    assert not adds_parse_error(bad, bad, bad, bad, lang)
    assert not adds_parse_error(good, bad, bad, bad, lang)
    # ...but not more of them.
    assert adds_parse_error(bad + bad, bad, bad, bad, lang)


def test_conflict_markers_are_errors() -> None:
    good = "x = 1\n"
    marked = "<<<<<<< ours\nx = 1\n=======\nx = 2\n>>>>>>> theirs\n"
    assert adds_parse_error(marked, good, good, good, "python")


def test_languages_without_a_grammar_are_never_rejected() -> None:
    assert not adds_parse_error("program p( {", "program p\nend", "", "", "fortran")
    assert not adds_parse_error("}}}", "", "", "", None)


def test_syntax_check_parses_inputs_once() -> None:
    good, bad = SAMPLES["python"]
    check = SyntaxCheck(bad, bad, good, "python")
    assert not check.adds_parse_error(good)  # clean candidate: inputs not parsed yet
    assert check._baseline is None
    assert check.adds_parse_error(bad)
    assert check.baseline == 0
    assert SyntaxCheck("", "", "", "fortran").lang is None
