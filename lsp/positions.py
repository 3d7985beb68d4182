"""Text offsets as LSP positions: lines end at ``\\r\\n``, ``\\r`` or ``\\n`` (the LSP's rule).

Git and :mod:`splice.resolver.markers` end lines at ``\\n`` only, so conflicts are located by
character offset and converted here; a lone ``\\r`` then cannot shift the lines an editor sees.
"""

from __future__ import annotations

import re
from bisect import bisect_right

from lsprotocol import types

_BREAK = re.compile(r"\r\n|\r|\n")


def char_units(text: str, encoding: str = types.PositionEncodingKind.Utf16) -> int:
    """The length of ``text`` in the code units of a position encoding."""
    if encoding == types.PositionEncodingKind.Utf8:
        return len(text.encode("utf-8", "surrogatepass"))
    if encoding == types.PositionEncodingKind.Utf32:
        return len(text)
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


class LineIndex:
    """Where each LSP line starts in a text, to turn offsets into positions."""

    def __init__(self, text: str, encoding: str = types.PositionEncodingKind.Utf16) -> None:
        self.text = text
        self.encoding = encoding
        self.starts = [0] + [m.end() for m in _BREAK.finditer(text)]

    def line(self, offset: int) -> int:
        """The 0-based LSP line holding ``offset`` (a line break belongs to its line)."""
        return bisect_right(self.starts, offset) - 1

    def position(self, offset: int) -> types.Position:
        """The position of ``offset`` (0 <= offset <= len(text))."""
        line = self.line(offset)
        start = self.starts[line]
        return types.Position(line, char_units(self.text[start:offset], self.encoding))

    def range(self, start: int, end: int) -> types.Range:
        """The range of ``text[start:end]``."""
        return types.Range(self.position(start), self.position(end))
