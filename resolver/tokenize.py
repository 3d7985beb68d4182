"""Lossless tokenization: ``"".join(tokenize(text, lang)) == text`` for every text.

Whitespace runs and newlines are tokens of their own; comments and string literals are split on
whitespace (as in MergeBERT) so their words are separate tokens; identifiers, keywords, numbers,
operators and punctuation are single tokens. Languages with a tree-sitter grammar are tokenized
from the tree's leaves; whatever the tree does not cover with leaves (gaps, ERROR nodes, a fragment
the grammar cannot parse) and every other language go through a generic regex lexer.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from typing import TYPE_CHECKING, Literal, NamedTuple

from splice.resolver.languages import has_grammar, thread_parser

if TYPE_CHECKING:
    from tree_sitter import Node

Kind = Literal[
    "whitespace", "newline", "comment", "string", "identifier", "keyword", "number", "punct"
]


class Token(NamedTuple):
    text: str
    kind: Kind


# --------------------------------------------------------------------------- whitespace split

_WS_SPLIT = re.compile(r"(\r\n|\n)|((?:[^\S\r\n]|\r(?!\n))+)|(\S+)")


def _split_ws(text: str, kind: Kind, out: list[Token]) -> None:
    """Words of ``text`` as ``kind`` tokens, with whitespace runs and newlines between them."""
    for m in _WS_SPLIT.finditer(text):
        group = m.lastindex
        if group == 3:
            out.append(Token(m.group(), kind))
        elif group == 1:
            out.append(Token(m.group(), "newline"))
        else:
            out.append(Token(m.group(), "whitespace"))


# --------------------------------------------------------------------------- generic lexer

#: Languages whose line comments start with ``#`` (the others get ``//`` and ``/* */``).
HASH_COMMENT_LANGUAGES = frozenset({"python", "ruby", "perl", "shell", "bash", "yaml", "toml", "r"})


def _words(text: str) -> list[str]:
    return text.split()


_OPERATORS = sorted(
    _words(">>>= <<= >>= >>> === !== **= //= ... ?? ?. ??= -> => == != <= >= && || ++ -- += -=")
    + _words("*= /= %= &= |= ^= << >> :: ** := <- |> @="),
    key=len,
    reverse=True,
)
_NEWLINE = r"(?P<newline>\r\n|\n)"
_SPACE = r"(?P<whitespace>(?:[^\S\r\n]|\r(?!\n))+)"
_STRING = (
    r'(?P<string>"""[\s\S]*?(?:"""|\Z)|\'\'\'[\s\S]*?(?:\'\'\'|\Z)'
    r'|"(?:[^"\\\r\n]|\\.)*"|\'(?:[^\'\\\r\n]|\\.)*\'|`(?:[^`\\]|\\[\s\S])*`)'
)
_NUMBER = r"(?P<number>\d\w*(?:\.\d\w*)?|\.\d\w*)"
_IDENT = r"(?P<identifier>(?:[^\W\d]|\$)[\w$]*)"
_OPERATOR = "(?P<punct>" + "|".join(re.escape(op) for op in _OPERATORS) + r"|[\s\S])"
_C_COMMENT = r"(?P<comment>//[^\r\n]*|/\*[\s\S]*?(?:\*/|\Z))"
_HASH_COMMENT = r"(?P<comment>#[^\r\n]*)"


def _lexer(comment: str) -> re.Pattern[str]:
    parts = (_NEWLINE, _SPACE, comment, _STRING, _NUMBER, _IDENT, _OPERATOR)
    return re.compile("|".join(parts))


_C_LEXER = _lexer(_C_COMMENT)
_HASH_LEXER = _lexer(_HASH_COMMENT)

#: Words the generic lexer calls keywords (a union over common languages; only a hint).
KEYWORDS = frozenset(
    _words(
        """abstract as async await break case catch class const continue def default defer del do
        elif else enum except export extends false final finally fn for from func function go if
        impl implements import in interface is lambda let match mod module namespace new nil none
        None not null or package pass private protected pub public raise return self static struct
        super switch this throw throws true True False try type typeof val var void when where
        while with yield"""
    )
)

_QUOTES = ('"""', "'''", '"', "'", "`")


def _string_tokens(text: str, out: list[Token]) -> None:
    """A string literal: its quotes, then its content split on whitespace."""
    quote = next(q for q in _QUOTES if text.startswith(q))
    closed = len(text) >= 2 * len(quote) and text.endswith(quote)
    out.append(Token(quote, "string"))
    _split_ws(text[len(quote) : len(text) - len(quote) if closed else None], "string", out)
    if closed:
        out.append(Token(quote, "string"))


def lex_generic(text: str, lang: str | None, out: list[Token] | None = None) -> list[Token]:
    """The generic regex lexer (any language; ``lang`` only picks the comment syntax)."""
    if out is None:
        out = []
    lexer = _HASH_LEXER if lang in HASH_COMMENT_LANGUAGES else _C_LEXER
    for m in lexer.finditer(text):
        kind = m.lastgroup
        value = m.group()
        if kind == "identifier":
            out.append(Token(value, "keyword" if value in KEYWORDS else "identifier"))
        elif kind == "comment":
            _split_ws(value, "comment", out)
        elif kind == "string":
            _string_tokens(value, out)
        else:
            out.append(Token(value, kind))  # type: ignore[arg-type]
    return out


# --------------------------------------------------------------------------- tree-sitter

#: Nodes whose text (outside code inside them) is string content, split on whitespace.
_STRING_NODES = frozenset(
    {
        "string",
        "string_literal",
        "template_string",
        "interpreted_string_literal",
        "raw_string_literal",
        "verbatim_string_literal",
        "interpolated_string_expression",
        "interpolated_verbatim_string_text",
        "character_literal",
        "rune_literal",
        "text_block",
        "jsx_text",
        "regex",
        "regex_pattern",
        "heredoc_body",
        # the grammars of the languages added after the first six
        "char_literal",  # rust, c, cpp
        "system_lib_string",  # c, cpp: <stdio.h>
        "multiline_string_literal",  # kotlin
        "interpolated_string",  # scala
        "line_string_literal",  # swift
        "multi_line_string_literal",
        "encapsed_string",  # php
        "nowdoc_body",
        "raw_string",  # bash
        "ansi_c_string",
        "delimited_symbol",  # ruby
        "string_array",
        "double_quote_scalar",  # yaml
        "single_quote_scalar",
        "block_scalar",
        "string_value",  # css
        "quoted_attribute_value",  # html
        "text",
        "AttValue",  # xml
        "CharData",
        "CData",
    }
)
#: String nodes that some grammars leave as one leaf, quotes included (Scala's ``string``,
#: Bash's ``raw_string``): their quotes become tokens of their own.
_LITERAL_LEAVES = frozenset({"string", "raw_string", "single_quote_scalar"})
#: Code inside a string (interpolations), tokenized as code again.
_CODE_IN_STRING = frozenset(
    {
        "interpolation",
        "template_substitution",
        "string_interpolation",
        "format_specifier",
        "interpolated_expression",  # swift
        "expansion",  # bash
        "simple_expansion",
        "command_substitution",
    }
)
#: Named leaves that are keywords although their text looks like an identifier.
_KEYWORD_LEAVES = frozenset(
    {
        "true",
        "false",
        "null",
        "none",
        "nil",
        "this",
        "self",
        "super",
        "undefined",
        "iota",
        "predefined_type",
        "integral_type",
        "floating_point_type",
        "boolean_type",
        "void_type",
        "null_literal",
        "boolean_literal",
        "primitive_type",  # rust, c, cpp
        "boolean",  # toml
        "boolean_scalar",  # yaml
        "null_scalar",
        "php_tag",
    }
)
#: Named leaves that are names although their text may not look like an identifier
#: (``runs-on``, ``font-family``, ``:sym``).
_NAME_LEAVES = frozenset(
    {
        "string_scalar",  # yaml
        "bare_key",  # toml
        "property_name",  # css
        "plain_value",
        "feature_name",
        "tag_name",  # css, html
        "attribute_name",
        "Name",  # xml
        "word",  # bash
        "simple_symbol",  # ruby
        "hash_key_symbol",
    }
)
_IDENT_RE = re.compile(r"(?:[^\W\d]|\$)[\w$]*\Z")
_NUMBER_RE = re.compile(r"\.?\d")
_DIRECTIVE_RE = re.compile(r"#\w+\Z")
_HAS_SPACE = re.compile(r"\s")

#: Contexts: code; inside a string; a string's tail (its closing quote split off); a comment.
_CODE, _STRING_CTX, _STRING_END, _COMMENT_CTX = 0, 1, 2, 3
#: A string's quotes where the grammar left them without a leaf of their own (Scala).
_OPEN_QUOTE = re.compile(r"\"\"\"|'''|[\"'`]")
_CLOSE_QUOTE = re.compile(r"(?:\"\"\"|'''|[\"'`])\Z")


def _is_comment(node: Node) -> bool:
    """A named comment node (``comment``, ``line_comment``, XML's ``Comment``...)."""
    return node.is_named and "comment" in node.type.lower()


def _string_text(text: str, ctx: int, out: list[Token]) -> None:
    """Text inside a string; at its tail (``_STRING_END``) the closing quote is a token apart."""
    close = _CLOSE_QUOTE.search(text) if ctx == _STRING_END else None
    if close is None or close.start() == 0:
        _split_ws(text, "string", out)
        return
    _split_ws(text[: close.start()], "string", out)
    out.append(Token(close.group(), "string"))


def _leaf(node: Node, text: str, ctx: int, out: list[Token]) -> None:
    kind_name = node.type
    if ctx in (_STRING_CTX, _STRING_END):
        literal = kind_name in _LITERAL_LEAVES and node.is_named and text.startswith(_QUOTES)
        if literal and _HAS_SPACE.search(text):
            _string_tokens(text, out)  # a whole literal in one leaf: its quotes apart
        else:
            _split_ws(text, "string", out)
    elif ctx == _COMMENT_CTX or "comment" in kind_name or _is_comment(node):
        _split_ws(text, "comment", out)
    else:
        named = node.is_named
        if _HAS_SPACE.search(text):
            lex_generic(text, None, out)  # e.g. a preprocessor argument: lex its words
        elif _IDENT_RE.match(text):
            kind: Kind = "keyword" if not named or kind_name in _KEYWORD_LEAVES else "identifier"
            out.append(Token(text, kind))
        elif named and kind_name in _NAME_LEAVES:
            out.append(Token(text, "identifier"))
        elif named and kind_name in _KEYWORD_LEAVES:
            out.append(Token(text, "keyword"))
        elif _NUMBER_RE.match(text):
            out.append(Token(text, "number"))
        elif not named and _DIRECTIVE_RE.match(text):
            out.append(Token(text, "keyword"))  # e.g. ``#region``, ``#if``
        else:
            out.append(Token(text, "punct"))


class _Offsets:
    """UTF-8 byte offsets to character offsets (identity for ASCII text)."""

    def __init__(self, text: str) -> None:
        self.starts: list[int] = []  # byte offset of each non-ASCII character
        self.ends: list[int] = []  # byte offset after it
        self.chars: list[int] = []  # its character offset
        extra = 0
        for m in re.finditer(r"[^\x00-\x7f]", text):
            i = m.start()
            width = len(m.group().encode("utf-8", "surrogatepass"))
            self.starts.append(i + extra)
            self.chars.append(i)
            extra += width - 1
            self.ends.append(i + extra + 1)

    def char(self, byte: int) -> int:
        j = bisect_right(self.starts, byte) - 1
        if j < 0:
            return byte
        if byte >= self.ends[j]:
            return self.chars[j] + 1 + (byte - self.ends[j])
        return self.chars[j]  # inside a character: round down to its start


def _lex_tree(text: str, lang: str) -> list[Token]:
    data = text.encode("utf-8", "surrogatepass")
    tree = thread_parser(lang).parse(data)
    offsets = None if len(data) == len(text) else _Offsets(text)
    out: list[Token] = []
    pos = 0  # characters of ``text`` already emitted

    def flush(upto: int, ctx: int) -> None:
        nonlocal pos
        if upto > pos:
            gap = text[pos:upto]
            if ctx in (_STRING_CTX, _STRING_END):
                _string_text(gap, ctx, out)
            elif ctx == _COMMENT_CTX:
                _split_ws(gap, "comment", out)
            else:
                lex_generic(gap, lang, out)
            pos = upto

    def open_quote(node: Node, start: int) -> None:
        """A string whose opening quote is no leaf of its own: the quote as a token apart."""
        nonlocal pos
        first = node.children[0].start_byte
        first = first if offsets is None else offsets.char(first)
        quote = _OPEN_QUOTE.match(text, start, first) if pos == start else None
        if quote is not None:
            out.append(Token(quote.group(), "string"))
            pos = quote.end()

    # An explicit stack: nodes with their context, and end markers that flush a node's tail.
    stack: list[tuple[Node | None, int, int]] = [(tree.root_node, _CODE, 0)]
    while stack:
        node, ctx, end = stack.pop()
        if node is None:
            flush(end, ctx)
            continue
        start_b, end_b = node.start_byte, node.end_byte
        start = start_b if offsets is None else offsets.char(start_b)
        stop = end_b if offsets is None else offsets.char(end_b)
        flush(start, ctx)
        if stop <= pos:
            continue  # empty (MISSING) or already covered
        kind_name = node.type
        if node.is_error:
            flush(stop, _CODE)
            continue
        end_ctx = ctx
        if ctx == _COMMENT_CTX:
            pass  # everything inside a comment is comment
        elif kind_name in _STRING_NODES and node.is_named:
            if node.child_count:
                open_quote(node, start)
            ctx, end_ctx = _STRING_CTX, _STRING_END
        elif kind_name in _CODE_IN_STRING:
            ctx = end_ctx = _CODE
        elif _is_comment(node):
            ctx = end_ctx = _COMMENT_CTX
        if node.child_count == 0:
            _leaf(node, text[pos:stop], ctx, out)
            pos = stop
            continue
        stack.append((None, end_ctx, stop))
        stack.extend((child, ctx, 0) for child in reversed(node.children))
    flush(len(text), _CODE)
    return out


# --------------------------------------------------------------------------- API


def tokens(text: str, lang: str | None) -> list[Token]:
    """Tokens with their kinds; their texts join to ``text`` exactly."""
    if not text:
        return []
    if has_grammar(lang):
        assert lang is not None
        return _lex_tree(text, lang)
    return lex_generic(text, lang)


def tokenize(text: str, lang: str | None) -> list[str]:
    """Token texts; ``"".join(tokenize(text, lang)) == text`` always."""
    return [t.text for t in tokens(text, lang)]
