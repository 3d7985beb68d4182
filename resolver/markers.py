"""Conflict markers: render chunks as ``git merge-file -p`` does, and parse marked-up files back.

git's rules, found by experiment with git 2.39 (``git merge-file -p``):

* Marker lines are ``<`` / ``|`` / ``=`` / ``>`` repeated ``marker_size`` times; the ``<``, ``|``
  and ``>`` lines add ``" " + label`` when a label is given (an empty label still adds the space),
  ``=======`` never has a label.
* Each of the three sides whose last line lacks a final newline gets one added before the next
  marker (so a conflict at the end of a file without a final newline loses that fact). Stable text
  is printed as is.
* Marker lines (and such added newlines) end in ``\\r\\n`` when, checked in this order and stopping
  at the first clear "no": ours' line before the conflict (its first line for a conflict at the
  top), theirs' line before the conflict, and base's first line all end in ``\\r\\n``. A line
  without a newline takes the style of the line before it; a file that is empty, or a single line
  without a newline, is undecided and does not stop the check, but a check ending undecided gives
  ``\\n``.
* diff3 and zdiff3 print the same markers; zdiff3 only moves common lines out of the conflict, and
  :func:`render` gets chunks already arranged per style.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from splice.resolver.chunks import Chunk, Conflict, Stable, split_lines

Style = Literal["merge", "diff3", "zdiff3"]
#: Labels of ours, base and theirs; None prints the marker without a label (and without a space).
Labels = tuple[str | None, str | None, str | None]

MIN_MARKER_SIZE = 7
DEFAULT_MARKER_SIZE = 7
DEFAULT_LABELS: Labels = ("ours", "base", "theirs")


# --------------------------------------------------------------------------- rendering


def _marker(char: str, size: int, label: str | None, eol: str) -> str:
    return char * size + ("" if label is None else " " + label) + eol


def _eol_style(lines: Sequence[str], i: int) -> int:
    """1 if line ``i`` of a file counts as CRLF, 0 if LF, -1 if undecided (git's rule)."""
    n = len(lines)
    if n == 0:
        return -1
    if i < n - 1:
        return int(lines[i].endswith("\r\n"))
    last = lines[i]
    if last.endswith("\n"):
        return int(last.endswith("\r\n"))
    if i == 0:
        return -1
    return int(lines[i - 1].endswith("\r\n"))


def _combine(*styles: int) -> str:
    value = -1
    for value in styles:
        if value == 0:
            return "\n"
    return "\r\n" if value == 1 else "\n"


def marker_eols(chunks: Sequence[Chunk], base_lines: Sequence[str] | None = None) -> list[str]:
    """The line ending git uses for each conflict's markers, one per Conflict, in order.

    The sides' files are rebuilt from the chunks (stable units plus that side's conflict lines);
    the base file's first line counts too, so pass ``base_lines`` when known: the chunks give the
    merged first line, which is not base's when both sides changed it the same way.
    """
    ours: list[str] = []
    theirs: list[str] = []
    base: list[str] = []
    starts: list[tuple[int, int]] = []
    for chunk in chunks:
        if isinstance(chunk, Stable):
            ours.extend(chunk.units)
            theirs.extend(chunk.units)
            base.extend(chunk.units)
        else:
            starts.append((len(ours), len(theirs)))
            ours.extend(chunk.ours)
            theirs.extend(chunk.theirs)
            base.extend(chunk.base)
    base_style = _eol_style(base if base_lines is None else base_lines, 0)
    return [
        _combine(
            _eol_style(ours, max(o - 1, 0)),
            _eol_style(theirs, max(t - 1, 0)),
            base_style,
        )
        for o, t in starts
    ]


def _side(out: list[str], lines: Sequence[str], eol: str) -> None:
    out.extend(lines)
    if lines and not lines[-1].endswith("\n"):
        out.append(eol)


def render_conflict(
    conflict: Conflict,
    style: Style = "merge",
    marker_size: int = DEFAULT_MARKER_SIZE,
    labels: Labels = DEFAULT_LABELS,
    eol: str = "\n",
) -> str:
    """One conflict with its markers, each line ending in ``eol``."""
    out = [_marker("<", marker_size, labels[0], eol)]
    _side(out, conflict.ours, eol)
    if style != "merge":
        out.append(_marker("|", marker_size, labels[1], eol))
        _side(out, conflict.base, eol)
    out.append("=" * marker_size + eol)
    _side(out, conflict.theirs, eol)
    out.append(_marker(">", marker_size, labels[2], eol))
    return "".join(out)


def render(
    chunks: Sequence[Chunk],
    style: Style = "merge",
    marker_size: int = DEFAULT_MARKER_SIZE,
    labels: Labels = DEFAULT_LABELS,
    eol: str | Sequence[str] | None = None,
    base_lines: Sequence[str] | None = None,
) -> str:
    """Print chunks with conflict markers exactly as ``git merge-file -p`` does.

    ``eol`` forces the markers' line ending: one for all conflicts, or one per conflict (e.g.
    ``parsed.eols()``). None applies git's rule (see the module docstring), which needs the base
    lines: merge-style chunks from :func:`parse` have none, so pass their ``eols()`` to be exact.
    ``base_lines`` (the base file's lines) makes the rule exact when the merged first line
    differs from base's.
    """
    if style not in ("merge", "diff3", "zdiff3"):
        raise ValueError(f"unknown conflict style {style!r}")
    if marker_size < 1:
        raise ValueError("marker_size must be positive")
    if eol is None:
        eols = iter(marker_eols(chunks, base_lines))
    elif isinstance(eol, str):
        eols = iter([eol] * len(chunks))
    else:
        eols = iter(eol)
    out: list[str] = []
    for chunk in chunks:
        if isinstance(chunk, Stable):
            out.extend(chunk.units)
        else:
            out.append(render_conflict(chunk, style, marker_size, labels, next(eols, "\n")))
    return "".join(out)


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class ParsedConflict:
    """A conflict found in a file with markers; its lines keep their line endings."""

    ours: tuple[str, ...]
    #: The common ancestor's lines; None when the markers have no ``|||||||`` section (merge style).
    base: tuple[str, ...] | None
    theirs: tuple[str, ...]
    ours_label: str | None
    base_label: str | None
    theirs_label: str | None
    marker_size: int
    #: Line span in the file: first line (the ``<<<<<<<`` line, 0-based) and end line (exclusive).
    start: int
    end: int
    #: The marker lines exactly as found (3 or 4), so that the text is rebuilt byte for byte.
    marker_lines: tuple[str, ...]

    @property
    def style(self) -> Style:
        """``"diff3"`` with a base section (zdiff3 prints the same markers), else ``"merge"``."""
        return "merge" if self.base is None else "diff3"

    @property
    def labels(self) -> Labels:
        return (self.ours_label, self.base_label, self.theirs_label)

    @property
    def eol(self) -> str:
        """The line ending of the opening marker."""
        return "\r\n" if self.marker_lines[0].endswith("\r\n") else "\n"

    def to_chunk(self) -> Conflict:
        """The conflict as a chunk (base is empty in merge style)."""
        return Conflict(base=self.base or (), ours=self.ours, theirs=self.theirs)

    def text(self) -> str:
        """The conflict with its markers, exactly as it was in the file."""
        parts = [self.marker_lines[0], *self.ours]
        if self.base is not None:
            parts += [self.marker_lines[1], *self.base]
        parts += [self.marker_lines[-2], *self.theirs, self.marker_lines[-1]]
        return "".join(parts)


Piece = str | ParsedConflict


@dataclass(frozen=True)
class ParsedFile:
    """A file split into stable text pieces and conflicts, in order (no empty text pieces)."""

    pieces: tuple[Piece, ...]

    @property
    def conflicts(self) -> list[ParsedConflict]:
        return [p for p in self.pieces if isinstance(p, ParsedConflict)]

    def has_conflicts(self) -> bool:
        return any(isinstance(p, ParsedConflict) for p in self.pieces)

    def text(self) -> str:
        """The file again, byte for byte."""
        return "".join(p if isinstance(p, str) else p.text() for p in self.pieces)

    def to_chunks(self) -> list[Chunk]:
        """Stable chunks (lines) and conflicts; render them with the conflicts' settings to get
        the text back (git output always round-trips this way)."""
        return [
            Stable(tuple(split_lines(p))) if isinstance(p, str) else p.to_chunk()
            for p in self.pieces
        ]

    def eols(self) -> list[str]:
        """Each conflict's marker line ending, in order (for :func:`render`)."""
        return [c.eol for c in self.conflicts]

    def conflict_at(self, line: int) -> ParsedConflict | None:
        """The conflict whose span holds 0-based ``line``, if any."""
        found = self.conflicts
        i = bisect_left([c.end for c in found], line + 1)
        if i < len(found) and found[i].start <= line:
            return found[i]
        return None


#: (marker char, run length, label) for a line that is shaped like a conflict marker.
_Mark = tuple[str, int, str | None]


def _classify(line: str) -> _Mark | None:
    """A marker line is a run of one marker char, then the end of the line or (not for ``=``)
    a space and a label. The run length is the marker size."""
    char = line[:1]
    if char not in ("<", "|", "=", ">"):
        return None
    body = line[:-1] if line.endswith("\n") else line
    if body.endswith("\r"):
        body = body[:-1]
    size = len(body) - len(body.lstrip(char))
    if size < MIN_MARKER_SIZE:
        return None
    rest = body[size:]
    if not rest:
        return (char, size, None)
    if rest[0] != " " or char == "=":
        return None
    return (char, size, rest[1:])


def _match(marks: list[tuple[int, _Mark]], k: int) -> list[int] | None:
    """Match one conflict opened by ``marks[k]`` among the marker lines of its size.

    Returns the indices in ``marks`` of its 3 or 4 marker lines, or None when the structure is
    incomplete (another opening marker, a closing one before the separator, or the end of file).
    """
    found = [k]
    stage = "ours"  # ours -> base -> theirs
    for j in range(k + 1, len(marks)):
        char = marks[j][1][0]
        if char == "<":
            return None
        if stage == "theirs":
            if char == ">":
                found.append(j)
                return found
            # ``|`` and ``=`` lines inside theirs are content
        elif char == "|" and stage == "ours":
            found.append(j)
            stage = "base"
        elif char == "=":
            found.append(j)
            stage = "theirs"
        elif char == ">":
            return None
        # a second ``|`` line inside the base section is content
    return None


def parse(text: str, marker_size: int | None = None) -> ParsedFile:
    """Split a file with conflict markers into stable text and conflicts; never raises.

    ``marker_size`` None accepts any size >= 7, as long as one conflict uses one size throughout.
    Incomplete or malformed marker regions stay stable text.
    """
    lines = split_lines(text)
    by_size: dict[int, list[tuple[int, _Mark]]] = {}
    openers: list[tuple[int, int]] = []  # (size, index in by_size[size])
    for i, line in enumerate(lines):
        if line[:1] in ("<", "|", "=", ">"):
            mark = _classify(line)
            if mark is not None and (marker_size is None or mark[1] == marker_size):
                same = by_size.setdefault(mark[1], [])
                if mark[0] == "<":
                    openers.append((mark[1], len(same)))
                same.append((i, mark))

    pieces: list[Piece] = []
    done = 0  # first line not yet in a piece
    for size, k in openers:
        marks = by_size[size]
        start = marks[k][0]
        if start < done:
            continue
        found = _match(marks, k)
        if found is None:
            continue
        at = [marks[j][0] for j in found]
        label = [marks[j][1][2] for j in found]
        end = at[-1] + 1
        if start > done:
            pieces.append("".join(lines[done:start]))
        has_base = len(at) == 4
        sep = at[2] if has_base else at[1]
        pieces.append(
            ParsedConflict(
                ours=tuple(lines[start + 1 : at[1]]),
                base=tuple(lines[at[1] + 1 : sep]) if has_base else None,
                theirs=tuple(lines[sep + 1 : at[-1]]),
                ours_label=label[0],
                base_label=label[1] if has_base else None,
                theirs_label=label[-1],
                marker_size=size,
                start=start,
                end=end,
                marker_lines=tuple(lines[i] for i in at),
            )
        )
        done = end
    if done < len(lines):
        pieces.append("".join(lines[done:]))
    return ParsedFile(tuple(pieces))


@dataclass
class MarkersLeft:
    """Where conflict markers are left in a text (1-based lines)."""

    #: First lines of complete conflicts left as they were (counted, not resolved).
    conflicts: list[int] = field(default_factory=list)
    #: Marker-shaped lines outside those conflicts, with their text: malformed markers.
    stray: list[tuple[int, str]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.conflicts or self.stray)


def markers_left(text: str, original: str | None = None) -> MarkersLeft:
    """The conflicts and the stray marker lines left in ``text``.

    ``original``: the text before resolving; a complete conflict of ``text`` counts as left when
    ``original`` holds the same conflict, and one that resolving made complete (the outer
    markers of a nested conflict) is stray. Without ``original`` every complete conflict counts.
    Stray lines are what malformed markers leave (a missing ``=======``, a stray ``<<<<<<<`` or
    ``>>>>>>>``, a nested conflict, mixed marker sizes), in the shape :func:`parse` reads. A lone
    ``=======`` line is also a Markdown or reStructuredText heading underline, so ``=`` lines
    count only in a file with some other stray marker line.
    """
    from collections import Counter

    known = Counter(c.text() for c in parse(original).conflicts) if original is not None else None
    left = MarkersLeft()
    inside: set[int] = set()
    for c in parse(text).conflicts:
        if known is None or known[c.text()] > 0:
            if known is not None:
                known[c.text()] -= 1
            left.conflicts.append(c.start + 1)
            inside.update(range(c.start, c.end))
    found = [
        (n, line, mark[0])
        for n, line in enumerate(split_lines(text))
        if n not in inside and (mark := _classify(line)) is not None
    ]
    if any(char != "=" for _, _, char in found):
        left.stray = [(n + 1, line.rstrip("\r\n")) for n, line, _ in found]
    return left
