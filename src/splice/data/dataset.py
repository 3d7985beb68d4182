"""Reading the merge-conflict shards (``OWNER__NAME.jsonl.xz``) and splitting them by repository."""

from __future__ import annotations

import hashlib
import json
import lzma
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

Record = dict[str, Any]

#: Share of repositories held out for validation (by a hash of the repository name).
VALIDATION_SHARE = 0.2


def shard_paths(data_dir: str | Path) -> list[Path]:
    """All shards in ``data_dir`` (sorted), with a clear error when there are none."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"data directory not found: {root}")
    paths = sorted(root.glob("*.jsonl.xz"))
    if not paths:
        raise FileNotFoundError(f"no *.jsonl.xz shards in {root}")
    return paths


def repo_of_shard(path: Path) -> str:
    """``OWNER__NAME.jsonl.xz`` -> ``OWNER/NAME``."""
    return path.name.removesuffix(".jsonl.xz").replace("__", "/", 1)


def split_of(repo: str) -> str:
    """ "train" or "val" for a repository, fixed by a hash of its name (never by hunk or file)."""
    digest = hashlib.sha256(repo.encode()).digest()
    return "val" if int.from_bytes(digest[:4], "big") / 2**32 < VALIDATION_SHARE else "train"


def read_shard(path: Path) -> Iterator[Record]:
    with lzma.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def iter_records(
    data_dir: str | Path,
    *,
    split: str | None = None,
    langs: Iterable[str] | None = None,
    repos: Iterable[str] | None = None,
    limit: int | None = None,
    per_repo_limit: int | None = None,
) -> Iterator[Record]:
    """Records of the shards, filtered by split ("train"/"val"), language and repository.

    With ``limit`` the records are taken round-robin over repositories so a small limit still
    covers many projects.
    """
    wanted_langs = set(langs) if langs else None
    wanted_repos = set(repos) if repos else None
    iters: list[Iterator[Record]] = []
    for path in shard_paths(data_dir):
        repo = repo_of_shard(path)
        if wanted_repos is not None and repo not in wanted_repos:
            continue
        if split is not None and split_of(repo) != split:
            continue
        iters.append(_limited(_filtered(read_shard(path), wanted_langs), per_repo_limit))
    yielded = 0
    while iters:
        for it in list(iters):
            rec = next(it, None)
            if rec is None:
                iters.remove(it)
                continue
            yield rec
            yielded += 1
            if limit is not None and yielded >= limit:
                return


def _filtered(records: Iterator[Record], langs: set[str] | None) -> Iterator[Record]:
    for rec in records:
        if langs is None or rec.get("lang") in langs:
            yield rec


def _limited(records: Iterator[Record], n: int | None) -> Iterator[Record]:
    for i, rec in enumerate(records):
        if n is not None and i >= n:
            return
        yield rec
