"""What a resolver may know about the whole file around a hunk: names used and how much each side
changed.

Built once per file and shared by the file's hunks: by :func:`splice.resolver.pipeline.find_hunks`
(the driver), and from the three views of a file with conflict markers (``splice resolve``, the
language server). Everything is computed lazily, so resolvers that never look pay nothing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

from splice.resolver.chunks import Chunk, Stable

if TYPE_CHECKING:
    from splice.resolver.linemerge import Change

#: What counts as a name (identifiers and keywords alike; the reranker only compares sets).
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def names(lines: Sequence[str]) -> frozenset[str]:
    """The set of names in ``lines``."""
    return frozenset(NAME.findall("".join(lines)))


class FileContext:
    """The three versions of a file (lines) and their line merge (the diff3 chunks; merged here
    when not given)."""

    def __init__(
        self,
        base: Sequence[str],
        ours: Sequence[str],
        theirs: Sequence[str],
        chunks: list[Chunk] | None = None,
        scripts: tuple[list[Change], list[Change]] | None = None,
    ) -> None:
        self.base, self.ours, self.theirs = base, ours, theirs
        self._chunks = chunks
        #: ``diff_lines`` of base to ours and to theirs, when the caller already has them.
        self._scripts = scripts

    @cached_property
    def scripts(self) -> tuple[list[Change], list[Change]]:
        """``diff_lines`` of base to ours and to theirs (computed once, shared with the merge)."""
        if self._scripts is None:
            from splice.resolver.linemerge import diff_lines

            self._scripts = (diff_lines(self.base, self.ours), diff_lines(self.base, self.theirs))
        return self._scripts

    @cached_property
    def chunks(self) -> list[Chunk]:
        if self._chunks is None:
            from splice.resolver.linemerge import merge_lines

            self._chunks = merge_lines(
                self.base, self.ours, self.theirs, style="diff3", scripts=self.scripts
            )
        return self._chunks

    @cached_property
    def n_conflicts(self) -> int:
        """How many conflict hunks the line merge leaves."""
        return sum(1 for c in self.chunks if not isinstance(c, Stable))

    @cached_property
    def rest_names(self) -> frozenset[str]:
        """Names in the merged file outside every conflict hunk."""
        return names([u for c in self.chunks if isinstance(c, Stable) for u in c.units])

    @cached_property
    def base_names(self) -> frozenset[str]:
        return names(self.base)

    @cached_property
    def ours_names(self) -> frozenset[str]:
        return names(self.ours)

    @cached_property
    def theirs_names(self) -> frozenset[str]:
        return names(self.theirs)

    @cached_property
    def changed_lines(self) -> tuple[int, int]:
        """Lines deleted plus lines added by (ours, theirs) against base, whole file."""
        ours, theirs = self.scripts
        return sum(n1 + n2 for _, n1, _, n2 in ours), sum(n1 + n2 for _, n1, _, n2 in theirs)
