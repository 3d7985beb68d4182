"""Writing a shard resumably: ``OWNER__NAME.jsonl.xz`` as the merges data set stores it.

While mining, records go to ``SHARD.partial`` (plain JSON lines) and each finished merge (with
its skip counts) to ``SHARD.progress``; a run that was stopped resumes from there, dropping the
records of a merge it had not finished. :meth:`ShardWriter.finish` writes the LZMA shard (records
sorted by date, then id) through a temporary file, then removes both.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

Record = dict[str, Any]


def content_key(record: Record) -> str:
    """Identity for de-duplication: the four texts."""
    texts = [record["base"], record["ours"], record["theirs"], record["merged"]]
    return hashlib.sha256(json.dumps(texts).encode("utf-8")).hexdigest()


def shard_name(repo_name: str) -> str:
    """``OWNER/NAME`` -> ``OWNER__NAME.jsonl.xz``."""
    return repo_name.replace("/", "__", 1) + ".jsonl.xz"


class ShardWriter:
    """Appends records merge by merge; knows what an earlier, stopped run already did."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.partial = out.with_name(out.name + ".partial")
        self.progress = out.with_name(out.name + ".progress")
        self.done: set[str] = set()
        self.seen: set[str] = set()
        self.count = 0
        self.skips: Counter[str] = Counter()

    def resume(self) -> int:
        """Load what a stopped run left; the number of merges already done."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.progress.exists():
            for line in self.progress.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue  # a line cut short by the stop
                self.done.add(entry["merge"])
                self.skips.update(entry.get("skips", {}))
        kept: list[str] = []
        if self.partial.exists():
            with open(self.partial, encoding="utf-8") as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    if record.get("merge") in self.done:
                        kept.append(json.dumps(record, ensure_ascii=False) + "\n")
                        self.seen.add(content_key(record))
        with open(self.partial, "w", encoding="utf-8") as fh:
            fh.writelines(kept)
        self.count = len(kept)
        if not self.progress.exists():
            self.progress.write_text("", encoding="utf-8")
        return len(self.done)

    def add(
        self, merge: str, records: Iterable[Record], skips: Counter[str], limit: int | None = None
    ) -> int:
        """Append a finished merge's records (duplicates dropped, at most ``limit`` in the shard);
        how many were new."""
        new: list[str] = []
        for record in records:
            key = content_key(record)
            if key in self.seen:
                skips["duplicate"] += 1
                continue
            if limit is not None and self.count + len(new) >= limit:
                skips["over_max_files"] += 1
                continue
            self.seen.add(key)
            new.append(json.dumps(record, ensure_ascii=False) + "\n")
        with open(self.partial, "a", encoding="utf-8") as fh:
            fh.writelines(new)
            fh.flush()
            os.fsync(fh.fileno())
        with open(self.progress, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"merge": merge, "skips": dict(skips)}) + "\n")
        self.done.add(merge)
        self.skips.update(skips)
        self.count += len(new)
        return len(new)

    def finish(self) -> list[Record]:
        """Write the shard; returns its records."""
        records = list(read_jsonl(self.partial))
        records.sort(key=lambda r: (r["date"], r["id"]))
        write_shard(self.out, records)
        self.partial.unlink(missing_ok=True)
        self.progress.unlink(missing_ok=True)
        return records


def read_jsonl(path: Path) -> Iterable[Record]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def write_shard(path: Path, records: Iterable[Record]) -> None:
    """Write records as an LZMA-compressed JSON-lines shard, atomically."""
    tmp = path.with_name(path.name + ".tmp")
    with lzma.open(tmp, "wt", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def dedup_across(paths: list[Path]) -> int:
    """Drop records that repeat (same four texts) one in an earlier shard; how many dropped."""
    from splice.data.dataset import read_shard

    seen: set[str] = set()
    dropped = 0
    for path in sorted(paths):
        records = list(read_shard(path))
        kept = []
        for record in records:
            key = content_key(record)
            if key not in seen:
                seen.add(key)
                kept.append(record)
        if len(kept) != len(records):
            dropped += len(records) - len(kept)
            write_shard(path, kept)
    return dropped


def update_provenance(folder: Path, entry: Record) -> None:
    """Add or replace ``entry`` (by its ``repo``) in ``folder/provenance.json``."""
    path = folder / "provenance.json"
    entries: list[Record] = []
    if path.exists():
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            entries = []
    entries = [e for e in entries if e.get("repo") != entry["repo"]] + [entry]
    entries.sort(key=lambda e: e["repo"])
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(entries, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
