"""``splice mine``: a thin command over :mod:`splice.data.mining.repository`."""

from __future__ import annotations

import sys

import click

from splice.data.mining.repository import DEFAULT_MAX, MineError, MineOptions, mine_all


@click.command("mine")
@click.argument("repos", nargs=-1, required=True, metavar="REPO...")
@click.option("--out", help="The shard (*.jsonl.xz), or a folder for OWNER__NAME.jsonl.xz.")
@click.option("--since", metavar="DATE", help="Only merges committed since DATE (git's --since).")
@click.option("--max", "max_files", type=click.IntRange(1), default=DEFAULT_MAX, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=1, show_default=True)
@click.option("--ray", "ray_address", metavar="ADDRESS", help="Ray cluster address, or 'local'.")
@click.option("--name", help="OWNER/NAME of a single repository [default: from origin].")
@click.option("--license", "license_id", help="SPDX licence [default: from the LICENSE file].")
@click.option("--clone-dir", type=click.Path(file_okay=False), help="Where URLs are cloned.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def mine_command(
    repos: tuple[str, ...],
    out: str | None,
    since: str | None,
    max_files: int,
    workers: int,
    ray_address: str | None,
    name: str | None,
    license_id: str | None,
    clone_dir: str | None,
    no_progress: bool,
) -> None:
    """Mine REPO's conflicting merges (with the human result) into a data set shard."""
    if name and len(repos) > 1:
        raise click.BadParameter("only with a single REPO", param_hint="--name")
    opts = MineOptions(
        since=since,
        max_files=max_files,
        workers=workers,
        name=name,
        license_id=license_id,
        clone_dir=clone_dir,
        progress=not no_progress and sys.stderr.isatty(),
    )
    try:
        summaries = mine_all(list(repos), out, opts, ray_address)
    except MineError as exc:
        click.echo(f"splice mine: error: {exc}", err=True)
        sys.exit(2)
    for s in summaries:
        if s.up_to_date:
            click.echo(f"splice mine: {s.repo}: {s.shard} is complete ({s.records} files)")
            continue
        again = f", resumed after {s.resumed} merges" if s.resumed else ""
        click.echo(
            f"splice mine: {s.repo}: {s.records} files from {s.visited} of {s.merges} merges "
            f"in {s.seconds:g} s{again} -> {s.shard}"
        )
