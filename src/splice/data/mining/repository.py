"""Mining repositories: conflicting file merges, with what the humans committed (``splice mine``).

Each repository's two-parent merges are replayed (:mod:`splice.data.mining.extract`) in an order
spread
evenly over its history, until ``--max`` files are kept; the records go to a shard in exactly
the format of the merges data set (:mod:`splice.data.mining.shard`), resumable after a stop. With
several repositories, records repeated across them are dropped from the later shards. ``--ray
ADDRESS`` spreads repositories over a Ray cluster (``local``: Ray's local mode); Ray is imported
only then.
"""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from splice.data.mining.extract import MergeRecords

if TYPE_CHECKING:
    import git

#: Files kept per repository unless ``--max`` says otherwise (as in the data set).
DEFAULT_MAX = 3000


class MineError(Exception):
    """A repository that cannot be mined (reported, exit status 2)."""


class Interrupted(Exception):
    """Raised by ``stop_after`` (tests): the run stops as a killed one would."""


@dataclass
class MineOptions:
    since: str | None = None
    max_files: int = DEFAULT_MAX
    workers: int = 1
    name: str | None = None
    license_id: str | None = None
    clone_dir: str | None = None
    progress: bool = True


@dataclass
class MineSummary:
    repo: str
    shard: str
    records: int
    merges: int = 0
    visited: int = 0
    resumed: int = 0
    skips: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    up_to_date: bool = False


def even_order(n: int) -> list[int]:
    """0..n-1 in bit-reversed order: every prefix is spread evenly over the range."""
    if n <= 1:
        return list(range(n))
    bits = (n - 1).bit_length()
    order = (int(format(k, f"0{bits}b")[::-1], 2) for k in range(1 << bits))
    return [i for i in order if i < n]


def _is_url(source: str) -> bool:
    return "://" in source or (source.count(":") == 1 and "@" in source.split(":")[0])


def local_repository(source: str, clone_dir: str | None) -> str:
    """A local path for ``source`` (a path, or a URL cloned bare into ``clone_dir``)."""
    if not _is_url(source):
        if not Path(source).is_dir():
            raise MineError(f"{source}: no such repository")
        return source
    import git

    from splice.data.mining.meta import name_from_url

    name = (name_from_url(source) or "repo").replace("/", "__")
    target = Path(clone_dir or tempfile.gettempdir()) / f"splice-mine-{name}.git"
    if not target.exists():
        try:
            git.Repo.clone_from(source, target, bare=True)
        except git.GitCommandError as exc:
            raise MineError(f"cannot clone {source}: {exc.stderr.strip()}") from exc
    return str(target)


def _results(todo: list[str], path: str, name: str, lic: str, workers: int) -> Iterator:
    """Each merge's :class:`MergeRecords`, in ``todo``'s order (in worker processes if > 1)."""
    from splice.data.mining.extract import Extractor, init_worker, process_in_worker

    if workers <= 1:
        extractor = Extractor(path, name, lic)
        try:
            for sha in todo:
                yield extractor.process(sha)
        finally:
            extractor.close()
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(path, name, lic),
    )
    try:
        yield from pool.map(process_in_worker, todo, chunksize=4)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _shard_path(out: str | None, name: str) -> Path:
    from splice.data.mining.shard import shard_name

    if out is None:
        return Path(shard_name(name))
    target = Path(out)
    if target.name.endswith(".jsonl.xz") and not target.is_dir():
        return target
    return target / shard_name(name)  # a folder


def mine_repository(
    source: str,
    out: str | None = None,
    opts: MineOptions | None = None,
    *,
    stop_after: int | None = None,
) -> MineSummary:
    """Mine one repository into its shard; resumes a stopped run of the same shard."""
    import git

    from splice.data.mining.meta import detect_license, name_from_url, repo_name
    from splice.data.mining.shard import ShardWriter, update_provenance

    opts = opts or MineOptions()
    start = time.monotonic()
    path = local_repository(source, opts.clone_dir)
    try:
        repo = git.Repo(path)
        repo.git.rev_parse("--git-dir")  # GitPython may accept what git itself cannot read
    except (git.InvalidGitRepositoryError, git.NoSuchPathError, git.GitCommandError) as exc:
        raise MineError(f"{source}: not a git repository") from exc
    name = opts.name or (name_from_url(source) if _is_url(source) else None)
    name = name or repo_name(repo, path)
    lic = opts.license_id or detect_license(repo)
    shard = _shard_path(out, name)
    writer = ShardWriter(shard)
    if shard.exists() and not writer.partial.exists():
        from splice.data.dataset import read_shard

        n = sum(1 for _ in read_shard(shard))
        return MineSummary(name, str(shard), n, up_to_date=True)
    resumed = writer.resume()
    merges = list_merges_of(repo, opts.since)
    order = [merges[i] for i in even_order(len(merges))]
    todo = [sha for sha in order if sha not in writer.done]
    if writer.count >= opts.max_files:
        todo = []
    visited = len(order) - len(todo)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn(f"mining {name}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("merges, {task.fields[files]} files"),
        console=Console(stderr=True),
        disable=not opts.progress,
        transient=True,
    )
    with bar:
        task = bar.add_task("mine", total=len(order), completed=visited, files=writer.count)
        for n, result in enumerate(_results(todo, path, name, lic, opts.workers), start=1):
            assert isinstance(result, MergeRecords)
            writer.add(result.merge, result.records, result.skips, limit=opts.max_files)
            visited += 1
            bar.update(task, advance=1, files=writer.count)
            if stop_after is not None and n >= stop_after:
                raise Interrupted(f"stopped after {n} merges")
            if writer.count >= opts.max_files:
                break
    skips = dict(writer.skips)
    records = writer.finish()
    seconds = round(time.monotonic() - start, 1)
    languages = Counter(r["lang"] for r in records)
    update_provenance(
        shard.parent,
        {
            "repo": name,
            "license": lic,
            "head": _head(repo),
            "records": len(records),
            "languages": dict(languages.most_common()),
            "dominant": languages.most_common(1)[0][0] if languages else None,
            "merges_two_parent": len(merges),
            "merges_visited": visited,
            "seconds": seconds,
            "skips": skips,
            "shard_bytes": shard.stat().st_size,
        },
    )
    n_merges = len(merges)
    return MineSummary(name, str(shard), len(records), n_merges, visited, resumed, skips, seconds)


def list_merges_of(repo: git.Repo, since: str | None) -> list[str]:
    """The merges' ids, oldest first."""
    from splice.data.mining.extract import list_merges

    return [sha for sha, _ in list_merges(repo, since)]


def _head(repo: git.Repo) -> str | None:
    try:
        return repo.head.commit.hexsha
    except ValueError:
        return None


def mine_all(
    sources: list[str], out: str | None, opts: MineOptions, ray_address: str | None = None
) -> list[MineSummary]:
    """Mine each repository (on Ray when ``ray_address`` is given); de-duplicate across them."""
    from splice.data.mining.shard import dedup_across

    if len(sources) > 1 and out is not None and not Path(out).is_dir():
        Path(out).mkdir(parents=True, exist_ok=True)
    if ray_address:
        from splice.data.mining.ray_runner import mine_on_ray

        summaries = mine_on_ray(ray_address, sources, out, opts)
    else:
        summaries = [mine_repository(source, out, opts) for source in sources]
    if len(summaries) > 1:
        dropped = dedup_across([Path(s.shard) for s in summaries])
        if dropped:
            print(f"splice mine: {dropped} records repeated across repositories dropped")
    return summaries
