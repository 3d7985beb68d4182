"""``splice ci``: test merges in real repositories, exit statuses, reports and ``--apply``."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from conftest import GitRepo

from splice.cli import main
from splice.cli.ci import merge_tree

BASE = "def f():\n    return 0\n\n\ndef g():\n    return 1\n"
OURS = "def f():\n    return 10\n\n\ndef g():\n    return 1\n"
THEIRS = "def f():\n    return 20\n\n\ndef g():\n    return 1\n"


def ci(repo: GitRepo, *args: str):
    return CliRunner().invoke(main, ["ci", "-C", str(repo.path), *args])


@pytest.fixture
def conflicted(git_repo: GitRepo) -> GitRepo:
    """main and ``theirs`` with a content conflict, a binary one and a modify/delete."""
    git_repo.write("gone.py", "x = 1\n")
    git_repo.write("img.bin", b"\x00\x01base")
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    git_repo.git("checkout", "-q", "theirs")
    git_repo.git("rm", "-q", "gone.py")
    git_repo.write("img.bin", b"\x00\x01theirs")
    git_repo.commit("theirs 2")
    git_repo.git("checkout", "-q", "main")
    git_repo.write("gone.py", "x = 2\n")
    git_repo.write("img.bin", b"\x00\x01ours")
    git_repo.commit("ours 2")
    return git_repo


def _state(repo: GitRepo) -> tuple[str, str, str]:
    head = repo.git("rev-parse", "HEAD").stdout
    status = repo.git("status", "--porcelain").stdout
    index = repo.git("ls-files", "-s").stdout
    return head, status, index


def test_clean_merge_exits_0(git_repo: GitRepo) -> None:
    base = "a\nb\nc\nd\ne\n"
    git_repo.conflict_branches({"f.py": (base, base.replace("a", "A"), base.replace("e", "E"))})
    result = ci(git_repo, "--base", "main", "--head", "theirs")
    assert result.exit_code == 0, result.output
    assert "merges cleanly" in result.output


def test_conflicts_are_reported_and_nothing_changes(conflicted: GitRepo) -> None:
    before = _state(conflicted)
    # token-merge has no answer for this conflict (the shipped model would suggest one)
    args = ["--base", "main", "--head", "theirs", "--format", "json", "--resolver", "token-merge"]
    result = ci(conflicted, *args)
    assert result.exit_code == 1, result.output
    data = json.loads(result.output)
    files = {f["path"]: f for f in data["files"]}
    assert files["img.bin"]["kind"] == "binary"
    assert files["gone.py"]["kind"] == "modify/delete"
    assert files["gone.py"]["conflicts"] == [] and files["gone.py"]["messages"]
    content = files["f.py"]
    assert content["kind"] == "content" and content["status"] == "unresolved"
    (hunk,) = content["conflicts"]
    assert hunk["ours"] == "    return 10\n" and hunk["theirs"] == "    return 20\n"
    assert data["status"] == "conflicts-left" and data["exit_code"] == 1
    assert data["counts"] == {"resolved": 0, "suggested": 0, "unresolved": 1, "other-files": 2}
    assert _state(conflicted) == before


def test_an_answer_that_drops_a_side_is_only_suggested(git_repo: GitRepo) -> None:
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    result = ci(git_repo, "--base", "main", "--head", "theirs", "--resolver", "theirs")
    assert result.exit_code == 1, result.output
    assert "0 of 1 conflict resolved, 1 left for a human (1 with a suggestion" in result.output
    assert "f.py:2: left, with a suggestion (take theirs; dropped ours" in result.output


def test_everything_resolved_exits_0_and_says_what_it_kept(git_repo: GitRepo) -> None:
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    args = ["--base", "main", "--head", "theirs", "--resolver", "theirs", "--allow-discard"]
    result = ci(git_repo, *args)
    assert result.exit_code == 0, result.output
    assert "f.py:2: resolved (take theirs; dropped ours" in result.output
    git_repo.git("config", "splice.allowDiscard", "true")  # the config entry does the same
    assert ci(git_repo, *args[:-1]).exit_code == 0


def test_suggestion_below_threshold_needs_a_human(git_repo: GitRepo) -> None:
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    args = ["--base", "main", "--head", "theirs", "--resolver", "theirs", "--allow-discard"]
    result = ci(git_repo, *args, "--min-confidence", "1", "--format", "json")
    assert result.exit_code == 0  # "theirs" is sure of itself: confidence 1.0
    data = json.loads(ci(git_repo, *args, "--format", "json").output)
    conflict = data["files"][0]["conflicts"][0]
    assert conflict["pattern"] == "take theirs" and conflict["kept"].startswith("dropped ours")


def test_markdown_has_a_table_and_diff_blocks(conflicted: GitRepo) -> None:
    result = ci(conflicted, "--base", "main", "--head", "theirs", "--format", "markdown")
    assert result.exit_code == 1
    md = result.output
    assert "| File | Line | Status | Resolution | Keeps | Confidence |" in md
    assert "```diff" in md and "-    return 0" in md and "+    return 20" in md
    assert "binary" in md and "modify/delete" in md


def test_output_file(conflicted: GitRepo, tmp_path) -> None:
    out = tmp_path / "report.md"
    result = ci(conflicted, "--base", "main", "--head", "theirs", "--format", "markdown", "-o", out)
    assert result.exit_code == 1
    assert out.read_text().startswith("### ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base", "main", "--head", "nope"], "unknown revision 'nope'"),
        (["--base", "nope", "--head", "main"], "unknown revision 'nope'"),
    ],
)
def test_bad_ref_exits_2(git_repo: GitRepo, args: list[str], message: str) -> None:
    git_repo.write("a.py", "x\n")
    git_repo.commit("one")
    result = ci(git_repo, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_not_a_repository_exits_2(tmp_path, git_env) -> None:
    result = CliRunner().invoke(main, ["ci", "-C", str(tmp_path), "--base", "a", "--head", "b"])
    assert result.exit_code == 2
    assert "not a git repository" in result.output


def test_old_git_is_explained(git_repo: GitRepo, monkeypatch) -> None:
    import splice.cli.ci

    monkeypatch.setattr(splice.cli.ci, "git_version", lambda cwd=".": (2, 37))
    result = ci(git_repo, "--base", "main", "--head", "main")
    assert result.exit_code == 2
    assert "git 2.37 is too old" in result.output and "2.38" in result.output


def test_apply_writes_a_new_branch_only(git_repo: GitRepo) -> None:
    git_repo.write("other.py", "keep\n")
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    before = _state(git_repo)
    args = ["--base", "main", "--head", "theirs", "--resolver", "theirs", "--allow-discard"]
    args += ["--apply", "merged"]
    result = ci(git_repo, *args)
    assert result.exit_code == 0, result.output
    assert _state(git_repo) == before
    assert git_repo.git("show", "merged:f.py").stdout == THEIRS
    assert git_repo.git("show", "merged:other.py").stdout == "keep\n"
    parents = git_repo.git("rev-list", "--parents", "-n1", "merged").stdout.split()[1:]
    main, theirs = (git_repo.git("rev-parse", b).stdout.strip() for b in ("main", "theirs"))
    assert parents == [main, theirs]
    again = ci(git_repo, *args)
    assert again.exit_code == 2 and "already exists" in again.output


def test_apply_with_markers_needs_allow_markers(git_repo: GitRepo) -> None:
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    args = ["--base", "main", "--head", "theirs", "--resolver", "token-merge"]
    refused = ci(git_repo, *args, "--apply", "wip")
    assert refused.exit_code == 1
    assert "--allow-markers" in refused.output
    assert git_repo.git("rev-parse", "--verify", "--quiet", "wip", check=False).returncode != 0
    written = ci(git_repo, *args, "--apply", "wip", "--allow-markers")
    assert written.exit_code == 1
    text = git_repo.git("show", "wip:f.py").stdout
    assert "<<<<<<< main" in text and ">>>>>>> theirs" in text


def test_merge_tree_parses_messages(conflicted: GitRepo) -> None:
    merged = merge_tree(str(conflicted.path), "main", "theirs")
    assert not merged.clean
    assert set(merged.stages) == {"f.py", "gone.py", "img.bin"}
    kinds = {k for k, _ in merged.messages["img.bin"]}
    assert "CONFLICT (binary)" in kinds
