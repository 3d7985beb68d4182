"""The syntax check: reject a resolution that adds a parse error none of the inputs had.

Errors are counted on a tree-sitter parse of the whole file: every ``ERROR`` node and every
``MISSING`` node (an error node nested inside another counts too), plus one for a flagged node
whose error sits in a hidden child (tree-sitter reports e.g. C#'s missing identifier token only as
``has_error`` on the ``identifier``). Only subtrees flagged ``has_error`` are visited, so a clean
file costs one parse. Languages without a grammar (:func:`languages.has_grammar`) are never
rejected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from splice.resolver.languages import has_grammar, thread_parser

if TYPE_CHECKING:
    from tree_sitter import Node


def _count(node: Node) -> int:
    if not node.has_error:
        return 0
    n = 0
    stack = [node]
    while stack:
        cur = stack.pop()
        kids = [ch for ch in cur.children if ch.has_error]
        # A flagged node without flagged children hides its error (e.g. a MISSING hidden token).
        if cur.is_error or cur.is_missing or not kids:
            n += 1
        stack.extend(kids)
    return n


def error_count(text: str, lang: str) -> int:
    """ERROR plus MISSING nodes in the parse of ``text`` (KeyError if ``lang`` has no grammar)."""
    tree = thread_parser(lang).parse(text.encode("utf-8", "surrogatepass"))
    return _count(tree.root_node)


class SyntaxCheck:
    """The three inputs of one file merge; their error counts are parsed once, on first use."""

    def __init__(self, base: str, ours: str, theirs: str, lang: str | None) -> None:
        self.lang = lang if has_grammar(lang) else None
        self._inputs = (base, ours, theirs)
        self._baseline: int | None = None

    @property
    def baseline(self) -> int:
        """The fewest parse errors among base, ours and theirs (0 without a grammar)."""
        if self._baseline is None:
            lang = self.lang
            self._baseline = 0 if lang is None else min(error_count(t, lang) for t in self._inputs)
        return self._baseline

    def adds_parse_error(self, candidate: str) -> bool:
        """True when the candidate file has more parse errors than the cleanest input.

        A candidate without errors is accepted without parsing the inputs.
        """
        if self.lang is None:
            return False
        n = error_count(candidate, self.lang)
        return n > 0 and n > self.baseline


def adds_parse_error(candidate: str, base: str, ours: str, theirs: str, lang: str | None) -> bool:
    """True when ``candidate`` has more parse errors than the min over the three inputs.

    False for a language without a grammar. To check several candidates of one file, build a
    :class:`SyntaxCheck` once instead.
    """
    return SyntaxCheck(base, ours, theirs, lang).adds_parse_error(candidate)
