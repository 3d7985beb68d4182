"""``splice merge-weights`` and ``splice merge-adapters``: the model-merging engine's commands.

Both import torch (through :mod:`splice.models.merging`) only when they run.
"""

from __future__ import annotations

import sys

import click

_DEVICES = click.Choice(["cpu", "cuda"], case_sensitive=False)


@click.command("merge-weights")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of dare/della.")
@click.option("--shard-size", default="2GB", show_default=True, help="Largest output shard.")
@click.option("--device", type=_DEVICES, default="cpu", show_default=True)
@click.option(
    "--sort-ties", is_flag=True, help="Break magnitude ties with a full sort, as mergekit."
)
@click.option("--progress/--no-progress", default=None, help="[default: when stderr is a tty]")
def merge_weights_command(
    config: str,
    out_dir: str,
    seed: int,
    shard_size: str,
    device: str,
    sort_ties: bool,
    progress: bool | None,
) -> None:
    """Merge model weights as CONFIG (a mergekit YAML file) says; write the model to OUT_DIR."""
    from splice.models.merging import merge
    from splice.models.merging.sparsify import full_sort_ties

    show = sys.stderr.isatty() if progress is None else progress
    try:
        with full_sort_ties(sort_ties):
            report = merge(
                config, out_dir, seed=seed, shard_size=shard_size, device=device, progress=show
            )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    for note in report.warnings:
        click.echo(f"warning: {note}", err=True)
    click.echo(
        f"{report.method}: wrote {report.tensors} tensors in {len(report.shards)} shard(s) to "
        f"{report.out_dir} in {report.seconds:.1f}s"
    )


@click.command("merge-adapters")
@click.argument("config", type=click.Path(dir_okay=False, exists=True))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--rank", type=int, help="Rank of the re-factored LoRA [config rank, or sum].")
@click.option(
    "--output",
    type=click.Choice(["lora", "full"]),
    help="lora: a PEFT adapter of --rank; full: base weights with the merged delta folded in.",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of dare/della.")
@click.option("--shard-size", default="2GB", show_default=True, help="Largest output shard.")
@click.option("--device", type=_DEVICES, default="cpu", show_default=True)
def merge_adapters_command(
    config: str,
    out_dir: str,
    rank: int | None,
    output: str | None,
    seed: int,
    shard_size: str,
    device: str,
) -> None:
    """Merge the LoRA adapters of CONFIG in the space of their weight deltas into OUT_DIR."""
    from splice.models.merging import merge_adapters

    try:
        report = merge_adapters(
            config,
            out_dir,
            seed=seed,
            rank=rank,
            output=output,
            shard_size=shard_size,
            device=device,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    line = (
        f"{report.method} ({report.mode}): merged {report.modules} modules into "
        f"{report.out_dir} as {report.output}"
    )
    if report.output == "lora":
        line += (
            f" of rank {report.rank}; relative reconstruction error max "
            f"{report.max_error:.3g}, mean {report.mean_error:.3g}"
        )
    click.echo(f"{line} ({report.seconds:.1f}s)")
