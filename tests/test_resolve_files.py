"""``splice resolve`` on files with conflict markers left by ordinary merges."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GitRepo
from splice.resolver.pipeline import same_up_to_whitespace

from splice.cli import main
from splice.cli.resolve import resolve_text

BASE = "head\na = 0\nmid\nb = 0\ntail\n"
OURS = "head\na = 1\nmid\nb = 1\ntail\n"
THEIRS = "head\na = 2\nmid\nb = 2\ntail\n"


@pytest.fixture
def theirs_resolver() -> str:
    return "theirs"


def _run(*args: str):
    return CliRunner().invoke(main, ["resolve", *args], catch_exceptions=False)


def _merged(repo: GitRepo, style: str, files: dict | None = None) -> None:
    repo.git("config", "merge.conflictStyle", style)
    repo.conflict_branches(files or {"f.py": (BASE, OURS, THEIRS)})
    assert repo.merge().returncode == 1


@pytest.mark.parametrize("style", ["diff3", "zdiff3"])
def test_diff3_markers_resolved_with_backup(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, theirs_resolver: str, style: str
) -> None:
    _merged(git_repo, style)
    monkeypatch.chdir(git_repo.path)
    marked = git_repo.read("f.py")
    res = _run("--resolver", theirs_resolver, "f.py")
    assert res.exit_code == 0, res.output
    assert "f.py: 2 of 2 conflicts resolved" in res.output
    assert git_repo.read("f.py") == THEIRS.encode()
    assert git_repo.read("f.py.orig") == marked


def test_dry_run_prints_diff_and_writes_nothing(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, theirs_resolver: str
) -> None:
    _merged(git_repo, "diff3")
    monkeypatch.chdir(git_repo.path)
    marked = git_repo.read("f.py")
    res = _run("--dry-run", "--resolver", theirs_resolver)  # no PATH: the unmerged files
    assert res.exit_code == 0
    assert "--- a/f.py" in res.stdout and "-a = 1" in res.stdout and "-<<<<<<< HEAD" in res.stdout
    assert git_repo.read("f.py") == marked
    assert not (git_repo.path / "f.py.orig").exists()


def test_merge_style_uses_the_index_base(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, theirs_resolver: str
) -> None:
    _merged(git_repo, "merge")
    monkeypatch.chdir(git_repo.path)
    res = _run("--no-backup", "--resolver", theirs_resolver, "f.py")
    assert res.exit_code == 0, res.output
    assert git_repo.read("f.py") == THEIRS.encode()
    assert not (git_repo.path / "f.py.orig").exists()


def test_merge_style_without_base_only_whitespace_equal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, theirs_resolver: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    unresolved = "<<<<<<< ours\r\nx = 1\r\n=======\r\nx = 2\r\n>>>>>>> theirs\r\n"
    text = (
        "\ufeffstart\r\n"
        "<<<<<<< ours\r\ny = 1  \r\n=======\r\ny = 1\r\n>>>>>>> theirs\r\n"
        "between\n" + unresolved + "end"
    )
    (tmp_path / "g.py").write_bytes(text.encode())
    res = _run("--resolver", theirs_resolver, "g.py")
    assert res.exit_code == 1
    assert "g.py: 1 of 2 conflicts resolved" in res.output
    expected = "\ufeffstart\r\ny = 1  \r\nbetween\n" + unresolved + "end"
    assert (tmp_path / "g.py").read_bytes() == expected.encode()


def test_unresolved_conflicts_kept_byte_for_byte() -> None:
    text = "a\n<<<<<<< HEAD\nx = 1\n||||||| base\nx = 0\n=======\nx = 2\n>>>>>>> b\nz"
    outcome = resolve_text(text, None, path="t.py")
    assert outcome.text == text and outcome.total == 1 and outcome.resolved == 0


def test_missing_file_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["resolve", "nope.py"])
    assert res.exit_code == 2
    assert "nope.py: no such file" in res.output


def test_same_up_to_whitespace() -> None:
    assert same_up_to_whitespace(("a \n", "b\r\n"), ("a\n", "b\n"))
    assert not same_up_to_whitespace(("a\n",), (" a\n",))
    assert not same_up_to_whitespace(("a\n",), ("a\n", "b\n"))


def test_a_files_conflicts_are_asked_together_with_the_file_around_them() -> None:
    """resolve_text hands every conflict of the file to ``resolve_many`` in one call, each
    hunk carrying the same whole-file context (what the reranker reads)."""
    from splice.resolver.resolvers import Resolution

    class Recorder:
        name = "recorder"
        min_confidence = 0.5

        def __init__(self) -> None:
            self.calls: list[list] = []

        def resolve_many(self, hunks):
            self.calls.append(list(hunks))
            return [Resolution(chosen=None) for _ in hunks]

        def resolve(self, hunk):  # pragma: no cover - resolve_many is preferred
            raise AssertionError("asked hunk by hunk")

    text = (
        "keep = 1\n<<<<<<< ours\na = 1\n||||||| base\na = 0\n=======\na = 2\n>>>>>>> theirs\n"
        "mid = read_text()\n<<<<<<< ours\nb = 1\n||||||| base\nb = 0\n=======\nb = 2\n"
        ">>>>>>> theirs\n"
    )
    rec = Recorder()
    out = resolve_text(text, rec, path="x.py")
    assert out.text == text  # nothing answered, nothing changed
    (hunks,) = rec.calls
    assert len(hunks) == 2 and hunks[0].file is hunks[1].file is not None
    ctx = hunks[0].file
    assert "".join(ctx.ours) == "keep = 1\na = 1\nmid = read_text()\nb = 1\n"
    assert "".join(ctx.theirs) == "keep = 1\na = 2\nmid = read_text()\nb = 2\n"
    assert "read_text" in ctx.rest_names and ctx.changed_lines == (4, 4)
