"""``splice eval``: the command-line face of :mod:`splice.data.evaluation`."""

from __future__ import annotations

import os
import time

import click

DEFAULT_DATA = "../shared/data/merges"


@click.command("eval")
@click.option(
    "--data",
    "data_dir",
    default=DEFAULT_DATA,
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder of OWNER__NAME.jsonl.xz shards.",
)
@click.option(
    "--resolver",
    "resolvers",
    multiple=True,
    help="Resolver to evaluate (repeatable) [default: ours, theirs, token-merge-naive, "
    "token-merge].",
)
@click.option("--lang", "langs", multiple=True, help="Only these languages (repeatable).")
@click.option(
    "--split",
    type=click.Choice(["train", "val", "all"]),
    default="all",
    show_default=True,
    help="Repositories of one split (fixed by a hash of the repository name).",
)
@click.option("--limit", type=int, help="At most this many files (round-robin over repos).")
@click.option("--per-repo", type=int, help="At most this many files per repository.")
@click.option("--workers", type=int, default=os.cpu_count() or 1, show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report.")
@click.option(
    "--rows",
    "rows_path",
    type=click.Path(dir_okay=False),
    help="Also save every hunk's candidates (text, confidence, kind, syntax check, correctness) "
    "to this .jsonl.gz, e.g. runs/eval/val-auto.jsonl.gz, for scripts/fit_decision.py.",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--allow-discard",
    is_flag=True,
    help="Judge answers that drop a side's edits like the rest (as the driver's --allow-discard).",
)
def eval_command(
    data_dir: str,
    resolvers: tuple[str, ...],
    langs: tuple[str, ...],
    split: str,
    limit: int | None,
    per_repo: int | None,
    workers: int,
    json_path: str | None,
    no_progress: bool,
    rows_path: str | None = None,
    allow_discard: bool = False,
) -> None:
    """Measure resolvers on real conflicts with known human resolutions."""
    from splice.data.dataset import iter_records, shard_paths
    from splice.data.evaluation import evaluate, format_table, write_json
    from splice.models.serving.neural import ModelUnavailable
    from splice.resolver.resolvers import get_resolver

    names = list(resolvers) or ["ours", "theirs", "token-merge-naive", "token-merge"]
    for name in names:
        try:
            get_resolver(name)
        except KeyError as exc:
            raise click.BadParameter(str(exc.args[0]), param_hint="--resolver") from None
        except ModelUnavailable as exc:  # measuring a model must not fall back silently
            raise click.ClickException(f"model unavailable: {exc}") from None
    try:
        shard_paths(data_dir)
    except FileNotFoundError as exc:
        raise click.ClickException(str(exc)) from None
    records = iter_records(
        data_dir,
        split=None if split == "all" else split,
        langs=langs or None,
        limit=limit,
        per_repo_limit=per_repo,
    )
    start = time.perf_counter()
    report = evaluate(
        records,
        names,
        dataset=f"{data_dir} (split={split})",
        workers=max(1, workers),
        progress=not no_progress,
        total=limit,
        rows_path=rows_path,
        allow_discard=allow_discard,
    )
    report["seconds"] = round(time.perf_counter() - start, 1)
    click.echo(format_table(report))
    click.echo(f"\n{report['n_files']} files in {report['seconds']} s")
    if json_path:
        write_json(report, json_path)
        click.echo(f"report written to {json_path}")
    if rows_path:
        click.echo(f"hunk rows written to {rows_path}")
