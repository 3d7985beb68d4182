"""``splice install`` / ``uninstall``: idempotent, exact to undo, and really used by git merge."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GitRepo

from splice.cli import main
from splice.cli.install import (
    BEGIN,
    END,
    LEGACY_DRIVER,
    LEGACY_MERGETOOL,
    driver_command,
    mergetool_command,
    splice_command,
)


def _run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def _config(repo: GitRepo, scope: str = "--local") -> str:
    return repo.git("config", scope, "--list", check=False).stdout


def test_driver_command_labels_only_for_new_git() -> None:
    old, new = driver_command((2, 39), "/x/splice"), driver_command((2, 44), "/x/splice")
    assert old.startswith("a=$(cksum <%A); /x/splice driver -- %O %A %B %L %P || {")
    assert "%S" not in old and "-L ours -L base -L theirs -- %A %O %B" in old
    assert "/x/splice driver -s %S -x %X -y %Y -- %O %A %B %L %P || {" in new
    assert "-L %X -L %S -L %Y -- %A %O %B" in new


def test_commands_name_the_executable_by_absolute_path() -> None:
    exe = splice_command()
    assert Path(exe[0]).is_absolute() and Path(exe[0]).exists()
    assert driver_command((2, 39)).startswith(f"a=$(cksum <%A); {exe[0]} driver -- ")
    assert mergetool_command() == f'{exe[0]} mergetool -- "$BASE" "$LOCAL" "$REMOTE" "$MERGED"'
    # a quote and a percent sign (git expands %X in the driver line) in the path
    line = driver_command((2, 39), "'/o'\\''dd/100%/splice'")
    assert line.startswith("a=$(cksum <%A); '/o'\\''dd/100%%/splice' driver -- ")


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
    exe = splice_command()[0]
    assert f"set merge.splice.driver = a=$(cksum <%A); {exe} driver -- %O" in first.output
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


def test_reinstall_upgrades_old_values_and_uninstall_knows_both(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An install made before the absolute path (PATH-dependent, no fallback) is upgraded by
    running install again; uninstall removes old values, new ones, and ones naming another
    executable (installed from another environment), but never a value the user wrote."""
    monkeypatch.chdir(git_repo.path)
    config_before = _config(git_repo)
    for key, value in (
        ("merge.splice.driver", LEGACY_DRIVER[0]),
        ("mergetool.splice.cmd", LEGACY_MERGETOOL),
    ):
        git_repo.git("config", key, value)
        git_repo.git("config", "--add", "splice.installed.key", key)
    out = _run("install", "--languages", "py")
    assert out.exit_code == 0
    driver = git_repo.git("config", "merge.splice.driver").stdout.strip()
    assert driver == driver_command()
    assert git_repo.git("config", "mergetool.splice.cmd").stdout.strip() == mergetool_command()
    assert "unset merge.splice.driver" in _run("uninstall").output
    assert _config(git_repo) == config_before

    # old values alone, recorded by an old install: uninstall removes them
    for key, value in (
        ("merge.splice.driver", LEGACY_DRIVER[1]),
        ("mergetool.splice.cmd", LEGACY_MERGETOOL),
    ):
        git_repo.git("config", key, value)
        git_repo.git("config", "--add", "splice.installed.key", key)
    _run("uninstall")
    assert _config(git_repo) == config_before

    # installed from another environment: another absolute path
    _run("install", "--languages", "py")
    other = "'/opt/other env/bin/splice'"
    git_repo.git("config", "merge.splice.driver", driver_command(None, other))
    git_repo.git("config", "mergetool.splice.cmd", mergetool_command(other))
    _run("uninstall")
    assert _config(git_repo) == config_before

    # a value of the user's own is kept
    _run("install", "--languages", "py")
    git_repo.git("config", "merge.splice.driver", "my-driver %O %A %B")
    _run("uninstall")
    assert git_repo.git("config", "merge.splice.driver").stdout.strip() == "my-driver %O %A %B"


def test_install_warns_about_a_virtual_environment(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tests run in a virtual environment whose bin folder a clean shell does not search."""
    monkeypatch.chdir(git_repo.path)
    res = CliRunner().invoke(main, ["install", "--languages", "py"])
    assert res.exit_code == 0
    exe = splice_command()[0]
    notes = [line for line in res.stderr.splitlines() if "note:" in line]
    assert len(notes) == 1
    assert exe in notes[0] and "virtual environment" in notes[0] and "must stay" in notes[0]
