"""The language server's pieces without a client: positions, settings, analysis, hover text."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import GitRepo
from lsprotocol import types
from splice.lsp import diagnostics, hover
from splice.lsp.analysis import Analysis, analyze
from splice.lsp.engine import Engine
from splice.lsp.positions import LineIndex, char_units
from splice.lsp.settings import Settings

DIFF3 = "a\n<<<<<<< ours\nx = 1\n||||||| base\nx = 0\n=======\nx = 2\n>>>>>>> theirs\nb\n"


def _analyze(text: str, resolver: str = "token-merge", path: str = "f.py", **kw) -> Analysis:
    engine = Engine(Settings(resolver=resolver), print)
    return analyze(
        text, uri="file:///f", version=1, path=path, engine=engine, min_confidence=0.5, **kw
    )


def test_line_index_follows_the_lsp_line_rules() -> None:
    text = "a\r\nb\rc\nd😀e"
    index = LineIndex(text)
    assert index.starts == [0, 3, 5, 7]
    assert index.position(len(text)) == types.Position(3, 4)  # the emoji is 2 UTF-16 units
    assert LineIndex(text, types.PositionEncodingKind.Utf8).position(len(text)).character == 6
    assert char_units("😀", types.PositionEncodingKind.Utf32) == 1


def test_conflict_ranges_with_lone_cr_and_crlf() -> None:
    text = "x\ry\n" + DIFF3.replace("\n", "\r\n")
    (view,) = _analyze(text).conflicts
    assert view.first_line == 3  # "x\r" is a line of its own for the editor
    assert view.range.end == types.Position(10, 0)
    assert text[view.start : view.end].startswith("<<<<<<< ours\r\n")
    assert text[view.start : view.end].endswith(">>>>>>> theirs\r\n")


def test_conflict_at_end_of_file_without_newline() -> None:
    text = DIFF3[:-3]  # no "b", no final newline
    (view,) = _analyze(text).conflicts
    assert view.end == len(text)
    assert view.range.end == types.Position(7, len(">>>>>>> theirs"))


def test_settings_accept_sections_and_report_bad_values() -> None:
    new, problems = Settings().updated(
        {"splice": {"confidenceThreshold": 0.7, "diagnostics": "no", "modelPath": "/m"}}
    )
    assert new.confidence_threshold == 0.7 and new.model_path == "/m" and new.diagnostics
    assert len(problems) == 1 and "diagnostics" in problems[0]
    assert Settings().updated(None) == (Settings(), [])
    assert Settings().updated({"confidenceThreshold": True})[1]


def test_suggestions_are_named_and_ranked() -> None:
    (view,) = _analyze(DIFF3, resolver="theirs", allow_discard=True).conflicts
    assert [c.name for c in view.candidates] == ["theirs"]
    assert view.confident is not None
    assert diagnostics.message(view) == (
        "Merge conflict: suggested resolution theirs (confidence 1.00)"
    )


def test_merge_style_without_base() -> None:
    same = "<<<<<<< ours\nx = 1  \n=======\nx = 1\n>>>>>>> theirs\n"
    (view,) = _analyze(same).conflicts
    assert view.base is None and [c.name for c in view.candidates] == ["ours"]
    other = same.replace("x = 1\n>", "x = 2\n>")
    (view,) = _analyze(other).conflicts
    assert view.candidates == ()
    assert "no confident suggestion (no base" in diagnostics.message(view)
    assert "No base in the markers" in hover.markdown(_analyze(other), view)


def test_merge_style_takes_the_base_from_git_index(git_repo: GitRepo) -> None:
    base, ours, theirs = "a\nx = 0\nb\n", "a\nx = 1\nb\n", "a\nx = 2\nb\n"
    git_repo.conflict_branches({"f.py": (base, ours, theirs)})
    assert git_repo.merge().returncode == 1
    from splice.data.git import index_stages

    path = str(git_repo.path / "f.py")
    text = git_repo.read("f.py").decode()
    (view,) = _analyze(
        text, resolver="theirs", stages=lambda: index_stages(path), allow_discard=True
    ).conflicts
    assert view.base == ("x = 0\n",) and view.base_from_index
    assert view.top is not None and view.top.text == "x = 2\n"


def test_fix_all_skips_suggestions_that_add_parse_errors() -> None:
    text = (
        "def f():\n<<<<<<< ours\n    return 1\n||||||| base\n    return 0\n=======\n"
        "    return (\n>>>>>>> theirs\n"
    )
    from splice.resolver.resolvers import Resolution, Resolver, Suggestion

    class Broken(Resolver):  # sure of an answer that does not parse
        name = "broken"

        def resolve(self, hunk):
            answer = Suggestion(("    return (\n",), 1.0, "broken")
            return Resolution(answer, (answer,))

    engine = Engine(Settings(resolver="token-merge"), print)
    engine.resolver = Broken()
    found = analyze(
        text,
        uri="file:///f",
        version=1,
        path="f.py",
        engine=engine,
        min_confidence=0.5,
        allow_discard=True,
    )
    assert found.conflicts[0].confident is None  # the one rule: sure, but a parse error
    assert found.conflicts[0].reason == "adds a parse error"
    assert found.fix_all == []
    kept = _analyze(DIFF3, resolver="theirs")  # drops ours' edit: only a suggestion
    assert kept.fix_all == [] and kept.conflicts[0].kept.startswith("dropped ours")
    assert [v.index for v, _ in _analyze(DIFF3, resolver="theirs", allow_discard=True).fix_all] == [
        0
    ]


def test_hover_code_spans() -> None:
    assert hover.code("a`b") == "``a`b``"
    assert hover.code("x\n") == "`x↵`"
    assert hover.code("") == "*nothing*"
    (view,) = _analyze(DIFF3).conflicts
    text = hover.markdown(_analyze(DIFF3), view)
    assert "replaced `0` with `1`" in text and "replaced `0` with `2`" in text


def test_server_module_imports_no_torch() -> None:
    code = (
        "import sys, splice.lsp.server as s, splice.models.serving as c; c.load_resolver('auto');"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("size", [7, 9, 12])
def test_any_marker_size(size: int) -> None:
    text = DIFF3
    for ch in "<|=>":
        text = text.replace(ch * 7, ch * size)
    (view,) = _analyze(text).conflicts
    assert view.marked.marker_size == size


def test_engine_answers_a_files_hunks_together_or_from_cache() -> None:
    """One batched call for all hunks when any is new (the reranker reads the file's other
    hunks), none when every hunk is cached."""
    from splice.resolver.chunks import Conflict
    from splice.resolver.resolvers import Hunk, Resolution

    class Recorder:
        name = "recorder"

        def __init__(self) -> None:
            self.calls: list[list[Hunk]] = []

        def resolve_many(self, hunks):
            self.calls.append(list(hunks))
            return [Resolution(chosen=None) for _ in hunks]

    engine = Engine(Settings(resolver="token-merge"), print)
    rec = engine.resolver = Recorder()
    h1, h2, h3 = (Hunk(Conflict((f"{i}\n",), ("a\n",), ("b\n",)), "python") for i in range(3))
    assert len(engine.resolve([h1, h2])) == 2 and rec.calls == [[h1, h2]]
    engine.resolve([h2, h1])
    assert len(rec.calls) == 1  # all cached
    engine.resolve([h1, h3])
    assert rec.calls[-1] == [h1, h3]  # h1 asked again, with the new hunk


def test_hover_says_confidence_not_probability() -> None:
    """Each candidate's confidence is estimated on its own: the column may add up to more than
    1, so it is not called a probability, and the hover says what it is."""
    from splice.lsp.analysis import Candidate

    found = _analyze(DIFF3)
    (view,) = found.conflicts
    view.candidates = (
        Candidate("ours", ("x = 1\n",), 0.9),
        Candidate("theirs", ("x = 2\n",), 0.8),
    )
    text = hover.markdown(found, view)
    assert "probability" not in text.lower()
    assert "| # | resolution | confidence | first line |" in text
    assert hover.CONFIDENCE_NOTE in text and "need not add up to 1" in text
    markers = analyze(
        DIFF3, uri="file:///f", version=1, path="f.py", engine=None, min_confidence=0.5
    )
    assert hover.PENDING in hover.markdown(markers, markers.conflicts[0], pending=True)
    assert diagnostics.diagnostics(markers, pending=True)[0].message == diagnostics.PENDING


def test_engine_asks_a_big_file_in_batches_nearest_the_edit_and_stops_when_told() -> None:
    """More hunks than a batch: only new hunks are asked, nearest :attr:`Engine.focus` first, and
    a cancellation between batches keeps what was answered."""
    from splice.lsp.engine import BATCH, Cancelled
    from splice.resolver.chunks import Conflict
    from splice.resolver.resolvers import Hunk, Resolution

    class Recorder:
        name = "recorder"

        def __init__(self) -> None:
            self.calls: list[list[Hunk]] = []

        def resolve_many(self, hunks):
            self.calls.append(list(hunks))
            return [Resolution(chosen=None) for _ in hunks]

    engine = Engine(Settings(resolver="token-merge"), print)
    rec = engine.resolver = Recorder()
    hunks = [Hunk(Conflict((f"{i}\n",), ("a\n",), ("b\n",)), "python") for i in range(3 * BATCH)]
    engine.focus = 2 * BATCH
    engine.cancelled = lambda: len(rec.calls) >= 1
    with pytest.raises(Cancelled):
        engine.resolve(hunks)
    (first,) = rec.calls
    assert len(first) == BATCH and hunks[2 * BATCH] in first and hunks[0] not in first
    assert all(h in engine.cache for h in first)
    engine.cancelled = lambda: False
    assert len(engine.resolve(hunks)) == len(hunks)
    assert sum(len(c) for c in rec.calls) == len(hunks)  # nothing asked twice
