"""Conflict markers: rendering like ``git merge-file -p`` and parsing back."""

from __future__ import annotations

import glob
import json
import lzma
import random
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from splice.resolver.chunks import Chunk, Conflict, Stable, split_lines
from splice.resolver.markers import ParsedConflict, parse, render

DATA = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges" / "*.jsonl.xz")
STYLES = ("merge", "diff3", "zdiff3")


def _git_merge(tmp: Path, base: str, ours: str, theirs: str, *args: str) -> str:
    for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
        (tmp / name).write_bytes(text.encode("utf-8"))
    cmd = ["git", "merge-file", "-p", *args, "ours", "base", "theirs"]
    done = subprocess.run(cmd, cwd=tmp, capture_output=True, check=False)
    assert done.returncode >= 0, done.stderr
    return done.stdout.decode("utf-8")


LABELS3 = ("-L", "ours", "-L", "base", "-L", "theirs")


# --------------------------------------------------------------------------- render vs git


@pytest.mark.parametrize(
    ("base", "ours", "theirs"),
    [
        ("a\nb\nc\n", "a\nX\nc\n", "a\nY\nc\n"),
        ("a\nb", "a\nX", "a\nY"),  # no final newline: git adds one to each side
        ("a\nb\n", "a\nX", "a\nY\n"),
        ("a\r\nb\r\nc\r\n", "a\r\nX\r\nc\r\n", "a\r\nY\r\nc\r\n"),  # CRLF markers
        ("a\r\nb", "a\r\nX", "a\r\nY"),  # CRLF, no final newline: CRLF added
        ("a\r\nb\r\nc\r\n", "a\r\nX\r\nc\r\n", "a\nY\nc\n"),  # theirs LF: LF markers
        ("a\nb\nc\n", "a\r\nX\r\nc\r\n", "a\r\nY\r\nc\r\n"),  # base LF: LF markers
        ("q\r\na\nb\r\nc\r\n", "q\r\na\nX\r\nc\r\n", "q\r\na\nY\r\nc\r\n"),  # line before: LF
        ("b\r\nc\r\n", "c\r\n", "Y\r\nc\r\n"),  # at the top, ours empty
        ("", "X\r\n", "Y\r\n"),  # empty base is undecided: LF
        ("b\r\n", "X", "Y\r\n"),  # ours' only line without newline is undecided
        ("a\nb\nc\n", "a\nc\n", "a\nY\nc\n"),  # empty ours side
        ("a\nc\n", "a\nX\nc\n", "a\nY\nc\n"),  # empty base side
    ],
)
@pytest.mark.parametrize("style", STYLES)
def test_render_matches_git_on_awkward_cases(
    tmp_path: Path, base: str, ours: str, theirs: str, style: str
) -> None:
    args = () if style == "merge" else (f"--{style}",)
    out = _git_merge(tmp_path, base, ours, theirs, *args, *LABELS3)
    parsed = parse(out)
    assert parsed.has_conflicts()
    chunks = parsed.to_chunks()
    labels = ("ours", "base", "theirs")
    if style != "merge":  # git's line-ending rule needs the base lines
        assert render(chunks, style, 7, labels, base_lines=split_lines(base)) == out
    assert render(chunks, style, 7, labels, eol=parsed.eols()) == out
    assert parsed.text() == out


def test_labels_and_marker_size(tmp_path: Path) -> None:
    base, ours, theirs = "a\nb\nc\n", "a\nX\nc\n", "a\nY\nc\n"
    out = _git_merge(
        tmp_path, base, ours, theirs, "--diff3", "--marker-size=10", "-L", "a b", "-L", "", "-L", ""
    )
    assert "|||||||||| \n" in out  # an empty label keeps its space
    chunks = parse(out).to_chunks()
    assert render(chunks, "diff3", 10, ("a b", "", "")) == out
    no_labels = render(chunks, "diff3", 7, (None, None, None))
    assert no_labels == "a\n<<<<<<<\nX\n|||||||\nb\n=======\nY\n>>>>>>>\nc\n"
    conflict = parse(no_labels).conflicts[0]
    assert conflict.labels == (None, None, None)


def test_render_rejects_unknown_style() -> None:
    with pytest.raises(ValueError):
        render([], "diff4")  # type: ignore[arg-type]


def test_render_forced_eol() -> None:
    chunks: list[Chunk] = [Conflict(base=(), ours=("x",), theirs=())]
    text = render(chunks, "merge", eol="\r\n")
    assert text == "<<<<<<< ours\r\nx\r\n=======\r\n>>>>>>> theirs\r\n"


# --------------------------------------------------------------------------- parsing


def test_parse_spans_and_fields() -> None:
    text = "a\n<<<<<<< A\no\n||||||| O\nb\n=======\nt\nt2\n>>>>>>> B\nz\n"
    parsed = parse(text)
    (c,) = parsed.conflicts
    assert (c.start, c.end) == (1, 9)
    assert c.ours == ("o\n",) and c.base == ("b\n",) and c.theirs == ("t\n", "t2\n")
    assert c.labels == ("A", "O", "B") and c.style == "diff3" and c.marker_size == 7
    assert parsed.pieces[0] == "a\n" and parsed.pieces[-1] == "z\n"
    assert parsed.conflict_at(1) is c and parsed.conflict_at(8) is c
    assert parsed.conflict_at(0) is None and parsed.conflict_at(9) is None


def test_nested_longer_markers() -> None:
    inner = (
        "<<<<<<<<< Temporary merge branch 1\nx\n=========\ny\n>>>>>>>>> Temporary merge branch 2\n"
    )
    text = f"s\n<<<<<<< HEAD\no\n||||||| merged common ancestors\n{inner}=======\nt\n>>>>>>> B\n"
    parsed = parse(text)
    (c,) = parsed.conflicts
    assert c.marker_size == 7 and c.base is not None
    assert "".join(c.base) == inner
    assert parsed.text() == text
    # the inner conflict alone, with detection
    (only,) = parse(inner).conflicts
    assert only.marker_size == 9 and only.ours == ("x\n",)
    # a forced size ignores the other one
    assert not parse(inner, marker_size=7).has_conflicts()
    assert parse(text, marker_size=9).conflicts[0].marker_size == 9


def test_marker_like_lines_in_content() -> None:
    text = (
        "<<<<<<<< not eight\n"  # a lone opener of another size
        "=======x\n"  # not a separator (text after it)
        "<<<<<<<\tno space\n"
        "<<<<<<< A\n"
        "Title\n"
        "=========\n"  # longer: content
        "a <<<<<<< b\n"
        "||||||||||\n"
        "=======\n"
        ">>>>>>>>\n"  # longer: content
        "|||||||\n"  # a | line in theirs is content
        ">>>>>>> B\n"
    )
    parsed = parse(text)
    (c,) = parsed.conflicts
    assert c.start == 3 and c.end == 12 and c.base is None
    assert c.ours == ("Title\n", "=========\n", "a <<<<<<< b\n", "||||||||||\n")
    assert c.theirs == (">>>>>>>>\n", "|||||||\n")
    assert parsed.text() == text


@pytest.mark.parametrize(
    "text",
    [
        "<<<<<<< A\nx\n=======\ny\n",  # no closer
        "<<<<<<< A\nx\n>>>>>>> B\n",  # no separator
        "x\n=======\ny\n>>>>>>> B\n",  # no opener
        "<<<<<<< A\nx\n<<<<<<< A\ny\n=======\n",  # two openers, no closer
        "<<<<<<<< A\nx\n=======\ny\n>>>>>>> B\n",  # sizes differ
        "<<<<<< A\nx\n======\ny\n>>>>>> B\n",  # too short
        "======= x\n<<<<<<< \n|||||||\r\n",
        "",
        "\n",
        "<<<<<<<",
        ">>>>>>> B\n=======\n<<<<<<< A\n",  # reversed
    ],
)
def test_malformed_regions_stay_text(text: str) -> None:
    parsed = parse(text)
    assert not parsed.has_conflicts()
    assert parsed.text() == text


def test_half_deleted_then_real_conflict() -> None:
    text = "<<<<<<< A\nstale\n<<<<<<< A\nx\n=======\ny\n>>>>>>> B\n"
    (c,) = parse(text).conflicts
    assert (c.start, c.end) == (2, 7)
    assert parse(text).pieces[0] == "<<<<<<< A\nstale\n"


def test_closer_without_final_newline() -> None:
    text = "<<<<<<< A\r\nx\r\n=======\r\ny\r\n>>>>>>> B"
    parsed = parse(text)
    (c,) = parsed.conflicts
    assert c.theirs_label == "B" and c.eol == "\r\n" and parsed.text() == text


@given(st.text(alphabet="<|=> \r\nab", max_size=200), st.sampled_from([None, 7, 8]))
@settings(max_examples=300, deadline=None)
def test_parse_never_raises_and_is_lossless(text: str, size: int | None) -> None:
    assert parse(text, size).text() == text


# --------------------------------------------------------------------------- round trips


def _is_marker_line(line: str, size: int) -> bool:
    body = line.rstrip("\n").removesuffix("\r")
    return bool(re.fullmatch(rf"([<|>])\1{{{size - 1}}}(?!\1)( .*)?|={{{size}}}", body, re.S))


_LINE_BODIES = st.one_of(
    st.text(alphabet=st.characters(exclude_characters="\n\r"), max_size=12),
    st.builds(
        lambda c, n, rest: c * n + rest,
        st.sampled_from("<|=>"),
        st.integers(5, 22),
        st.sampled_from(["", " x", "x"]),
    ),
)
_LINES = st.lists(
    st.builds(lambda b, e: b + e, _LINE_BODIES, st.sampled_from(["\n", "\r\n"])), max_size=4
)
_LABEL = st.one_of(
    st.none(),
    st.text(alphabet=st.characters(exclude_characters="\n"), max_size=10).filter(
        lambda s: not s.endswith("\r")
    ),
)


@st.composite
def _chunks(draw: st.DrawFn) -> list[Chunk]:
    out: list[Chunk] = []
    for _ in range(draw(st.integers(0, 4))):
        if draw(st.booleans()):
            units = tuple(draw(_LINES))
            if units and out and isinstance(out[-1], Stable):
                out[-1] = Stable(out[-1].units + units)
            elif units:
                out.append(Stable(units))
        else:
            out.append(
                Conflict(
                    base=tuple(draw(_LINES)), ours=tuple(draw(_LINES)), theirs=tuple(draw(_LINES))
                )
            )
    if out and draw(st.booleans()):  # no final newline on the last line of the file
        last = out[-1]
        if isinstance(last, Stable):
            units = (*last.units[:-1], last.units[-1].rstrip("\r\n"))
            units = tuple(u for u in units if u)
            if units:
                out[-1] = Stable(units)
            else:
                out.pop()
        else:
            side = draw(st.sampled_from(["base", "ours", "theirs"]))
            lines = getattr(last, side)
            if lines:
                strip = tuple(u for u in (*lines[:-1], lines[-1].rstrip("\r\n")) if u)
                out[-1] = Conflict(**{**last.__dict__, side: strip})
    return out


def _closed(lines: tuple[str, ...], eol: str) -> tuple[str, ...]:
    if lines and not lines[-1].endswith("\n"):
        return lines[:-1] + (lines[-1] + eol,)
    return lines


@given(
    _chunks(),
    st.sampled_from(STYLES),
    st.integers(7, 20),
    st.tuples(_LABEL, _LABEL, _LABEL),
)
@settings(max_examples=400, deadline=None)
def test_parse_render_round_trip(
    chunks: list[Chunk], style: str, size: int, labels: tuple[str | None, ...]
) -> None:
    for chunk in chunks:
        units = chunk.units if isinstance(chunk, Stable) else chunk.ours + chunk.base + chunk.theirs
        assume(not any(_is_marker_line(u, size) for u in units))
    text = render(chunks, style, size, labels)  # type: ignore[arg-type]
    parsed = parse(text)
    assert parsed.text() == text
    got = parsed.conflicts
    assert len(got) == sum(isinstance(c, Conflict) for c in chunks)
    expected: list[Chunk] = []
    found = iter(got)
    for chunk in chunks:
        if isinstance(chunk, Stable):
            expected.append(chunk)
            continue
        c: ParsedConflict = next(found)
        assert c.marker_size == size
        assert c.style == ("merge" if style == "merge" else "diff3")
        base_label = None if style == "merge" else labels[1]
        assert c.labels == (labels[0], base_label, labels[2])
        base = () if style == "merge" else _closed(chunk.base, c.eol)
        expected.append(Conflict(base, _closed(chunk.ours, c.eol), _closed(chunk.theirs, c.eol)))
    assert parsed.to_chunks() == expected
    assert parse(text, marker_size=size).to_chunks() == expected
    again = render(parsed.to_chunks(), style, size, labels, eol=parsed.eols())  # type: ignore[arg-type]
    assert again == text


# --------------------------------------------------------------------------- real git output


@cache
def _sample() -> list[dict[str, str]]:
    """A seeded sample of real records: ~90 at random plus the CRLF ones among the first 30."""
    records: list[dict[str, str]] = []
    for path in sorted(glob.glob(DATA)):
        with lzma.open(path, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh):
                if n >= 30:
                    break
                records.append(json.loads(line))
    if not records:
        return []
    rng = random.Random(20240611)
    picked = rng.sample(records, min(90, len(records)))
    crlf = [r for r in records if "\r\n" in r["ours"] and r not in picked]
    return picked + crlf[:15]


@pytest.mark.slow
@pytest.mark.parametrize("style", STYLES)
def test_git_output_round_trip(tmp_path: Path, style: str) -> None:
    records = _sample()
    if not records:
        pytest.skip("data set not available")
    args = () if style == "merge" else (f"--{style}",)
    seen = 0
    for rec in records:
        out = _git_merge(tmp_path, rec["base"], rec["ours"], rec["theirs"], *args, *LABELS3)
        parsed = parse(out)
        assert parsed.text() == out, rec["id"]
        if not parsed.has_conflicts():
            continue
        seen += 1
        chunks = parsed.to_chunks()
        labels = ("ours", "base", "theirs")
        if style != "merge":  # git's line-ending rule needs the base lines
            base = split_lines(rec["base"])
            assert render(chunks, style, 7, labels, base_lines=base) == out, rec["id"]  # type: ignore[arg-type]
        assert render(chunks, style, 7, labels, eol=parsed.eols()) == out, rec["id"]  # type: ignore[arg-type]
        assert all(c.labels[0] == "ours" and c.labels[2] == "theirs" for c in parsed.conflicts)
    assert seen >= len(records) * 0.8
