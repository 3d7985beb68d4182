"""``splice install`` / ``uninstall``: idempotent, exact to undo, and really used by git merge."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GitRepo

from splice.cli import main
from splice.cli.install import BEGIN, END, driver_command


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _config(repo: GitRepo, scope: str = "--local") -> str:
    return repo.git("config", scope, "--list", check=False).stdout


def test_driver_command_labels_only_for_new_git() -> None:
    assert driver_command((2, 39)) == "splice driver %O %A %B %L %P"
    assert driver_command((2, 44)) == "splice driver %O %A %B %L %P -s %S -x %X -y %Y"


def test_install_is_idempotent_and_uninstall_exact(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    original_attrs = b"*.png binary\r\n"
    git_repo.write(".gitattributes", original_attrs)
    git_repo.git("config", "merge.conflictStyle", "diff3")
    config_before = _config(git_repo)

    first = _run("install", "--languages", "py,java")
    assert first.exit_code == 0
    assert "set merge.splice.driver = splice driver %O %A %B %L %P" in first.output
    assert "mergetool.splice.trustExitCode = true" in first.output
    attrs = git_repo.read(".gitattributes")
    expected_block = f"{BEGIN}\r\n*.py merge=splice\r\n*.java merge=splice\r\n{END}\r\n"
    assert attrs == original_attrs + expected_block.encode()
    check = git_repo.git("check-attr", "merge", "--", "a/b.py").stdout
    assert check.strip() == "a/b.py: merge: splice"
    assert "$MERGED" in git_repo.git("config", "mergetool.splice.cmd").stdout

    snapshot = (_config(git_repo), git_repo.read(".gitattributes"))
    second = _run("install", "--languages", "py,java")
    assert second.exit_code == 0
    assert "nothing changed" in second.output
    assert (_config(git_repo), git_repo.read(".gitattributes")) == snapshot

    third = _run("install", "--languages", "go")
    assert "updated" in third.output
    assert b"*.go merge=splice" in git_repo.read(".gitattributes")
    assert b"*.py merge=splice" not in git_repo.read(".gitattributes")

    out = _run("uninstall")
    assert out.exit_code == 0
    assert "unset merge.splice.driver" in out.output
    assert git_repo.read(".gitattributes") == original_attrs
    assert _config(git_repo) == config_before
    assert "nothing changed" in _run("uninstall").output


def test_uninstall_removes_created_attributes_file(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    assert _run("install").exit_code == 0
    text = git_repo.read(".gitattributes").decode()
    for ext in (".py", ".java", ".ts", ".tsx", ".cs", ".go", ".js"):
        assert f"*{ext} merge=splice" in text
    _run("uninstall")
    assert not (git_repo.path / ".gitattributes").exists()


def test_keeps_user_values_it_did_not_set(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    _run("install")
    git_repo.git("config", "mergetool.splice.cmd", "my-own-tool $MERGED")
    _run("uninstall")
    assert git_repo.git("config", "mergetool.splice.cmd").stdout.strip() == "my-own-tool $MERGED"


def test_bad_input(git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(git_repo.path)
    res = CliRunner().invoke(main, ["install", "--languages", "cobol"])
    assert res.exit_code == 2 and "unknown language" in res.output
    outside = tmp_path / "outside"
    outside.mkdir()
    monkeypatch.chdir(outside)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    res = CliRunner().invoke(main, ["install"])
    assert res.exit_code == 2 and "not in a git repository" in res.output


def test_global_install_sets_attributes_file(
    git_env: Path, git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    out = _run("install", "--global", "--languages", "python")
    assert out.exit_code == 0
    attrs = git_env / ".config" / "git" / "attributes"
    assert attrs.read_text().count("merge=splice") == 2  # .py and .pyi
    assert git_repo.git("config", "--global", "core.attributesFile").stdout.strip() == str(attrs)
    assert git_repo.git("check-attr", "merge", "--", "x.py").stdout.strip() == "x.py: merge: splice"
    assert "nothing changed" in _run("install", "--global", "--languages", "python").output
    _run("uninstall", "--global")
    assert not attrs.exists()
    assert git_repo.git("config", "--global", "--list", check=False).stdout == ""


def test_installed_driver_runs_in_a_real_merge(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(git_repo.path)
    _run("install", "--languages", "py")
    git_repo.commit("install splice", ".gitattributes")
    git_repo.conflict_branches({"m.py": ("v = 0\n", "v = 1\n", "v = 2\n")})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert "splice: m.py:" in proc.stderr
