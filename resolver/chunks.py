"""The shared vocabulary of every merge stage: a merge is a list of stable and conflicting chunks.

A chunk holds *units*: lines (with their line endings) for the line-level merge, tokens for the
token-level merge. Joining every unit of a side gives that side's text back byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stable:
    """Units both sides agree on (after taking each one-sided change)."""

    units: tuple[str, ...]


@dataclass(frozen=True)
class Conflict:
    """Units where ours and theirs changed the same region of base differently."""

    base: tuple[str, ...]
    ours: tuple[str, ...]
    theirs: tuple[str, ...]


Chunk = Stable | Conflict


def split_lines(text: str) -> list[str]:
    """Split after every ``\\n``, keeping line endings (``\\r\\n`` stays with its line).

    Only ``\\n`` ends a line, as in git: a lone ``\\r`` is part of the line.
    """
    if not text:
        return []
    lines = text.split("\n")
    out = [line + "\n" for line in lines[:-1]]
    if lines[-1]:
        out.append(lines[-1])
    return out


def join(units: Sequence[str]) -> str:
    return "".join(units)


def text_key(text: str) -> str:
    """The comparison key of resolutions: the text with every whitespace character removed
    (two resolutions are the same when their keys are)."""
    return "".join(text.split())


def has_conflicts(chunks: Sequence[Chunk]) -> bool:
    return any(isinstance(c, Conflict) for c in chunks)


def conflicts(chunks: Sequence[Chunk]) -> list[Conflict]:
    return [c for c in chunks if isinstance(c, Conflict)]
