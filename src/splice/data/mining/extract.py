"""Replaying one merge commit: the conflicting files of a two-parent merge and what was committed.

For merge M with parents A (ours) and B (theirs): A and B must have exactly one merge base O,
different from both; ``git merge-tree --write-tree --name-only`` names the conflicted paths; each
is kept when the filters of :mod:`splice.data.mining.filters` pass for O, A, B and M and
``git merge-file -p --diff3`` still reports a conflict (its exit status is ``n_conflicts``). The
result of a merge is its records plus counts of why things were skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import git

from splice.data.mining.filters import is_generated, language, path_skip, text_skip

REGULAR = (0o100644, 0o100755)


@dataclass
class MergeRecords:
    """What one merge gave: records (data set schema) and skip counts."""

    merge: str
    records: list[dict[str, Any]] = field(default_factory=list)
    skips: Counter[str] = field(default_factory=Counter)


def list_merges(repo: git.Repo, since: str | None = None) -> list[tuple[str, int]]:
    """Two-parent merges reachable from branches and tags: (sha, commit time), oldest first."""
    args = ["--branches", "--tags", "--min-parents=2", "--max-parents=2", "--format=%ct"]
    if since:
        args.append(f"--since={since}")
    out = repo.git.rev_list(*args)
    merges: list[tuple[str, int]] = []
    lines = out.splitlines()
    for header, stamp in zip(lines[::2], lines[1::2], strict=False):
        merges.append((header.removeprefix("commit ").strip(), int(stamp)))
    return sorted(merges, key=lambda m: (m[1], m[0]))


class Extractor:
    """Replays merges of one repository (one per process: it holds git's object reader)."""

    def __init__(self, repo_path: str, repo_name: str, license_id: str) -> None:
        self.repo = git.Repo(repo_path)
        self.path = repo_path
        self.name = repo_name
        self.license = license_id
        self.tmp = tempfile.mkdtemp(prefix="splice-mine-")

    def close(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def _git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(["git", "-C", self.path, *args], capture_output=True, check=False)

    def conflicted_paths(self, ours: str, theirs: str) -> list[str] | None:
        """Paths ``merge-tree`` reports as conflicted ([] when clean, None on an error)."""
        proc = self._git("merge-tree", "--write-tree", "--name-only", "-z", ours, theirs)
        if proc.returncode == 0:
            return []
        if proc.returncode != 1:
            return None
        fields = proc.stdout.decode("utf-8", "surrogateescape").split("\0")
        paths: list[str] = []
        for name in fields[1:]:
            if not name:
                break
            if name not in paths:
                paths.append(name)
        return paths

    def merge_file(self, base: bytes, ours: bytes, theirs: bytes) -> int | None:
        """``git merge-file -p --diff3``'s conflict count (None on an error)."""
        names = []
        for label, data in (("ours", ours), ("base", base), ("theirs", theirs)):
            name = os.path.join(self.tmp, label)
            with open(name, "wb") as fh:
                fh.write(data)
            names.append(name)
        proc = subprocess.run(
            ["git", "merge-file", "-p", "--diff3", *names], capture_output=True, check=False
        )
        return proc.returncode if 0 <= proc.returncode <= 127 else None

    def process(self, sha: str) -> MergeRecords:
        """The records of merge ``sha``."""
        out = MergeRecords(sha)
        merge = self.repo.commit(sha)
        ours, theirs = merge.parents
        bases = self.repo.merge_base(ours, theirs, all=True)
        if len(bases) != 1:
            out.skips["merge_no_base" if not bases else "merge_criss_cross"] += 1
            return out
        base = bases[0]
        if base.hexsha in (ours.hexsha, theirs.hexsha):
            out.skips["merge_trivial_ancestor"] += 1
            return out
        paths = self.conflicted_paths(ours.hexsha, theirs.hexsha)
        if paths is None:
            out.skips["merge_tree_error"] += 1
            return out
        if not paths:
            out.skips["merge_clean"] += 1
            return out
        commits = (base, ours, theirs, merge)
        for path in paths:
            skip = path_skip(path) or self._keep(path, commits, out)
            if skip:
                out.skips[skip] += 1
        return out

    def _keep(self, path: str, commits: tuple, out: MergeRecords) -> str | None:
        """Add the record of ``path`` to ``out``; the skip key when it is not kept."""
        blobs = []
        for commit in commits:
            try:
                blob = commit.tree / path
            except KeyError:
                return "path_not_in_all_four_commits"
            if blob.type != "blob" or blob.mode not in REGULAR:
                return "path_other_file_type"
            blobs.append(blob)
        if blobs[0].hexsha in (blobs[1].hexsha, blobs[2].hexsha):
            return "path_not_changed_on_both_sides"
        datas = [blob.data_stream.read() for blob in blobs]
        texts: list[str] = []
        for data in datas:
            text, skip = text_skip(data)
            if skip:
                return skip
            assert text is not None
            if is_generated(text):
                return "path_generated"
            texts.append(text)
        n = self.merge_file(datas[0], datas[1], datas[2])
        if n is None:
            return "merge_file_error"
        if n == 0:
            return "merge_file_clean"
        from splice.resolver.markers import parse

        if parse(texts[3]).has_conflicts():
            return "merged_has_markers"
        base, ours, theirs, merge = commits
        out.records.append(
            {
                "id": f"{self.name}@{merge.hexsha}:{path}",
                "repo": self.name,
                "license": self.license,
                "merge": merge.hexsha,
                "ours_commit": ours.hexsha,
                "theirs_commit": theirs.hexsha,
                "base_commit": base.hexsha,
                "date": merge.committed_datetime.isoformat(),
                "path": path,
                "lang": language(path),
                "base": texts[0],
                "ours": texts[1],
                "theirs": texts[2],
                "merged": texts[3],
                "n_conflicts": n,
            }
        )
        return None


_WORKER: Extractor | None = None


def init_worker(repo_path: str, repo_name: str, license_id: str) -> None:
    """Process-pool initializer: one extractor per worker process."""
    global _WORKER
    _WORKER = Extractor(repo_path, repo_name, license_id)


def process_in_worker(sha: str) -> MergeRecords:
    assert _WORKER is not None, "init_worker was not called"
    return _WORKER.process(sha)
