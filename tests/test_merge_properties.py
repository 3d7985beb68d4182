"""Property tests of the whole file merge on random line edits (hypothesis).

merge(O, A, O) == A, merge(O, O, B) == B, merge(O, A, A) == A; a clean merge keeps every change
of both sides; a clean result has no markers; with nothing resolved the output is git's.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from splice.resolver.pipeline import Labels, merge_file
from splice.resolver.resolvers import get_resolver

RESOLVER = get_resolver("token-merge")
LINES = st.sampled_from(["a\n", "b\n", "x = 1\n", "y = 2\n", "}\n", "\n", "return z\n", "c\r\n"])
FILES = st.lists(LINES, max_size=12)


@st.composite
def edited(draw: st.DrawFn, base: list[str]) -> list[str]:
    """Random line edits of ``base``: deletions, insertions and replacements."""
    out = []
    for line in base:
        op = draw(st.sampled_from(["keep", "keep", "keep", "drop", "replace", "insert"]))
        if op == "keep":
            out.append(line)
        elif op == "replace":
            out.append(draw(LINES))
        elif op == "insert":
            out.extend([line, draw(LINES)])
    if draw(st.booleans()):
        out.append(draw(LINES))
    return out


@st.composite
def triples(draw: st.DrawFn) -> tuple[str, str, str]:
    base = draw(FILES)
    return "".join(base), "".join(draw(edited(base))), "".join(draw(edited(base)))


def _merge(base: str, ours: str, theirs: str, style: str = "merge"):
    return merge_file(base, ours, theirs, RESOLVER, path="f.py", style=style)


@given(triples())
@settings(max_examples=150, deadline=None)
def test_one_sided_changes(t: tuple[str, str, str]) -> None:
    base, ours, theirs = t
    assert _merge(base, ours, base).text == ours
    assert _merge(base, base, theirs).text == theirs
    assert _merge(base, ours, ours).text == ours


def _has_markers(text: str) -> bool:
    return any(line.startswith(("<<<<<<<", ">>>>>>>")) for line in text.splitlines())


@given(triples(), st.sampled_from(["merge", "diff3", "zdiff3"]))
@settings(max_examples=150, deadline=None)
def test_clean_means_no_markers_and_conflicts_mean_markers(t, style) -> None:
    outcome = _merge(*t, style=style)
    if outcome.clean:
        assert not _has_markers(outcome.text)
    else:
        assert _has_markers(outcome.text)


@given(FILES, FILES, st.data())
@settings(max_examples=150, deadline=None)
def test_clean_merge_keeps_both_sides_changes(
    head: list[str], tail: list[str], data: st.DataObject
) -> None:
    """Ours edits the lines before a unique kept line, theirs the lines after it."""
    middle = "MIDDLE\n"
    base = [*head, middle, *tail]
    ours_head = data.draw(edited(head))
    theirs_tail = data.draw(edited(tail))
    ours = "".join([*ours_head, middle, *tail])
    theirs = "".join([*head, middle, *theirs_tail])
    outcome = _merge("".join(base), ours, theirs)
    assert outcome.clean
    assert outcome.text == "".join([*ours_head, middle, *theirs_tail])


def _git_merge_file(tmp: Path, base: str, ours: str, theirs: str, style: str) -> str:
    for name, text in (("o", base), ("a", ours), ("b", theirs)):
        (tmp / name).write_bytes(text.encode())
    args = ["git", "merge-file", "-p", "-L", "ours", "-L", "base", "-L", "theirs"]
    if style != "merge":
        args.append(f"--{style}")
    proc = subprocess.run([*args, "a", "o", "b"], cwd=tmp, capture_output=True, check=False)
    return proc.stdout.decode()


@given(triples(), st.sampled_from(["merge", "diff3", "zdiff3"]))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_unresolved_output_is_gits(tmp_path: Path, t, style: str) -> None:
    """Whenever the resolver applied nothing, the text equals ``git merge-file -p``."""
    base, ours, theirs = t
    labels = Labels("ours", "base", "theirs")
    outcome = merge_file(base, ours, theirs, None, path="f.py", style=style, labels=labels)
    assert outcome.text == _git_merge_file(tmp_path, base, ours, theirs, style)
