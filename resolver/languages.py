"""Languages Splice knows: file extensions and tree-sitter grammars (loaded lazily, offline)."""

from __future__ import annotations

from functools import cache
from pathlib import PurePath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tree_sitter import Language, Parser

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
    ".c": "c",
    ".h": "c",
    ".cpp": "cpp",
    ".cc": "cpp",
    ".hpp": "cpp",
    ".kt": "kotlin",
    ".rs": "rust",
}

#: Languages with a tree-sitter grammar package installed with Splice.
GRAMMAR_LANGUAGES: tuple[str, ...] = (
    "python",
    "java",
    "javascript",
    "typescript",
    "tsx",
    "csharp",
    "go",
)


def language_for_path(path: str | None) -> str | None:
    """The language of a file from its name, or None when Splice does not know it."""
    if not path:
        return None
    return EXTENSIONS.get(PurePath(path).suffix.lower())


def has_grammar(lang: str | None) -> bool:
    return lang in GRAMMAR_LANGUAGES


@cache
def grammar(lang: str) -> Language:
    """The tree-sitter Language for ``lang`` (KeyError for a language without a grammar)."""
    from tree_sitter import Language

    if lang == "python":
        import tree_sitter_python as mod

        return Language(mod.language())
    if lang == "java":
        import tree_sitter_java as mod

        return Language(mod.language())
    if lang == "javascript":
        import tree_sitter_javascript as mod

        return Language(mod.language())
    if lang in ("typescript", "tsx"):
        import tree_sitter_typescript as mod

        ptr = mod.language_typescript() if lang == "typescript" else mod.language_tsx()
        return Language(ptr)
    if lang == "csharp":
        import tree_sitter_c_sharp as mod

        return Language(mod.language())
    if lang == "go":
        import tree_sitter_go as mod

        return Language(mod.language())
    raise KeyError(f"no tree-sitter grammar for {lang!r}")


def parser(lang: str) -> Parser:
    """A new tree-sitter Parser for ``lang`` (parsers are cheap; do not share across threads)."""
    from tree_sitter import Parser

    return Parser(grammar(lang))
