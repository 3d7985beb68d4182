"""The languages beyond the first six: grammars, tokens, the syntax check, the commands, and
real conflicts mined from public repositories (tests/data/conflicts/mined.jsonl)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GitRepo, git_merge_file
from hypothesis import given, settings
from hypothesis import strategies as st
from splice.resolver.languages import (
    DEFAULT_LANGUAGES,
    EXTENSIONS,
    GRAMMARS,
    UnknownLanguage,
    extensions_of,
    grammar,
    has_grammar,
    language_for_path,
    parser,
    select_extensions,
)
from splice.resolver.pipeline import Labels, merge_file
from splice.resolver.syntax import adds_parse_error, error_count
from splice.resolver.tokenize import tokenize, tokens

from splice.cli import main

MINED = Path(__file__).parent / "data" / "conflicts" / "mined.jsonl"

#: language -> (a valid file, the same file with one added error)
SYNTAX: dict[str, tuple[str, str]] = {
    "rust": ("fn f(x: i32) -> i32 { x + 1 }\n", "fn f(x: i32) -> i32 { x + }\n"),
    "c": ("int f(int x) { return x + 1; }\n", "int f(int x) { return x + ; }\n"),
    "cpp": ("int f(int x) { return x + 1; }\n", "int f(int x) { return x + ; }\n"),
    "kotlin": ("fun f(x: Int): Int { return x + 1 }\n", "fun f(x: Int): Int { return x + }\n"),
    "scala": (
        "object A { def f(x: Int): Int = x + 1 }\n",
        "object A { def f(x: Int): Int = (x + 1 }\n",
    ),
    "swift": (
        "func f(x: Int) -> Int { return x + 1 }\n",
        "func f(x: Int) -> Int { return x + }\n",
    ),
    "ruby": ("def f(x)\n  x + 1\nend\n", "def f(x)\n  x +\n"),
    "php": (
        "<?php\nfunction f($x) { return $x + 1; }\n",
        "<?php\nfunction f($x) { return $x + ; }\n",
    ),
    "bash": ('f() {\n  echo "$1"\n}\n', 'f() {\n  echo "$1"\n'),
    "lua": ("function f(x)\n  return x + 1\nend\n", "function f(x)\n  return x +\nend\n"),
    "json": ('{"a": [1, 2], "b": {"c": null}}\n', '{"a": [1, 2], "b": {"c": }}\n'),
    "yaml": ("a:\n  - 1\n  - 2\nb: {c: d}\n", "a:\n  - 1\n  - 2\nb: {c: d\n"),
    "toml": ('[a]\nb = 1\nc = "d"\n', '[a]\nb = \nc = "d"\n'),
    "html": ("<div><p>hi</p></div>\n", "<div><p>hi</p></div\n"),
    "css": ("a { color: red; }\n", "a { color: red; \n"),
    "xml": ('<a x="1"><b/></a>\n', '<a x="1"><b/></a\n'),
}
NEW = list(SYNTAX)

#: language -> (a realistic snippet, words that must be comment tokens, words that must be
#: string tokens, (token, kind) pairs that must be there)
SNIPPETS: dict[str, tuple[str, set[str], set[str], set[tuple[str, str]]]] = {
    "rust": (
        '/// Adds one.\nfn f(x: i32) -> i32 {\n    let s = r#"raw words"#; // two words\n'
        "    x + 1 /* block words */\n}\n",
        {"Adds", "two", "words", "block"},
        {"raw", "words"},
        {("fn", "keyword"), ("i32", "keyword"), ("f", "identifier"), ("1", "number")},
    ),
    "c": (
        '#include <stdio.h>\n// say hello\nint main(void) { printf("hello world\\n"); }\n',
        {"say", "hello"},
        {"hello", "world", "<stdio.h>"},
        {("#include", "keyword"), ("int", "keyword"), ("printf", "identifier")},
    ),
    "cpp": (
        'namespace n {\n// line words\nauto s = R"(raw text)";\n}  // end n\n',
        {"line", "words", "end"},
        {"raw", "text"},
        {("namespace", "keyword"), ("n", "identifier")},
    ),
    "kotlin": (
        '/** Docs here. */\nval s = "Hello, ${name + 1} all" // note words\n'
        'val m = """multi\n  line"""\n',
        {"Docs", "note", "words"},
        {"Hello,", "all", "multi", "line"},
        {("val", "keyword"), ("name", "identifier"), ("1", "number")},
    ),
    "scala": (
        '// line words\nobject M { val s = s"a $x b"; val p = "plain words" }\n',
        {"line", "words"},
        {"a", "b", "plain", "words", '"'},
        {("object", "keyword"), ("M", "identifier")},
    ),
    "swift": (
        '// the note\nlet s = "Hello, \\(name) friends" /* block */\n',
        {"the", "note", "block"},
        {"Hello,", "friends"},
        {("let", "keyword"), ("name", "identifier")},
    ),
    "ruby": (
        '# a comment here\nname = "Hi #{user} there"\nsym = :key_name\n',
        {"a", "comment", "here"},
        {"Hi", "there"},
        {("user", "identifier"), (":key_name", "identifier")},
    ),
    "php": (
        "<?php\n// line words\n# hash words\n$s = \"Hello {$name} all\" . 'single words';\n",
        {"line", "words", "hash"},
        {"Hello", "all", "single", "words"},
        {("<?php", "keyword"), ("s", "identifier")},
    ),
    "bash": (
        "# set things up\nname=\"hello ${user} world\"\necho 'single words' $(date +%s)\n",
        {"set", "things", "up"},
        {"hello", "world", "single", "words"},
        {("user", "identifier"), ("date", "identifier")},
    ),
    "lua": (
        '-- line words\n--[[ block\nwords ]]\nlocal s = "two words" .. [[long words]]\n',
        {"line", "words", "block"},
        {"two", "words", "long"},
        {("local", "keyword"), ("s", "identifier")},
    ),
    "json": (
        '{"name": "demo package", "n": [1, 2.5, true, null]}\n',
        set(),
        {"name", "demo", "package"},
        {("1", "number"), ("true", "keyword"), ("null", "keyword")},
    ),
    "yaml": (
        '# ci words\nruns-on: ubuntu-latest\nname: "quoted words"\nrun: |\n  block words\n',
        {"ci", "words"},
        {"quoted", "words", "block"},
        {("runs-on", "identifier"), ("ubuntu-latest", "identifier")},
    ),
    "toml": (
        '# comment words\n[package]\nname = "demo package"\nflag = true\n',
        {"comment", "words"},
        {"demo", "package"},
        {("package", "identifier"), ("true", "keyword")},
    ),
    "html": (
        '<!-- note words -->\n<p class="main page">Some text &amp; more</p>\n',
        {"note", "words"},
        {"main", "page", "Some", "text"},
        {("p", "identifier"), ("class", "identifier")},
    ),
    "css": (
        '/* note words */\nbody > p { font-family: "Helvetica Neue", sans-serif; }\n',
        {"note", "words"},
        {"Helvetica", "Neue"},
        {("font-family", "identifier"), ("sans-serif", "identifier")},
    ),
    "xml": (
        '<!-- note words -->\n<Project Sdk="A.B">\n  <Description>Some words</Description>\n'
        "</Project>\n",
        {"note", "words"},
        {"A.B", "Some", "words"},
        {("Project", "identifier"), ("Description", "identifier")},
    ),
}

_CODEISH = st.text(
    alphabet=st.sampled_from(list("ab1_ é\t\r\n\"'`/*#{}$()<>=.\\;:@-[]")), max_size=80
)


# --------------------------------------------------------------------------- grammars


def test_at_least_twelve_new_languages_with_a_loaded_grammar() -> None:
    assert len(set(GRAMMARS) - set(DEFAULT_LANGUAGES)) >= 12
    for lang, source in GRAMMARS.items():
        assert has_grammar(lang), f"{source.package} is not installed"
        assert extensions_of(lang), lang
        assert grammar(lang) is grammar(lang)  # loaded once
        assert parser(lang).parse(b"").root_node is not None


def test_unknown_language_has_no_grammar() -> None:
    assert not has_grammar("cobol") and not has_grammar(None)
    with pytest.raises(KeyError):
        grammar("cobol")


@pytest.mark.parametrize(
    ("path", "lang"),
    [("src/lib.rs", "rust"), ("a/b.H", "c"), ("x.hpp", "cpp"), ("build.gradle.kts", "kotlin"),
     ("M.scala", "scala"), ("rack.gemspec", "ruby"), ("index.php", "php"), ("run.sh", "bash"),
     ("init.lua", "lua"), ("package.json", "json"), (".travis.yml", "yaml"),
     ("Cargo.toml", "toml"), ("index.htm", "html"), ("site.css", "css"), ("App.csproj", "xml"),
     ("View.swift", "swift"), ("README", None)],
)  # fmt: skip
def test_language_for_path(path: str, lang: str | None) -> None:
    assert language_for_path(path) == lang


# --------------------------------------------------------------------------- syntax check


@pytest.mark.parametrize("lang", NEW)
def test_syntax_check(lang: str) -> None:
    good, bad = SYNTAX[lang]
    assert error_count(good, lang) == 0
    assert error_count(bad, lang) > 0
    assert adds_parse_error(bad, good, good, good, lang)
    assert not adds_parse_error(bad, bad, bad, bad, lang)


# --------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("lang", NEW)
def test_tokens_of_a_realistic_snippet(lang: str) -> None:
    text, comments, strings, pairs = SNIPPETS[lang]
    assert error_count(text, lang) == 0  # a fair sample: the grammar parses it
    toks = tokens(text, lang)
    assert "".join(t.text for t in toks) == text
    assert all(t.text for t in toks)
    kinds: dict[str, set[str]] = {}
    for t in toks:
        kinds.setdefault(t.kind, set()).add(t.text)
    assert comments <= kinds.get("comment", set()), kinds.get("comment")
    assert strings <= kinds.get("string", set()), kinds.get("string")
    assert pairs <= {(t.text, t.kind) for t in toks}
    # comments and strings are split on whitespace: no token of theirs holds a space
    assert not any(" " in t.text for t in toks if t.kind in ("comment", "string"))


@pytest.mark.parametrize("lang", NEW)
@given(text=st.one_of(st.text(max_size=60), _CODEISH))
@settings(max_examples=40, deadline=None)
def test_lossless_on_any_text(lang: str, text: str) -> None:
    toks = tokenize(text, lang)
    assert "".join(toks) == text
    assert all(toks)


# --------------------------------------------------------------------------- commands


def test_select_extensions() -> None:
    assert select_extensions("rust,.yml") == [".rs", ".yml"]
    assert select_extensions("xml")[:2] == [".xml", ".xsd"]
    assert select_extensions(None) == [e for lang in DEFAULT_LANGUAGES for e in extensions_of(lang)]
    assert set(select_extensions("all")) == set(EXTENSIONS)
    with pytest.raises(UnknownLanguage, match="'cobol'"):
        select_extensions("rust,cobol")


def test_install_accepts_every_language(git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(git_repo.path)
    res = CliRunner().invoke(main, ["install", "--languages", ",".join(NEW) + ",kts"])
    assert res.exit_code == 0, res.output
    for path in ("a/lib.rs", "b.hpp", "c.kts", "d.gemspec", "e.yaml", "f.csproj", "g.swift"):
        check = git_repo.git("check-attr", "merge", "--", path).stdout.strip()
        assert check == f"{path}: merge: splice"
    assert "unspecified" in git_repo.git("check-attr", "merge", "--", "h.txt").stdout


def test_install_of_an_unknown_language_is_one_clear_line(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    res = CliRunner().invoke(main, ["install", "--languages", "rust,cobol"])
    assert res.exit_code == 2
    assert res.exception is None or isinstance(res.exception, SystemExit)
    (line,) = res.output.strip().splitlines()
    assert line.startswith("splice: error: unknown language or extension 'cobol'")
    assert not (git_repo.path / ".gitattributes").exists()


def test_languages_table() -> None:
    res = CliRunner().invoke(main, ["languages"])
    assert res.exit_code == 0
    rows = {line.split()[0]: line for line in res.output.splitlines()[1:]}
    assert set(GRAMMARS) <= set(rows)
    for lang, source in GRAMMARS.items():
        assert source.package in rows[lang] and " yes" in rows[lang], rows[lang]
    assert ".rs" in rows["rust"] and ".yml .yaml" in rows["yaml"]
    only = CliRunner().invoke(main, ["languages", "--languages", "rs,toml"]).output
    assert [line.split()[0] for line in only.splitlines()] == ["language", "rust", "toml"]


def test_languages_gitattributes_route_files_to_the_driver(git_repo: GitRepo) -> None:
    res = CliRunner().invoke(main, ["languages", "--gitattributes"])
    assert res.exit_code == 0
    lines = res.output.splitlines()
    assert "*.rs merge=splice" in lines and "*.php merge=splice" in lines
    assert len(lines) == len(EXTENSIONS) == len(set(lines))
    git_repo.write(".gitattributes", res.output)
    for path in ("src/main.rs", "lib/rack.rb", "y.toml", "z.py"):
        check = git_repo.git("check-attr", "merge", "--", path).stdout.strip()
        assert check == f"{path}: merge: splice"
    some = CliRunner().invoke(main, ["languages", "--gitattributes", "--languages", "lua,.sh"])
    assert some.output == "*.lua merge=splice\n*.sh merge=splice\n"


@pytest.mark.parametrize(
    "args", [["--languages", "cobol"], ["--gitattributes", "--languages", "rust,,x"]]
)
def test_languages_bad_input(args: list[str]) -> None:
    res = CliRunner().invoke(main, ["languages", *args])
    assert res.exit_code == 2 and isinstance(res.exception, SystemExit)
    (line,) = res.output.strip().splitlines()
    assert line.startswith("splice: error: unknown language or extension")


def test_installed_driver_merges_a_rust_file(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    assert CliRunner().invoke(main, ["install", "--languages", "rust"]).exit_code == 0
    git_repo.commit("install splice", ".gitattributes")
    base = "fn f() -> i32 {\n    0\n}\n"
    git_repo.conflict_branches({"m.rs": (base, base.replace("0", "1"), base.replace("0", "2"))})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert "splice: m.rs:" in proc.stderr
    assert b"<<<<<<<" in git_repo.read("m.rs")


# --------------------------------------------------------------------------- real conflicts


@cache
def _mined() -> list[dict]:
    with MINED.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_mined_records_cover_the_new_languages() -> None:
    records = _mined()
    assert 0 < len(records) <= 30
    assert MINED.stat().st_size < 300_000
    langs = {language_for_path(r["path"]) for r in records}
    assert len(langs) >= 6 and langs <= set(NEW)
    for r in records:
        assert r["license"] and r["repo"] and r["n_conflicts"] >= 1


@pytest.mark.parametrize("i", range(len(_mined())))
def test_mined_conflict_equals_git_merge_file_and_tokens_are_lossless(
    i: int, tmp_path: Path
) -> None:
    rec = _mined()[i]
    lang = language_for_path(rec["path"])
    assert has_grammar(lang)
    for key in ("base", "ours", "theirs", "merged"):
        assert "".join(tokenize(rec[key], lang)) == rec[key], key
    labels = ("ours", "base", "theirs")
    out = merge_file(
        rec["base"], rec["ours"], rec["theirs"], None, path=rec["path"], labels=Labels(*labels)
    )
    enc = [rec[k].encode() for k in ("base", "ours", "theirs")]
    status, expected = git_merge_file(*enc, tmp_path, labels=labels)
    assert out.conflicts_left == status >= 1
    assert out.text.encode() == expected
