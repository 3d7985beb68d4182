"""The merge driver in real ``git merge`` runs: results, exit statuses and every fallback."""

from __future__ import annotations

import re

import pytest
from conftest import GitRepo, git_merge_file

from splice.cli.driver import MergeRequest, merge

# An unresolvable conflict: both sides change the same token differently.
BASE = "a = 0\nkeep = 1\n"
OURS = "a = 1\nkeep = 1\n"
THEIRS = "a = 2\nkeep = 1\n"


def _expect_git(repo: GitRepo, name: str, base, ours, theirs, **kw) -> bytes:
    enc = [x.encode() if isinstance(x, str) else x for x in (base, ours, theirs)]
    return git_merge_file(*enc, repo.path.parent / "expected", **kw)[1]


def test_clean_merge_is_written_and_exits_0(git_repo: GitRepo) -> None:
    git_repo.use_driver()
    base = "one\ntwo\nthree\nfour\nfive\n"
    git_repo.conflict_branches(
        {"f.py": (base, base.replace("one", "ONE"), base.replace("five", "FIVE"))}
    )
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stderr
    assert git_repo.read("f.py") == b"ONE\ntwo\nthree\nfour\nFIVE\n"
    assert "splice: f.py: merged cleanly" in proc.stderr


def test_unresolved_conflict_equals_git_merge_file(git_repo: GitRepo) -> None:
    git_repo.use_driver()
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert "CONFLICT (content)" in proc.stdout
    assert git_repo.read("f.py") == _expect_git(git_repo, "f.py", BASE, OURS, THEIRS)
    assert "splice: f.py:" in proc.stderr


def test_resolved_conflict_exits_0(git_repo: GitRepo) -> None:
    git_repo.use_driver("--resolver theirs --allow-discard")
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git_repo.read("f.py") == THEIRS.encode()
    assert "splice: f.py: 1 of 1 conflict resolved" in proc.stderr


def test_token_merge_end_to_end(git_repo: GitRepo) -> None:
    """The shipped decision applies the policy's answer when ours made theirs' edit and more
    (the file's only conflict), and leaves markers when the answer is theirs' text (ours changed
    only whitespace): that shape was below the fitted precision on held-out repositories."""
    git_repo.use_driver()
    base = "def f():\n    return call(alpha, beta)  \n"
    subsumes = (
        base,
        "def f():\n    return call(alpha2, beta, gamma)\n",
        base.replace("alpha", "alpha2"),
    )
    whitespace = (base, "def f():\n    return call(alpha, beta)\n", base.replace("alpha", "alpha2"))
    git_repo.conflict_branches({"f.py": subsumes, "g.py": whitespace})
    proc = git_repo.merge()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert git_repo.read("f.py") == b"def f():\n    return call(alpha2, beta, gamma)\n"
    assert "splice: f.py: 1 of 1 conflict resolved, both sides kept" in proc.stderr
    assert b"<<<<<<< " in git_repo.read("g.py")
    assert "splice: g.py: 0 of 1 conflict resolved" in proc.stderr


COMBINED = (
    "def f():\n    return call(alpha, 1, 2, 3, beta)\n",
    "def f():\n    return call(alpha2, 1, 2, 3, beta)\n",
    "def f():\n    return call(alpha, 1, 2, 3, beta2)\n",
)


def test_combination_needs_a_lower_threshold(git_repo: GitRepo) -> None:
    """Combining both sides' edits is below the default confidence: markers stay."""
    git_repo.use_driver()
    git_repo.conflict_branches({"f.py": COMBINED})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert git_repo.read("f.py") == _expect_git(git_repo, "f.py", *COMBINED)


def test_min_confidence_zero_applies_combination(git_repo: GitRepo) -> None:
    git_repo.use_driver("--min-confidence 0")
    git_repo.conflict_branches({"f.py": COMBINED})
    proc = git_repo.merge()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert git_repo.read("f.py") == b"def f():\n    return call(alpha2, 1, 2, 3, beta2)\n"


@pytest.mark.parametrize("style", ["merge", "diff3", "zdiff3"])
def test_style_and_marker_size_from_repository(git_repo: GitRepo, style: str) -> None:
    git_repo.use_driver()
    git_repo.git("config", "merge.conflictStyle", style)
    attrs = git_repo.path / ".git" / "info" / "attributes"
    attrs.write_text("* merge=splice conflict-marker-size=11\n")
    base = "head\nx = 0\ny = 0\ntail\n"
    ours = "head\nx = 1\ny = 0\nz = 1\ntail\n"
    theirs = "head\nx = 2\ny = 0\nz = 1\ntail\n"
    git_repo.conflict_branches({"f.py": (base, ours, theirs)})
    assert git_repo.merge().returncode == 1
    expected = _expect_git(git_repo, "f.py", base, ours, theirs, style=style, marker_size=11)
    assert b"<" * 11 + b" ours" in expected
    assert git_repo.read("f.py") == expected


# Inputs that must survive byte for byte wherever nothing is resolved.
BYTES_CASES = {
    "crlf": (b"a = 0\r\nb = 0\r\n", b"a = 1\r\nb = 0\r\n", b"a = 2\r\nb = 0\r\n"),
    "mixed": (b"a = 0\r\nb = 0\nc\r\n", b"a = 1\r\nb = 0\nc\r\n", b"a = 2\r\nb = 0\nc\r\n"),
    "bom": (b"\xef\xbb\xbfa = 0\nb\n", b"\xef\xbb\xbfa = 1\nb\n", b"\xef\xbb\xbfa = 2\nb\n"),
    "no-final-newline": (b"x\na = 0", b"x\na = 1", b"x\na = 2"),
    "marker-like": (
        b"<<<<<<< not a conflict\n=======\na = 0\n>>>>>>> x\n",
        b"<<<<<<< not a conflict\n=======\na = 1\n>>>>>>> x\n",
        b"<<<<<<< not a conflict\n=======\na = 2\n>>>>>>> x\n",
    ),
}


@pytest.mark.parametrize("case", sorted(BYTES_CASES))
@pytest.mark.parametrize("style", ["merge", "diff3"])
def test_bytes_preserved_like_git(git_repo: GitRepo, case: str, style: str) -> None:
    git_repo.use_driver()
    git_repo.git("config", "merge.conflictStyle", style)
    git_repo.git("config", "core.autocrlf", "false")
    base, ours, theirs = BYTES_CASES[case]
    git_repo.conflict_branches({"f.txt": (base, ours, theirs)})
    assert git_repo.merge().returncode == 1
    assert git_repo.read("f.txt") == _expect_git(git_repo, "f.txt", base, ours, theirs, style=style)


@pytest.mark.parametrize(
    ("fault", "options", "why"),
    [
        ("crash", "", "internal error (RuntimeError"),
        ("slow", "--timeout 0.5", "timed out after 0.5 s"),
    ],
)
def test_crash_and_timeout_fall_back_to_git(
    git_repo: GitRepo, monkeypatch: pytest.MonkeyPatch, fault: str, options: str, why: str
) -> None:
    monkeypatch.setenv("SPLICE_DRIVER_FAULT", fault)
    git_repo.use_driver(options)
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert git_repo.read("f.py") == _expect_git(git_repo, "f.py", BASE, OURS, THEIRS)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("splice:")]
    assert len(lines) == 1 and why in lines[0], proc.stderr


def test_binary_input_leaves_ours_untouched(git_repo: GitRepo) -> None:
    git_repo.use_driver()
    base, ours, theirs = b"a\0base\n", b"a\0ours\n", b"a\0theirs\n"
    git_repo.conflict_branches({"blob.bin": (base, ours, theirs)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert git_repo.read("blob.bin") == ours
    assert "splice: blob.bin: binary file, kept ours" in proc.stderr


def test_not_utf8_falls_back_to_git(git_repo: GitRepo) -> None:
    git_repo.use_driver()
    base, ours, theirs = b"caf\xe9 = 0\n", b"caf\xe9 = 1\n", b"caf\xe9 = 2\n"
    git_repo.conflict_branches({"f.py": (base, ours, theirs)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert git_repo.read("f.py") == _expect_git(git_repo, "f.py", base, ours, theirs)
    assert "not UTF-8 text, left to git" in proc.stderr


def test_over_size_limit_falls_back_to_git(git_repo: GitRepo) -> None:
    git_repo.use_driver("--resolver theirs --allow-discard --max-size 10")
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert git_repo.read("f.py") == _expect_git(git_repo, "f.py", BASE, OURS, THEIRS)
    assert "over 10 bytes, left to git" in proc.stderr


def test_git_merge_file_failure_leaves_ours(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import splice.cli.driver as driver

    for name, text in (("o", BASE), ("a", OURS), ("b", THEIRS)):
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(driver, "git_merge_file", lambda req, style: None)
    req = MergeRequest(str(tmp_path / "o"), str(tmp_path / "a"), str(tmp_path / "b"), "f.py")
    code = driver.run(req, str(tmp_path / "a"))
    assert code == 1
    assert (tmp_path / "a").read_text() == OURS


def test_unreadable_ours_is_a_merge_failure(tmp_path) -> None:
    (tmp_path / "o").write_text(BASE)
    (tmp_path / "b").write_text(THEIRS)
    req = MergeRequest(str(tmp_path / "o"), str(tmp_path / "missing"), str(tmp_path / "b"))
    result = merge(req)
    assert result.data is None and result.exit_code > 128


def test_literal_label_placeholders_are_ignored(tmp_path) -> None:
    from splice.cli.driver import effective_labels

    req = MergeRequest("o", "a", "b", labels=("%X", "%S", "%Y"))
    assert effective_labels(req) == ("ours", "base", "theirs")
    req = MergeRequest("o", "a", "b", labels=("HEAD", "merged common ancestors", "topic"))
    assert effective_labels(req) == ("HEAD", "merged common ancestors", "topic")


def test_console_entry_keeps_clicks_help_and_usage_errors(tmp_path) -> None:
    """``splice driver`` ends with os._exit after click has run: help still prints (exit 0), a
    usage error still exits 2 with click's message, and a real merge writes its result."""
    import subprocess
    import sys

    def run(*args: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "splice", "driver", *args]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=120)

    helped = run("--help")
    assert helped.returncode == 0 and "%O %A %B" in helped.stdout
    bad = run("--no-such-option")
    assert bad.returncode == 2 and "No such option" in bad.stderr
    for name, text in (("b", BASE), ("o", OURS), ("t", THEIRS)):
        (tmp_path / name).write_text(text)
    merged = run("b", "o", "t", "7", "f.py", "--resolver", "theirs", "--allow-discard")
    assert merged.returncode == 0, merged.stderr
    assert (tmp_path / "o").read_text() == THEIRS


def _marker_regions(data: bytes, size: int = 7) -> int:
    return len(re.findall(rb"(?m)^" + b"<" * size + rb"(?: |$)", data))


def test_summary_counts_the_marker_regions_git_wrote(git_repo: GitRepo) -> None:
    """git merge-file joins two conflicts separated by a line without letters or digits into
    one marker region, Splice's diff3 sees two: the line says what the file holds (it said
    "0 of 2 conflicts resolved" for one region)."""
    git_repo.use_driver("--resolver token-merge")
    base, ours, theirs = (
        "a = 0\n}\nb = 0\nkeep\n",
        "a = 1\n}\nb = 1\nkeep\n",
        "a = 2\n}\nb = 2\nkeep\n",
    )
    git_repo.conflict_branches({"f.py": (base, ours, theirs)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    assert _marker_regions(git_repo.read("f.py")) == 1
    assert "splice: f.py: 0 of 1 conflict resolved\n" in proc.stderr, proc.stderr


def test_summary_of_a_partial_resolution(git_repo: GitRepo) -> None:
    git_repo.use_driver("--resolver token-merge")
    gap = "".join(f"line{i} = {i}\n" for i in range(6))
    base = f"def f():\n    return call(alpha, beta)  \n{gap}a = 0\n"
    ours = f"def f():\n    return call(alpha, beta)\n{gap}a = 1\n"
    theirs = f"def f():\n    return call(alpha2, beta)  \n{gap}a = 2\n"
    git_repo.conflict_branches({"f.py": (base, ours, theirs)})
    proc = git_repo.merge()
    assert proc.returncode == 1
    data = git_repo.read("f.py")
    assert data.startswith(b"def f():\n    return call(alpha2, beta)\n")
    assert _marker_regions(data) == 1
    assert "splice: f.py: 1 of 2 conflicts resolved, both sides kept, 1 left\n" in proc.stderr


def test_resolver_is_built_once_per_process(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    import splice.cli.driver as driver

    monkeypatch.setattr(driver, "_RESOLVERS", {})
    for name, text in (("o", BASE), ("a", OURS), ("b", THEIRS)):
        (tmp_path / name).write_text(text)
    req = MergeRequest(*(str(tmp_path / n) for n in "oab"), "f.py", resolver="token-merge")
    assert merge(req).exit_code == 1
    first = driver.resolver_for("token-merge")
    assert merge(req).exit_code == 1
    assert driver.resolver_for("token-merge") is first
    assert len(driver._RESOLVERS) == 1
    monkeypatch.setenv(driver.MODEL_DIR_ENV, str(tmp_path))  # other options: another resolver
    assert driver.resolver_for("token-merge") is not first


RSS_SCRIPT = """
import sys
from pathlib import Path
from splice.cli.driver import MergeRequest, merge

def rss():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024

base = "def f(x):\\n    return call(alpha, 1, 2, 3, beta)\\n"
texts = {"o": base, "a": base.replace("alpha", "alpha2"), "b": base.replace("beta", "beta2")}
for name, text in texts.items():
    Path(name).write_text(text)
req = MergeRequest("o", "a", "b", "f.py", resolver="auto")
merge(req)
merge(req)
start = rss()
for _ in range(20):
    merge(req)
print(rss() - start)
"""


def test_repeated_merges_do_not_grow_memory(tmp_path) -> None:
    """Each merge rebuilt the resolver (an ONNX session with the shipped model): about 2-4 MB
    more per call. A loose regression bound over 20 calls."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout.split()[-1]) < 20 * 2**20
