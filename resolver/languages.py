"""Languages Splice knows: file extensions and tree-sitter grammars (loaded lazily, offline).

Every grammar comes from its own PyPI package (a compiled wheel, nothing downloaded at run time);
:data:`GRAMMARS` says which module and which function of it gives each language's grammar. To add a
language: add its package to pyproject's dependencies, one :data:`GRAMMARS` entry and its
extensions in :data:`EXTENSIONS` (docs/LANGUAGES.md has the checklist).
"""

from __future__ import annotations

import importlib
import importlib.util
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tree_sitter import Language, Parser


@dataclass(frozen=True)
class GrammarSource:
    """Where a language's tree-sitter grammar comes from."""

    package: str  # the PyPI distribution, e.g. "tree-sitter-rust"
    module: str  # its import name, e.g. "tree_sitter_rust"
    function: str = "language"  # the module's function that returns the grammar pointer


#: Language -> its grammar. One entry per language; the order is the order ``splice languages``
#: lists them in (the six the models are trained on first).
GRAMMARS: dict[str, GrammarSource] = {
    "python": GrammarSource("tree-sitter-python", "tree_sitter_python"),
    "java": GrammarSource("tree-sitter-java", "tree_sitter_java"),
    "javascript": GrammarSource("tree-sitter-javascript", "tree_sitter_javascript"),
    "typescript": GrammarSource(
        "tree-sitter-typescript", "tree_sitter_typescript", "language_typescript"
    ),
    "tsx": GrammarSource("tree-sitter-typescript", "tree_sitter_typescript", "language_tsx"),
    "csharp": GrammarSource("tree-sitter-c-sharp", "tree_sitter_c_sharp"),
    "go": GrammarSource("tree-sitter-go", "tree_sitter_go"),
    "rust": GrammarSource("tree-sitter-rust", "tree_sitter_rust"),
    "c": GrammarSource("tree-sitter-c", "tree_sitter_c"),
    "cpp": GrammarSource("tree-sitter-cpp", "tree_sitter_cpp"),
    "kotlin": GrammarSource("tree-sitter-kotlin", "tree_sitter_kotlin"),
    "scala": GrammarSource("tree-sitter-scala", "tree_sitter_scala"),
    "swift": GrammarSource("tree-sitter-swift", "tree_sitter_swift"),
    "ruby": GrammarSource("tree-sitter-ruby", "tree_sitter_ruby"),
    "php": GrammarSource("tree-sitter-php", "tree_sitter_php", "language_php"),
    "bash": GrammarSource("tree-sitter-bash", "tree_sitter_bash"),
    "lua": GrammarSource("tree-sitter-lua", "tree_sitter_lua"),
    "json": GrammarSource("tree-sitter-json", "tree_sitter_json"),
    "yaml": GrammarSource("tree-sitter-yaml", "tree_sitter_yaml"),
    "toml": GrammarSource("tree-sitter-toml", "tree_sitter_toml"),
    "html": GrammarSource("tree-sitter-html", "tree_sitter_html"),
    "css": GrammarSource("tree-sitter-css", "tree_sitter_css"),
    "xml": GrammarSource("tree-sitter-xml", "tree_sitter_xml", "language_xml"),
}

#: Languages with a tree-sitter grammar package installed with Splice.
GRAMMAR_LANGUAGES: tuple[str, ...] = tuple(GRAMMARS)

#: The languages the shipped models are trained and measured on: what ``splice install`` routes
#: to the driver when no ``--languages`` are given.
DEFAULT_LANGUAGES: tuple[str, ...] = (
    "python",
    "java",
    "javascript",
    "typescript",
    "tsx",
    "csharp",
    "go",
)

#: Extension -> language name. Languages without a grammar here still get the generic lexer.
EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".java": "java",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".tsx": "tsx",
    ".cs": "csharp",
    ".go": "go",
    ".rs": "rust",
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".sc": "scala",
    ".swift": "swift",
    ".rb": "ruby",
    ".rake": "ruby",
    ".gemspec": "ruby",
    ".php": "php",
    ".sh": "bash",
    ".bash": "bash",
    ".lua": "lua",
    ".json": "json",
    ".yml": "yaml",
    ".yaml": "yaml",
    ".toml": "toml",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
    ".xml": "xml",
    ".xsd": "xml",
    ".xsl": "xml",
    ".xslt": "xml",
    ".svg": "xml",
    ".csproj": "xml",
    ".props": "xml",
    ".targets": "xml",
}


def language_for_path(path: str | None) -> str | None:
    """The language of a file from its name, or None when Splice does not know it."""
    if not path:
        return None
    return EXTENSIONS.get(PurePath(path).suffix.lower())


def extensions_of(lang: str) -> list[str]:
    """The extensions (".rs") of a language, in table order."""
    return [ext for ext, name in EXTENSIONS.items() if name == lang]


def known_languages() -> list[str]:
    """Every language with extensions here: those with a grammar first, in table order."""
    rest = sorted({lang for lang in EXTENSIONS.values() if lang not in GRAMMARS})
    return [lang for lang in GRAMMARS if extensions_of(lang)] + rest


class UnknownLanguage(ValueError):
    """A word that is neither a language nor an extension Splice knows."""


def select_extensions(spec: str | None, default: tuple[str, ...] = DEFAULT_LANGUAGES) -> list[str]:
    """Extensions for a comma-separated list of languages or extensions ("rust,.py,yml").

    ``all`` stands for every known language; an empty ``spec`` for ``default``. Raises
    :class:`UnknownLanguage` naming the first word that is neither.
    """
    words = [w.strip().lower().lstrip(".") for w in (spec or "").split(",") if w.strip()]
    if not words:
        words = list(default)
    out: list[str] = []
    for word in words:
        if word == "all":
            exts = list(EXTENSIONS)
        else:
            exts = extensions_of(word) or ([f".{word}"] if f".{word}" in EXTENSIONS else [])
        if not exts:
            known = ", ".join(known_languages())
            raise UnknownLanguage(
                f"unknown language or extension {word!r} (known: {known}; or 'all')"
            )
        out += [e for e in exts if e not in out]
    return out


@cache
def grammar_installed(lang: str) -> bool:
    """Whether the grammar package of ``lang`` can be imported here (False without an entry)."""
    source = GRAMMARS.get(lang)
    return source is not None and importlib.util.find_spec(source.module) is not None


def has_grammar(lang: str | None) -> bool:
    """Whether ``lang`` is parsed with tree-sitter (its entry exists and its package is there)."""
    return lang is not None and grammar_installed(lang)


@cache
def grammar(lang: str) -> Language:
    """The tree-sitter Language for ``lang`` (KeyError for a language without a grammar)."""
    from tree_sitter import Language

    source = GRAMMARS.get(lang)
    if source is None:
        raise KeyError(f"no tree-sitter grammar for {lang!r}")
    module = importlib.import_module(source.module)
    return Language(getattr(module, source.function)())


def parser(lang: str) -> Parser:
    """A new tree-sitter Parser for ``lang`` (parsers are cheap; do not share across threads)."""
    from tree_sitter import Parser

    return Parser(grammar(lang))


_local = threading.local()


def thread_parser(lang: str) -> Parser:
    """This thread's Parser for ``lang``, made once and reused across calls."""
    cache: dict[str, Parser] = _local.__dict__.setdefault("parsers", {})
    found = cache.get(lang)
    if found is None:
        found = cache[lang] = parser(lang)
    return found
