"""``git mergetool --tool=splice`` with trustExitCode, in real repositories."""

from __future__ import annotations

from pathlib import Path

from conftest import GitRepo

from splice.cli.install import mergetool_command
from splice.cli.mergetool import labels_from_markers


def _setup(repo: GitRepo, files: dict, options: str = "") -> None:
    cmd = mergetool_command().replace(" mergetool ", f" mergetool {options} ".replace("  ", " "))
    repo.git("config", "mergetool.splice.cmd", cmd)
    repo.git("config", "mergetool.splice.trustExitCode", "true")
    repo.git("config", "mergetool.keepBackup", "false")
    repo.conflict_branches(files)
    assert repo.merge().returncode == 1  # an ordinary merge, no driver


def _unmerged(repo: GitRepo) -> str:
    return repo.git("ls-files", "-u").stdout


def test_resolved_file_is_marked_resolved(git_repo: GitRepo) -> None:
    _setup(
        git_repo,
        {"f.py": ("a = 0\nb\n", "a = 1\nb\n", "a = 2\nb\n")},
        "--resolver theirs --allow-discard",
    )
    proc = git_repo.git("mergetool", "--tool=splice", "-y", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git_repo.read("f.py") == b"a = 2\nb\n"
    assert _unmerged(git_repo) == ""


def test_unresolved_file_stays_unmerged(git_repo: GitRepo) -> None:
    _setup(git_repo, {"f.py": ("a = 0\nb\n", "a = 1\nb\n", "a = 2\nb\n")})
    before = git_repo.read("f.py")
    proc = git_repo.git("mergetool", "--tool=splice", "-y", check=False)
    assert proc.returncode != 0
    assert "f.py" in _unmerged(git_repo)
    assert git_repo.read("f.py") == before  # git restores its own version on failure


def test_labels_from_markers(tmp_path: Path) -> None:
    f = tmp_path / "m"
    f.write_text("x\n<<<<<<< HEAD\na\n||||||| base\nb\n=======\nc\n>>>>>>> topic\n")
    assert labels_from_markers(str(f), 7) == ("HEAD", "base", "topic")
    f.write_text("<<<<<<<\na\n=======\nc\n>>>>>>>\n")
    assert labels_from_markers(str(f), 7) == (None, None, None)
