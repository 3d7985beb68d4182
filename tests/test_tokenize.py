"""Lossless tokenization with tree-sitter leaves and the generic lexer."""

from __future__ import annotations

import glob
import json
import lzma
import random
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from splice.resolver.chunks import split_lines
from splice.resolver.tokenize import lex_generic, tokenize, tokens

DATA = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges" / "*.jsonl.xz")
LANGS = [None, "python", "java", "javascript", "typescript", "tsx", "csharp", "go", "c", "rust"]

_CODEISH = st.text(alphabet=st.sampled_from(list("ab1_ é\t\r\n\"'`/*#{}$()<>=.\\;:@")), max_size=80)


@pytest.mark.parametrize("lang", LANGS)
@given(text=st.one_of(st.text(max_size=80), _CODEISH))
@settings(max_examples=150, deadline=None)
def test_lossless_on_any_text(lang: str | None, text: str) -> None:
    toks = tokenize(text, lang)
    assert "".join(toks) == text
    assert all(toks)


@pytest.mark.parametrize(
    ("lang", "text", "expected"),
    [
        (
            "python",
            "def f(x):\n    return x + 1  # add one\n",
            ["def", " ", "f", "(", "x", ")", ":", "\n", "    ", "return", " ", "x", " ", "+",
             " ", "1", "  ", "#", " ", "add", " ", "one", "\n"],
        ),
        (
            "python",
            'x = f"a {b} c"\n',
            ["x", " ", "=", " ", 'f"', "a", " ", "{", "b", "}", " ", "c", '"', "\n"],
        ),
        (
            "java",
            'String s = "hello world"; // say hi\n',
            ["String", " ", "s", " ", "=", " ", '"', "hello", " ", "world", '"', ";", " ", "//",
             " ", "say", " ", "hi", "\n"],
        ),
        (
            "javascript",
            "const s = `a ${b}`; /* x y */",
            ["const", " ", "s", " ", "=", " ", "`", "a", " ", "${", "b", "}", "`", ";", " ", "/*",
             " ", "x", " ", "y", " ", "*/"],
        ),
        (
            "typescript",
            "let n: number = a?.b ?? 0x1F;",
            ["let", " ", "n", ":", " ", "number", " ", "=", " ", "a", "?.", "b", " ", "??", " ",
             "0x1F", ";"],
        ),
        (
            "csharp",
            'var s = $"a {b}";\r\n',
            ["var", " ", "s", " ", "=", " ", "$", '"', "a", " ", "{", "b", "}", '"', ";", "\r\n"],
        ),
        (
            "go",
            "if err != nil {\n\treturn err\n}",
            ["if", " ", "err", " ", "!=", " ", "nil", " ", "{", "\n", "\t", "return", " ", "err",
             "\n", "}"],
        ),
        (
            None,
            "x <<= 2; // hi there",
            ["x", " ", "<<=", " ", "2", ";", " ", "//", " ", "hi", " ", "there"],
        ),
        (
            "rust",
            'let s = "a b";',
            ["let", " ", "s", " ", "=", " ", '"', "a", " ", "b", '"', ";"],
        ),
    ],
)  # fmt: skip
def test_realistic_snippets(lang: str | None, text: str, expected: list[str]) -> None:
    assert tokenize(text, lang) == expected


def test_kinds() -> None:
    got = {(t.text, t.kind) for t in tokens("if x == 1:  # ok\n    s = 'a b'\n", "python")}
    assert {("if", "keyword"), ("x", "identifier"), ("==", "punct"), ("1", "number")} <= got
    assert {("  ", "whitespace"), ("\n", "newline"), ("ok", "comment"), ("a", "string")} <= got


def test_non_ascii_identifiers_and_strings() -> None:
    text = 'déjà = "üñï çødé 字"  # naïve 😀\nπ = 3.14\n'
    toks = tokenize(text, "python")
    assert "".join(toks) == text
    assert {"déjà", "üñï", "çødé", "字", "naïve", "😀", "π", "3.14"} <= set(toks)
    js = "const ñ = 'é 😀 x'; // ü"
    assert "".join(tokenize(js, "javascript")) == js
    assert {"ñ", "é", "😀", "x", "ü"} <= set(tokenize(js, "javascript"))


def test_crlf_newlines_are_single_tokens() -> None:
    text = "int a;\r\n  int b;\r\n\r\n"
    for lang in ("java", "csharp", None):
        toks = tokenize(text, lang)
        assert "".join(toks) == text
        assert toks.count("\r\n") == 3 and "\r" not in toks


def test_fragments_with_errors_stay_lossless() -> None:
    cases = {
        "python": "        self.x = 1\n    else:\n        return (a,\n",
        "java": '    }\n    public void f(int a, String b) {\n        call("x y"',
        "javascript": "  }, {\n    key: `open ${",
        "csharp": "#endif\n        }\n    } // end\n}",
        "go": '\t}\n\treturn &x{\n\t\ta: "b c',
        "typescript": "  ): Promise<void> {\n    const x = <T,>(",
    }
    for lang, text in cases.items():
        toks = tokenize(text, lang)
        assert "".join(toks) == text, lang
        assert all(toks)


def test_generic_lexer_strings_and_comments() -> None:
    assert tokenize('"""a b"""', None) == ['"""', "a", " ", "b", '"""']
    assert tokenize("# x y", "fortran") == ["#", " ", "x", " ", "y"]
    assert tokenize("#include <a.h>", "fortran") == ["#", "include", " ", "<", "a", ".", "h", ">"]
    assert tokenize("#include <a.h>", "c") == ["#include", " ", "<a.h>"]  # C's grammar
    kinds = [t.kind for t in lex_generic("/* a */", None)]
    assert kinds == ["comment", "whitespace", "comment", "whitespace", "comment"]


@cache
def _sample() -> list[dict[str, str]]:
    """A seeded sample of real records: 2 from each of 35 shards."""
    paths = sorted(glob.glob(DATA))
    out: list[dict[str, str]] = []
    for path in random.Random(99).sample(paths, min(35, len(paths))):
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if n >= 2:
                    break
                out.append(json.loads(line))
    return out


@pytest.mark.slow
def test_lossless_on_real_files_and_hunks() -> None:
    records = _sample()
    if not records:
        pytest.skip("data set not available")
    rng = random.Random(5)
    for rec in records:
        lang = rec["lang"]
        for side in ("base", "ours", "theirs"):
            text = rec[side]
            assert "".join(tokenize(text, lang)) == text, rec["id"]
            lines = split_lines(text)
            for _ in range(3):  # fragments, as conflict hunks are
                i = rng.randrange(max(len(lines), 1))
                hunk = "".join(lines[i : i + rng.randint(1, 12)])
                assert "".join(tokenize(hunk, lang)) == hunk, rec["id"]
