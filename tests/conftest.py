"""Shared fixtures: real git repositories in tmp_path, isolated from the user's git setup."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

#: Where the ``splice`` console script of this environment lives.
BIN_DIR = str(Path(sys.executable).parent)


class GitRepo:
    """A git repository in a temporary folder, with helpers to build merge scenarios."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def git(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["git", *args], cwd=self.path, capture_output=True, text=True, check=False, **kw
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"git {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc

    def write(self, name: str, content: bytes | str) -> Path:
        target = self.path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8") if isinstance(content, str) else content
        target.write_bytes(data)
        return target

    def read(self, name: str) -> bytes:
        return (self.path / name).read_bytes()

    def commit(self, message: str, *files: str) -> None:
        self.git("add", "--", *(files or ["."]))
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def conflict_branches(
        self, files: dict[str, tuple[bytes | str, bytes | str, bytes | str]]
    ) -> None:
        """Commit base versions on main, theirs on branch ``theirs``, ours on main."""
        for name, (base, _, _) in files.items():
            self.write(name, base)
        self.commit("base")
        self.git("checkout", "-q", "-b", "theirs")
        for name, (_, _, theirs) in files.items():
            self.write(name, theirs)
        self.commit("theirs")
        self.git("checkout", "-q", "main")
        for name, (_, ours, _) in files.items():
            self.write(name, ours)
        self.commit("ours")

    def merge(self, branch: str = "theirs", *extra: str) -> subprocess.CompletedProcess[str]:
        return self.git("merge", "--no-edit", *extra, branch, check=False)

    def use_driver(self, options: str = "", pattern: str = "*") -> None:
        """Install the splice driver by hand (no ``splice install``) for ``pattern``."""
        self.git("config", "merge.splice.name", "splice (tests)")
        self.git("config", "merge.splice.driver", f"splice driver %O %A %B %L %P {options}".strip())
        info = self.path / ".git" / "info"
        info.mkdir(exist_ok=True)
        (info / "attributes").write_text(f"{pattern} merge=splice\n")


@pytest.fixture
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An environment where git sees only the test's configuration; returns the fake HOME."""
    home = tmp_path / "home"
    home.mkdir()
    for var in list(os.environ):
        if var.startswith("GIT_") or var == "XDG_CONFIG_HOME":
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
    monkeypatch.setenv("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
    monkeypatch.setenv("PATH", BIN_DIR + os.pathsep + os.environ.get("PATH", ""))
    return home


@pytest.fixture
def git_repo(tmp_path: Path, git_env: Path) -> GitRepo:
    """A fresh repository on branch ``main`` with user.name/email set."""
    path = tmp_path / "repo"
    path.mkdir()
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "Splice Tests")
    repo.git("config", "user.email", "tests@splice.invalid")
    repo.git("config", "commit.gpgsign", "false")
    return repo


def git_merge_file(
    base: bytes,
    ours: bytes,
    theirs: bytes,
    tmp: Path,
    *,
    style: str = "merge",
    marker_size: int = 7,
    labels: tuple[str, str, str] = ("ours", "base", "theirs"),
) -> tuple[int, bytes]:
    """What ``git merge-file -p`` writes for these three versions (and its exit status)."""
    tmp.mkdir(parents=True, exist_ok=True)
    names = []
    for name, data in (("o", base), ("a", ours), ("b", theirs)):
        (tmp / name).write_bytes(data)
        names.append(str(tmp / name))
    proc = subprocess.run(
        ["git", "-c", f"merge.conflictStyle={style}", "merge-file", "-p"]
        + [f"--marker-size={marker_size}"]
        + ["-L", labels[0], "-L", labels[1], "-L", labels[2], names[1], names[0], names[2]],
        capture_output=True,
        check=False,
    )
    return proc.returncode, proc.stdout


def save_byte_tokenizer(folder: Path) -> None:
    """Save a byte-level tokenizer (the 256 byte symbols, no merges, ``<eos>`` = 256) in
    ``folder``: a real fast tokenizer for tiny test models with a vocabulary of 257."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {ch: i for i, ch in enumerate(pre_tokenizers.ByteLevel.alphabet())}
    vocab["<eos>"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>")
    fast.save_pretrained(folder)


@pytest.fixture(scope="session")
def byte_tokenizer():
    """:func:`save_byte_tokenizer`, for tests that build tiny models on disk."""
    return save_byte_tokenizer
