"""The installed driver never leaves a file without markers, in real ``git merge`` runs: when
splice is not on PATH, when its executable is gone, exits 127, is killed or cannot import, when
an option is refused, and when a path or label looks like an option."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BIN_DIR, GitRepo, git_merge_file

from splice.cli.install import driver_command, git_version, splice_command

BASE = "a = 0\nkeep = 1\n"
OURS = "a = 1\nkeep = 1\n"
THEIRS = "a = 2\nkeep = 1\n"
#: A resolver that cannot resolve BASE/OURS/THEIRS (the same token changed two ways), so the
#: driver's own answer is git's markers, without loading the model.
NO_MODEL = "--resolver token-merge"
OLD_GIT = git_version() < (2, 44)


def _expected(repo: GitRepo, base=BASE, ours=OURS, theirs=THEIRS, **kw) -> bytes:
    enc = [x.encode() for x in (base, ours, theirs)]
    return git_merge_file(*enc, repo.path.parent / "expected", **kw)[1]


def _assert_git_markers(repo: GitRepo, name: str, **kw) -> None:
    """``name`` holds git merge-file's result: exactly (git < 2.44, where the labels are known),
    else both sides between markers."""
    data = repo.read(name)
    if OLD_GIT:
        assert data == _expected(repo, **kw), data
    else:
        assert b"<<<<<<< " in data and b"\na = 1\n=======\na = 2\n>>>>>>> " in data, data


def _configure(repo: GitRepo, exe: str, options: str = "", pattern: str = "*") -> None:
    """The driver line ``splice install`` writes, for the command ``exe`` (shell-quoted)."""
    line = driver_command(None, exe)
    if options:
        line = line.replace(" driver ", f" driver {options} ", 1)
    repo.git("config", "merge.splice.name", "splice (tests)")
    repo.git("config", "merge.splice.driver", line)
    info = repo.path / ".git" / "info"
    info.mkdir(exist_ok=True)
    (info / "attributes").write_text(f"{pattern} merge=splice\n")


def _copy_of_splice(tmp_path: Path) -> Path:
    """A copy of this environment's ``splice`` console script in a folder of its own."""
    folder = tmp_path / "elsewhere" / "bin"
    folder.mkdir(parents=True)
    exe = folder / "splice"
    shutil.copy2(Path(BIN_DIR) / "splice", exe)
    return exe


def _merge_without_splice_on_path(repo: GitRepo) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": "/usr/bin:/bin"}
    return repo.git("merge", "--no-edit", "theirs", check=False, env=env)


def test_splice_not_on_path_still_runs(git_repo: GitRepo) -> None:
    """``splice install`` names the executable by its absolute path: a shell without the
    virtual environment on PATH (a GUI client, an IDE) still runs the driver."""
    proc = subprocess.run(
        [str(Path(BIN_DIR) / "splice"), "install", "--languages", "py"],
        cwd=git_repo.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    git_repo.commit("install splice", ".gitattributes")
    git_repo.conflict_branches({"m.py": (BASE, OURS, THEIRS)})
    proc = _merge_without_splice_on_path(git_repo)
    assert proc.returncode == 1 and "CONFLICT (content)" in proc.stdout
    assert "splice: m.py: 0 of 1 conflict resolved" in proc.stderr, proc.stderr
    _assert_git_markers(git_repo, "m.py")


BROKEN = {
    "gone": None,
    "exits-127": "#!/bin/sh\nexit 127\n",
    "killed": "#!/bin/sh\nkill -9 $$\n",
    "not-executable": "",
    # a Python that dies before the driver's guard: exit 1, %A untouched
    "import-fails": f"#!{sys.executable}\nimport splice_package_that_is_not_installed\n",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_executable_leaves_git_markers(git_repo: GitRepo, tmp_path: Path, case: str) -> None:
    exe = _copy_of_splice(tmp_path)
    proc = subprocess.run(
        [str(exe), "install", "--languages", "py"],
        cwd=git_repo.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(exe) in git_repo.git("config", "merge.splice.driver").stdout
    git_repo.commit("install splice", ".gitattributes")
    git_repo.conflict_branches({"m.py": (BASE, OURS, THEIRS)})
    script = BROKEN[case]
    if script is None:
        exe.unlink()
    elif script == "":
        exe.chmod(0o644)
    else:
        exe.write_text(script)
    proc = _merge_without_splice_on_path(git_repo)
    assert proc.returncode == 1 and "CONFLICT (content)" in proc.stdout
    assert "splice: m.py: the driver wrote nothing" in proc.stderr, proc.stderr
    _assert_git_markers(git_repo, "m.py")
    assert "m.py" in git_repo.git("ls-files", "-u").stdout


def test_venv_whose_splice_package_fails_to_import(git_repo: GitRepo, tmp_path: Path) -> None:
    """A virtual environment whose ``splice`` script is there but whose package is not (a
    broken or half-removed install): ``from splice.entry import main`` raises, exit 1."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = (Path(BIN_DIR) / "splice").read_text().split("\n", 1)[1]
    exe = venv / "bin" / "splice"
    exe.write_text(f"#!{venv / 'bin' / 'python'}\n{script}")
    exe.chmod(0o755)
    alone = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=False)
    assert alone.returncode == 1 and "ModuleNotFoundError" in alone.stderr
    _configure(git_repo, shlex.quote(str(exe)))
    git_repo.conflict_branches({"m.py": (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1 and "CONFLICT (content)" in proc.stdout
    assert "the driver wrote nothing (exit 1)" in proc.stderr
    _assert_git_markers(git_repo, "m.py")


@pytest.mark.parametrize("layout", ["installed", "old-config"])
def test_cli_that_fails_to_import_is_guarded_by_the_entry_point(
    git_repo: GitRepo, tmp_path: Path, layout: str
) -> None:
    """``splice.entry`` loads, the CLI does not (a broken ``click`` shadows the real one on
    PYTHONPATH): the entry point runs git merge-file itself, one line, exit 1. With the old
    config (plain ``splice driver``, no shell fallback) this guard alone keeps the markers."""
    broken = tmp_path / "broken"
    (broken / "click").mkdir(parents=True)
    (broken / "click" / "__init__.py").write_text("raise ImportError('click is broken')\n")
    if layout == "installed":
        _configure(git_repo, shlex.quote(str(Path(BIN_DIR) / "splice")))
    else:
        git_repo.use_driver()
    git_repo.conflict_branches({"m.py": (BASE, OURS, THEIRS)})
    env = {**os.environ, "PYTHONPATH": str(broken)}
    proc = git_repo.git("merge", "--no-edit", "theirs", check=False, env=env)
    assert proc.returncode == 1 and "CONFLICT (content)" in proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("splice")]
    assert lines == [
        "splice: m.py: splice cannot start (ImportError: click is broken); "
        "git merge-file wrote the markers"
    ], proc.stderr
    assert "Traceback" not in proc.stderr
    _assert_git_markers(git_repo, "m.py")


@pytest.mark.parametrize("name", ["-hx.py", "-s", "-x.py", "--help", "--", "-"])
def test_paths_that_look_like_options(git_repo: GitRepo, name: str) -> None:
    """Before ``--``, ``-hx.py`` printed help and exited 0 (git committed ours alone), ``-s``
    exited 2 with %A untouched and ``-x.py`` became a label."""
    _configure(git_repo, shlex.quote(str(Path(BIN_DIR) / "splice")), NO_MODEL)
    git_repo.conflict_branches({name: (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "CONFLICT (content)" in proc.stdout
    assert f"splice: {name}: 0 of 1 conflict resolved" in proc.stderr, proc.stderr
    assert git_repo.read(name) == _expected(git_repo)


def test_labels_that_look_like_options(tmp_path: Path) -> None:
    """Labels (git >= 2.44 passes %S %X %Y) that start with '-' stay labels."""
    for name, text in (("o", BASE), ("a", OURS), ("b", THEIRS)):
        (tmp_path / name).write_text(text)
    cmd = [str(Path(BIN_DIR) / "splice"), "driver", *NO_MODEL.split(), "--style", "diff3"]
    cmd += ["-s", "-h", "-x", "-y", "-y", "--", "--", "o", "a", "b", "7", "-x.py"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, check=False)
    assert proc.returncode == 1, proc.stderr
    text = (tmp_path / "a").read_text()
    assert text.startswith("<<<<<<< -y\na = 1\n||||||| -h\na = 0\n=======\na = 2\n>>>>>>> --\n")


BAD_OPTIONS = ["--timeout inf", "--timeout nan", "--timeout 0", "--timeout -1", "--max-size 0"]


@pytest.mark.parametrize("option", BAD_OPTIONS)
@pytest.mark.parametrize("layout", ["installed", "old-config"])
def test_refused_option_still_leaves_markers(git_repo: GitRepo, option: str, layout: str) -> None:
    """A refused option is one line on stderr, never a traceback, and %A gets git's markers
    (from the entry point's guard, so also with an old config that has no shell fallback)."""
    if layout == "installed":
        _configure(git_repo, shlex.quote(str(Path(BIN_DIR) / "splice")), option)
    else:
        git_repo.use_driver(option)
    git_repo.conflict_branches({"m.py": (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1 and "CONFLICT (content)" in proc.stdout
    assert "Traceback" not in proc.stderr and "Usage" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("splice")]
    flag = option.split()[0]
    assert len(lines) == 1 and flag in lines[0] and "not a positive number" in lines[0], lines
    assert git_repo.read("m.py") == _expected(git_repo)


@pytest.mark.parametrize("option", ["--timeout inf", "--timeout nan", "--timeout 0"])
def test_mergetool_refuses_bad_timeouts(tmp_path: Path, option: str) -> None:
    for name in "oabm":
        (tmp_path / name).write_text(BASE)
    cmd = [str(Path(BIN_DIR) / "splice"), "mergetool", *option.split(), "--", "o", "a", "b", "m"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a positive number of seconds" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_library_refuses_bad_limits() -> None:
    from splice.cli.driver import MergeRequest

    for timeout in (float("inf"), float("nan"), 0.0, -1.0):
        with pytest.raises(ValueError, match="timeout"):
            MergeRequest("o", "a", "b", timeout=timeout)
    with pytest.raises(ValueError, match="max_size"):
        MergeRequest("o", "a", "b", max_size=0)


@pytest.mark.parametrize("how", ["driver", "guard"])
@pytest.mark.parametrize("style", ["diff3", "zdiff3"])
def test_style_outside_a_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str, style: str
) -> None:
    """Outside a repository git merge-file reads no configuration (``-c`` included): the style
    must be passed as --diff3 / --zdiff3, by the driver and by the entry point's guard."""
    work = tmp_path / "outside"
    work.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    for name, text in (("o", BASE), ("a", OURS), ("b", THEIRS)):
        (work / name).write_text(text)
    bad = ["--timeout", "0"] if how == "guard" else []
    cmd = [str(Path(BIN_DIR) / "splice"), "driver", *NO_MODEL.split(), "--style", style, *bad]
    proc = subprocess.run(
        [*cmd, "--", "o", "a", "b", "7", "f.py"], cwd=work, capture_output=True, text=True
    )
    assert proc.returncode == 1, proc.stderr
    assert (work / "a").read_text() == (
        "<<<<<<< ours\na = 1\n||||||| base\na = 0\n=======\na = 2\n>>>>>>> theirs\nkeep = 1\n"
    )


def test_splice_command_finds_this_environment() -> None:
    assert splice_command() == [str(Path(BIN_DIR) / "splice")]


def _doctor(repo: GitRepo, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(BIN_DIR) / "splice"), "doctor", *args]
    return subprocess.run(cmd, cwd=repo.path, capture_output=True, text=True, timeout=300)


def test_doctor_healthy_after_install(git_repo: GitRepo) -> None:
    subprocess.run(
        [str(Path(BIN_DIR) / "splice"), "install", "--languages", "py"],
        cwd=git_repo.path,
        check=True,
        capture_output=True,
    )
    proc = _doctor(git_repo)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "runs from a clean shell and merges" in proc.stdout
    assert "attributes send *.py to the driver" in proc.stdout
    assert proc.stdout.splitlines()[-1] == "healthy"


def test_doctor_finds_each_problem(git_repo: GitRepo, tmp_path: Path) -> None:
    proc = _doctor(git_repo)
    assert proc.returncode == 1 and "no merge.splice.driver is configured" in proc.stdout
    assert "run `splice install`" in proc.stdout

    git_repo.use_driver()  # the old value: found through PATH, no fallback
    proc = _doctor(git_repo)
    assert proc.returncode == 1 and "finds splice through PATH" in proc.stdout

    exe = _copy_of_splice(tmp_path)
    _configure(git_repo, shlex.quote(str(exe)))
    assert _doctor(git_repo).returncode == 0
    exe.write_text("#!/bin/sh\nexit 127\n")
    proc = _doctor(git_repo)
    assert proc.returncode == 1
    assert f"`{exe} --version` fails from a clean shell" in proc.stdout
    exe.unlink()
    assert "fails from a clean shell" in _doctor(git_repo).stdout

    # a driver whose package cannot import: --version fails (ModuleNotFoundError)
    exe.write_text(f"#!{sys.executable}\nimport splice_package_that_is_not_installed\n")
    exe.chmod(0o755)
    proc = _doctor(git_repo)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stdout

    _configure(git_repo, shlex.quote(str(Path(BIN_DIR) / "splice")))
    (git_repo.path / ".git" / "info" / "attributes").write_text("")
    proc = _doctor(git_repo)
    assert proc.returncode == 1 and "no file type is sent to the driver" in proc.stdout


@pytest.mark.parametrize("name", ["-hx.py", "-s"])
def test_old_config_with_option_like_paths_keeps_markers(git_repo: GitRepo, name: str) -> None:
    """With an old config (no ``--``), git's path still reaches click as an option: the entry
    point's guard sees that the driver did not run and writes git's markers."""
    git_repo.use_driver()
    git_repo.conflict_branches({name: (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1 and "CONFLICT (content)" in proc.stdout
    assert git_repo.read(name) == _expected(git_repo)
    assert "git merge-file wrote the markers" in proc.stderr
