"""``splice merge-weights``, ``merge-adapters``, ``merge-experts`` and ``merge-layers``: the
model-merging engine's commands.

Both import torch (through :mod:`splice.models.merging`) only when they run. Bad input (a
configuration, a model, an output folder) gets one ``Error:`` line on stderr and exit 1; the
engine's warnings (unused parameters, NaN/Inf tensors) one ``warning:`` line each.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click

_DEVICES = click.Choice(["cpu", "cuda"], case_sensitive=False)
_FORCE_HELP = (
    "Replace the model files of a non-empty OUT_DIR that no Splice merge wrote "
    "(a previous merge's output is always replaced)."
)

T = TypeVar("T")


@contextmanager
def _echo_warnings() -> Iterator[None]:
    """Print each warning raised inside the block as one ``warning:`` line, even on failure."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            yield
        finally:
            for item in caught:
                click.echo(f"warning: {item.message}", err=True)


def _run(work: Callable[[], T]) -> T:
    """``work()``, its failures on bad input turned into one line and exit 1."""
    try:
        with _echo_warnings():
            return work()
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


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
@click.option("--force", is_flag=True, help=_FORCE_HELP)
def merge_weights_command(
    config: str,
    out_dir: str,
    seed: int,
    shard_size: str,
    device: str,
    sort_ties: bool,
    progress: bool | None,
    force: bool,
) -> None:
    """Merge model weights as CONFIG (a mergekit YAML file) says; write the model to OUT_DIR.

    OUT_DIR must not be an input model; it is written whole or not at all.
    """
    from splice.models.merging import MergeReport
    from splice.models.merging.data_aware import merge  # the engine's merge, statistics first
    from splice.models.merging.sparsify import full_sort_ties

    show = sys.stderr.isatty() if progress is None else progress

    def work() -> MergeReport:
        with full_sort_ties(sort_ties):
            return merge(
                config,
                out_dir,
                seed=seed,
                shard_size=shard_size,
                device=device,
                progress=show,
                force=force,
            )

    report = _run(work)
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
@click.option("--force", is_flag=True, help=_FORCE_HELP)
def merge_adapters_command(
    config: str,
    out_dir: str,
    rank: int | None,
    output: str | None,
    seed: int,
    shard_size: str,
    device: str,
    force: bool,
) -> None:
    """Merge the LoRA adapters of CONFIG in the space of their weight deltas into OUT_DIR.

    OUT_DIR must not be an input adapter or the base model; it is written whole or not at all.
    """
    from splice.models.merging import merge_adapters

    report = _run(
        lambda: merge_adapters(
            config,
            out_dir,
            seed=seed,
            rank=rank,
            output=output,
            shard_size=shard_size,
            device=device,
            force=force,
        )
    )
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


def _reduction_options(command: Callable) -> Callable:
    """The options ``merge-experts`` and ``merge-layers`` share."""
    for option in reversed(
        [
            click.argument("config", type=click.Path(dir_okay=False, exists=True)),
            click.argument("out_dir", type=click.Path(file_okay=False)),
            click.option("--shard-size", default="2GB", show_default=True),
            click.option("--device", type=_DEVICES, default="cpu", show_default=True),
            click.option("--force", is_flag=True, help=_FORCE_HELP),
        ]
    ):
        command = option(command)
    return command


@click.command("merge-experts")
@_reduction_options
def merge_experts_command(
    config: str, out_dir: str, shard_size: str, device: str, force: bool
) -> None:
    """Merge a mixture-of-experts model's experts as CONFIG says (method mc_smoe, hc_smoe, prune
    or average; num_experts per layer; calibration text); write the smaller model to OUT_DIR."""
    from splice.models.merging.experts import merge_experts

    report = _run(
        lambda: merge_experts(config, out_dir, force=force, device=device, shard_size=shard_size)
    )
    stored = report.compressed_expert_parameters
    compressed = f"; low-rank + sparse form {stored:,} expert numbers" if stored else ""
    click.echo(
        f"{report.method}: {report.experts_before} -> {report.experts_after} experts per layer, "
        f"{report.parameters_before:,} -> {report.parameters_after:,} parameters{compressed}; "
        f"wrote {report.out_dir} in {report.seconds:.1f}s"
    )


@click.command("merge-layers")
@_reduction_options
def merge_layers_command(
    config: str, out_dir: str, shard_size: str, device: str, force: bool
) -> None:
    """Merge or drop a model's layers as CONFIG says (method mka, shortgpt, laco or average;
    num_layers to keep; calibration text); write the smaller model to OUT_DIR."""
    from splice.models.merging.layers import merge_layers

    report = _run(
        lambda: merge_layers(config, out_dir, force=force, device=device, shard_size=shard_size)
    )
    click.echo(
        f"{report.method}: {report.layers_before} -> {report.layers_after} layers, "
        f"{report.parameters_before:,} -> {report.parameters_after:,} parameters; "
        f"wrote {report.out_dir} in {report.seconds:.1f}s"
    )
