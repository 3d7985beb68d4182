"""Hooks: the marker check, plain git hooks from ``splice install --hooks``, and pre-commit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import GitRepo
from splice.hooks.check_markers import find_markers
from splice.hooks.git_hooks import SUFFIX, hook_script

ROOT = Path(__file__).resolve().parent.parent
MARKED = "a = 1\n<<<<<<< ours\nb = 2\n=======\nb = 3\n>>>>>>> theirs\nc = 4\n"
DIFF3 = "x = 0\n<<<<<<< ours\ny = 1\n||||||| base\ny = 0\n=======\ny = 2\n>>>>>>> theirs\n"


def splice(repo: GitRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "splice", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
    )


def test_markers_of_any_size_with_lines() -> None:
    big = "x\n" + "<" * 9 + " a\ny\n" + "=" * 9 + "\nz\n" + ">" * 9 + " b\n"
    assert find_markers(MARKED) == [(2, "conflict (marker size 7)")]
    assert find_markers(big) == [(2, "conflict (marker size 9)")]
    assert find_markers("<<<<<<< HEAD\nonly an opening marker\n")[0][0] == 1
    assert find_markers("title\n=======\n\ntext <<<<<<< not at the start\n") == []


def test_malformed_markers_are_found_in_every_shape_the_parser_reads() -> None:
    """Unlabelled and mixed-size markers (the check used to see only labelled ones)."""
    assert find_markers("a\n<<<<<<<\nb\n") == [(2, "stray conflict marker '<<<<<<<'")]
    mixed = "<<<<<<< ours\nx\n=========\ny\n>>>>>>> theirs\n"
    assert [line for line, _ in find_markers(mixed)] == [1, 3, 5]
    missing = "<<<<<<< ours\nx\ny\n>>>>>>> theirs\n"
    assert [line for line, _ in find_markers(missing)] == [1, 4]


def test_pre_commit_resolver_reports_malformed_markers(tmp_path: Path) -> None:
    """``splice-resolve`` (the pre-commit fixer) fails on a file whose markers it cannot read."""
    from splice.hooks.resolve_staged import resolve_files

    path = tmp_path / "f.py"
    path.write_text("a = 1\n<<<<<<< ours\nb = 2\n>>>>>>> theirs\n")
    assert resolve_files([str(path)], resolver="ours") == 1
    assert path.read_text().count(">>>>>>> theirs") == 1  # left as it was


def test_pre_commit_hook_blocks_markers(git_repo: GitRepo) -> None:
    git_repo.write("ok.py", "fine\n")
    git_repo.commit("first")
    proc = splice(git_repo, "install", "--hooks")
    assert proc.returncode == 0, proc.stderr
    assert "installed the pre-commit hook" in proc.stdout
    git_repo.write("f.py", MARKED)
    git_repo.git("add", "f.py")
    blocked = git_repo.git("commit", "-m", "markers", check=False)
    assert blocked.returncode != 0
    assert "f.py:2: conflict (marker size 7)" in blocked.stdout + blocked.stderr
    git_repo.write("f.py", "a = 1\nb = 3\n")
    git_repo.git("add", "f.py")
    git_repo.git("commit", "-q", "-m", "clean")
    again = splice(git_repo, "install", "--hooks")
    assert "installed the" not in again.stdout  # idempotent


def test_existing_hook_is_chained_and_restored(git_repo: GitRepo) -> None:
    hooks = git_repo.path / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    mine = "#!/bin/sh\ntouch chained-ran\n"
    (hooks / "pre-commit").write_text(mine)
    (hooks / "pre-commit").chmod(0o755)
    assert splice(git_repo, "install", "--hooks").returncode == 0
    assert (hooks / f"pre-commit{SUFFIX}").read_text() == mine
    git_repo.write("f.py", MARKED)
    git_repo.git("add", "f.py")
    blocked = git_repo.git("commit", "-m", "markers", check=False)
    assert blocked.returncode != 0 and (git_repo.path / "chained-ran").exists()
    proc = splice(git_repo, "uninstall")
    assert "restored the previous pre-commit hook" in proc.stdout
    assert (hooks / "pre-commit").read_text() == mine
    assert not (hooks / "post-merge").exists()


def test_refuses_when_it_cannot_chain(git_repo: GitRepo) -> None:
    hooks = git_repo.path / ".git" / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "post-merge").write_text("#!/bin/sh\necho mine\n")
    (hooks / f"post-merge{SUFFIX}").write_text("#!/bin/sh\necho older\n")
    proc = splice(git_repo, "install", "--hooks")
    assert proc.returncode == 2
    assert "not overwriting" in proc.stderr
    assert (hooks / "post-merge").read_text() == "#!/bin/sh\necho mine\n"
    assert not (hooks / "pre-commit").exists()


def test_hooks_are_per_repository(git_repo: GitRepo) -> None:
    proc = splice(git_repo, "install", "--global", "--hooks")
    assert proc.returncode == 2 and "leave out --global" in proc.stderr


def test_post_merge_summary(git_repo: GitRepo) -> None:
    assert splice(git_repo, "install", "--hooks").returncode == 0
    git_repo.use_driver("--resolver theirs --allow-discard")
    git_repo.conflict_branches({"f.py": ("a = 0\n", "a = 1\n", "a = 2\n")})
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "splice: resolved 1 conflict(s) in 1 file(s); 0 left for a human" in out
    assert "f.py: 1 of 1 conflict resolved" in out
    log = git_repo.path / ".git" / "splice" / "last-merge.jsonl"
    assert log.read_text() == ""  # consumed


def test_hook_script_runs_splice_with_this_python() -> None:
    script = hook_script("pre-commit", "/opt/py'thon")
    assert script.startswith("#!/bin/sh\n")
    assert "'/opt/py'\\''thon' -m splice.hooks.check_markers --staged" in script


# --------------------------------------------------------------------------- pre-commit


def _local_config(args: dict[str, list[str]]) -> str:
    """A ``repo: local`` config with the manifest's hooks, run with this environment's python."""
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    hooks = []
    for hook in manifest:
        hook = {**hook, "language": "system"}
        if hook["id"] in args:
            hook["args"] = args[hook["id"]]
        hooks.append(hook)
    return yaml.safe_dump({"repos": [{"repo": "local", "hooks": hooks}]})


@pytest.fixture
def pre_commit_repo(git_repo: GitRepo, tmp_path: Path, monkeypatch) -> GitRepo:
    pytest.importorskip("pre_commit")
    monkeypatch.setenv("PRE_COMMIT_HOME", str(tmp_path / "pre-commit-home"))
    config = _local_config({"splice-resolve": ["--resolver", "theirs", "--allow-discard"]})
    git_repo.write(".pre-commit-config.yaml", config)
    git_repo.commit("config")
    return git_repo


def _pre_commit(repo: GitRepo, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ["PATH"]}
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "run", *args],
        cwd=repo.path,
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )


def test_pre_commit_manifest() -> None:
    yaml = pytest.importorskip("yaml")
    manifest = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert [h["id"] for h in manifest] == ["splice-check-markers", "splice-resolve"]
    assert all(h["language"] == "python" for h in manifest)


def test_pre_commit_check_markers(pre_commit_repo: GitRepo) -> None:
    pre_commit_repo.write(
        "f.py", MARKED.replace("<" * 7, "<" * 8).replace("=" * 7, "=" * 8).replace(">" * 7, ">" * 8)
    )
    pre_commit_repo.git("add", "f.py")
    proc = _pre_commit(pre_commit_repo, "splice-check-markers")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "f.py:2: conflict (marker size 8)" in proc.stdout


def test_pre_commit_resolve(pre_commit_repo: GitRepo) -> None:
    pre_commit_repo.write("f.py", DIFF3)
    pre_commit_repo.write("g.py", "clean\n")
    pre_commit_repo.git("add", "f.py", "g.py")
    proc = _pre_commit(pre_commit_repo, "splice-resolve")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "files were modified by this hook" in proc.stdout
    assert pre_commit_repo.read("f.py") == b"x = 0\ny = 2\n"
    pre_commit_repo.git("add", "f.py")
    assert _pre_commit(pre_commit_repo, "--all-files").returncode == 0
