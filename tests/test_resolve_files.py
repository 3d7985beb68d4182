"""``splice resolve`` on files with conflict markers left by ordinary merges."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import BIN_DIR, GitRepo
from splice.resolver.pipeline import same_up_to_whitespace

from splice.cli import main
from splice.cli.resolve import resolve_text, run_resolve

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
    res = _run("--resolver", theirs_resolver, "--allow-discard", "f.py")
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
    res = _run(
        "--dry-run", "--resolver", theirs_resolver, "--allow-discard"
    )  # no PATH: the unmerged files
    assert res.exit_code == 0
    assert "--- a/f.py" in res.stdout and "-a = 1" in res.stdout and "-<<<<<<< HEAD" in res.stdout
    assert git_repo.read("f.py") == marked
    assert not (git_repo.path / "f.py.orig").exists()


def test_merge_style_uses_the_index_base(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, theirs_resolver: str
) -> None:
    _merged(git_repo, "merge")
    monkeypatch.chdir(git_repo.path)
    res = _run("--no-backup", "--resolver", theirs_resolver, "--allow-discard", "f.py")
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
    res = _run("--resolver", theirs_resolver, "--allow-discard", "g.py")
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
    from splice.resolver.resolvers import Resolution, Resolver

    class Recorder(Resolver):
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


# --------------------------------------------------------------------------- issue 14 §6: files

DIFF3 = "<<<<<<< ours\na = 1\n||||||| base\na = 0\n=======\na = 2\n>>>>>>> theirs\n"


def _outside(tmp_path: Path) -> Path:
    """A file outside the repository that a hostile link points to."""
    victim = tmp_path / "outside" / "victim.txt"
    victim.parent.mkdir(exist_ok=True)
    victim.write_bytes(b"precious\n")
    return victim


def _splice(repo: GitRepo, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed ``splice`` console script, run in the repository."""
    return subprocess.run(
        [os.path.join(BIN_DIR, "splice"), *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_a_symlink_is_refused_and_left_a_link(git_repo: GitRepo, tmp_path: Path) -> None:
    _merged(git_repo, "diff3")
    marked = git_repo.read("f.py")
    os.symlink("f.py", git_repo.path / "link.py")
    proc = _splice(git_repo, "resolve", "--resolver", "theirs", "--allow-discard", "link.py")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines() == [
        "splice: error: link.py: is a symbolic link, left as is (--follow-links resolves it)"
    ]
    assert os.readlink(git_repo.path / "link.py") == "f.py"
    assert git_repo.read("f.py") == marked
    assert not (git_repo.path / "link.py.orig").exists()


def test_follow_links_resolves_the_target_and_keeps_the_link(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    _merged(git_repo, "merge")  # merge style: the base comes from the target's index stages
    marked = git_repo.read("f.py")
    os.symlink("f.py", git_repo.path / "link.py")
    monkeypatch.chdir(git_repo.path)
    res = _run("--follow-links", "--resolver", "theirs", "--allow-discard", "link.py")
    assert res.exit_code == 0, res.output
    assert os.readlink(git_repo.path / "link.py") == "f.py"
    assert git_repo.read("f.py") == THEIRS.encode()
    assert git_repo.read("link.py.orig") == marked


def test_a_link_at_the_old_temporary_name_is_not_written_through(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _merged(git_repo, "diff3")
    victim = _outside(tmp_path)
    os.symlink(victim, git_repo.path / "f.py.splice-tmp")
    monkeypatch.chdir(git_repo.path)
    res = _run("--no-backup", "--resolver", "theirs", "--allow-discard", "f.py")
    assert res.exit_code == 0, res.output
    assert victim.read_bytes() == b"precious\n"
    assert not (git_repo.path / "f.py").is_symlink()
    assert git_repo.read("f.py") == THEIRS.encode()
    assert os.readlink(git_repo.path / "f.py.splice-tmp") == str(victim)
    leftovers = [p.name for p in git_repo.path.iterdir() if "splice-" in p.name]
    assert leftovers == ["f.py.splice-tmp"]


def test_a_link_named_like_the_backup_is_not_written_through(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _merged(git_repo, "diff3")
    marked = git_repo.read("f.py")
    victim = _outside(tmp_path)
    os.symlink(victim, git_repo.path / "f.py.orig")
    monkeypatch.chdir(git_repo.path)
    res = _run("--resolver", "theirs", "--allow-discard", "f.py")
    assert res.exit_code == 0, res.output
    assert victim.read_bytes() == b"precious\n"
    assert os.readlink(git_repo.path / "f.py.orig") == str(victim)
    assert git_repo.read("f.py.orig.1") == marked
    assert "f.py.orig exists, the original is kept in f.py.orig.1" in res.output


def test_an_existing_backup_is_kept(git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    _merged(git_repo, "diff3")
    marked = git_repo.read("f.py")
    git_repo.write("f.py.orig", "git mergetool's backup\n")
    monkeypatch.chdir(git_repo.path)
    res = _run("--resolver", "theirs", "--allow-discard", "f.py")
    assert res.exit_code == 0, res.output
    assert git_repo.read("f.py.orig") == b"git mergetool's backup\n"
    assert git_repo.read("f.py.orig.1") == marked


def test_a_second_run_keeps_the_first_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    original = (
        "head\n<<<<<<< ours\nx = g(a, b)\n||||||| base\nx = f(a, b)\n=======\nx = f(a, c)\n"
        ">>>>>>> theirs\nmid\n" + DIFF3 + "tail\n"
    )
    (tmp_path / "f.py").write_text(original)
    first = _run("--resolver", "token-merge", "--min-confidence", "0.5", "f.py")
    assert first.exit_code == 1 and "f.py: 1 of 2 conflicts resolved" in first.output
    after_first = (tmp_path / "f.py").read_text()
    assert after_first == "head\nx = g(a, c)\nmid\n" + DIFF3 + "tail\n"
    second = _run("--resolver", "theirs", "--allow-discard", "f.py")
    assert second.exit_code == 0, second.output
    assert (tmp_path / "f.py").read_text() == "head\nx = g(a, c)\nmid\na = 2\ntail\n"
    assert (tmp_path / "f.py.orig").read_text() == original
    assert (tmp_path / "f.py.orig.1").read_text() == after_first


MALFORMED = {
    # name: (text after the good conflict, the same after resolving, lines of markers left)
    "missing separator": (
        "<<<<<<< ours\nb = 1\n||||||| base\nb = 0\n>>>>>>> theirs\n",
        None,
        [3, 5, 7],
    ),
    "stray opening": ("<<<<<<< ours\nb = 1\n", None, [3]),
    "stray closing": ("b = 1\n>>>>>>> theirs\n", None, [4]),
    "nested": (
        "<<<<<<< outer\n" + DIFF3 + "=======\nc = 3\n>>>>>>> outer\n",
        "<<<<<<< outer\na = 2\n=======\nc = 3\n>>>>>>> outer\n",
        [3, 5, 7],
    ),
    "mixed sizes": (
        "<<<<<<< ours\nb = 1\n||||||| base\nb = 0\n========\nb = 2\n>>>>>>> theirs\n",
        None,
        [3, 5, 7, 9],
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
@pytest.mark.parametrize("with_good_conflict", [True, False])
def test_malformed_markers_left_mean_exit_1_with_where(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, with_good_conflict: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    tail, resolved_tail, lines = MALFORMED[case]
    head = "x = 0\n" + (DIFF3 if with_good_conflict else "a = 2\n")
    (tmp_path / "m.py").write_text(head + tail)
    res = _run("--resolver", "theirs", "--allow-discard", "m.py")
    assert res.exit_code == 1, res.output
    assert "no conflict markers" not in res.output
    found = [line for line in res.output.splitlines() if "conflict marker left" in line]
    assert [int(line.split(":")[2]) for line in found] == lines
    assert all(line.startswith("splice: m.py:") for line in found)
    assert (tmp_path / "m.py").read_text() == "x = 0\na = 2\n" + (resolved_tail or tail)


def test_a_heading_underline_is_not_a_marker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    (tmp_path / "README.rst").write_text("Title\n=======\n\n" + DIFF3)
    res = _run("--resolver", "theirs", "--allow-discard", "README.rst")
    assert res.exit_code == 0, res.output
    assert (tmp_path / "README.rst").read_text() == "Title\n=======\n\na = 2\n"


def test_a_directory_is_bad_input(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()
    assert run_resolve(["pkg"], resolver="theirs") == 2
    assert capsys.readouterr().err.splitlines() == ["splice: error: pkg: is a directory"]


def test_a_fifo_is_bad_input_and_never_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    os.mkfifo(tmp_path / "pipe.py")  # opening it for reading the usual way blocks forever
    res = _run("--resolver", "theirs", "--allow-discard", "pipe.py")
    assert res.exit_code == 2
    assert res.output.splitlines() == ["splice: error: pipe.py: is a FIFO, not a regular file"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file whatever its mode")
def test_an_unreadable_file_is_bad_input(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f.py").write_text(DIFF3)
    (tmp_path / "f.py").chmod(0)
    res = _run("--resolver", "theirs", "--allow-discard", "f.py")
    assert res.exit_code == 2
    assert res.output.splitlines() == ["splice: error: f.py: Permission denied"]


def test_a_binary_file_is_skipped_with_a_non_zero_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + DIFF3.encode()  # NULs, valid UTF-8
    (tmp_path / "img.gif").write_bytes(data)
    res = _run("--resolver", "theirs", "--allow-discard", "img.gif")
    assert res.exit_code == 1
    assert res.output.splitlines() == ["splice: img.gif: binary file, skipped"]
    assert (tmp_path / "img.gif").read_bytes() == data


def test_each_conflict_left_is_said_with_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    merge_style = "<<<<<<< ours\nb = 1\n=======\nb = 2\n>>>>>>> theirs\n"
    (tmp_path / "f.py").write_text(DIFF3 + "mid\n" + merge_style)
    res = _run("--resolver", "theirs", "--allow-discard", "f.py")
    assert res.exit_code == 1
    assert (tmp_path / "f.py").read_text() == "a = 2\nmid\n" + merge_style
    assert "splice: f.py:3: conflict left for a human" in res.output.splitlines()
