"""``splice train-lm`` and ``splice train-lm-adapters``: the code language model and its LoRA
adapters (docs/LM.md)."""

from __future__ import annotations

import os
from typing import NoReturn

import click

DEFAULT_DATA = "../shared/data/merges"
DEFAULT_TOKENIZER = "models/shipped/tokenizer.json"

#: The recipes' settings (docs/LM.md); options given on the command line win.
RECIPES: dict[str, dict[str, object]] = {
    # 2 shared CPU cores, about 2 hours: 445 tokens/s overall in the short run, one thread
    # (faster than two on a busy machine), evaluations included (docs/LM.md).
    "cpu": {
        "device": "cpu",
        "batch_size": 8,
        "seq_len": 512,
        "tokens": 3_000_000,
        "minutes": 115.0,
        "lr": 2e-3,
        "warmup": 50,
        "eval_every": 100,
        "threads": 1,
        "bf16": False,
    },
    # One GPU (e.g. a lent H200, ~12 minutes of it): same code, bigger batch, bf16 autocast.
    # Not run yet; the one-process corpus builder (~0.1-0.25M tokens/s) likely caps it.
    "gpu": {
        "device": "cuda",
        "batch_size": 64,
        "seq_len": 512,
        "tokens": 100_000_000,
        "minutes": 12.0,
        "lr": 3e-3,
        "warmup": 200,
        "eval_every": 500,
        "threads": 8,
        "bf16": True,
    },
}


def _fail(message: str) -> NoReturn:
    click.echo(f"splice: {message}", err=True)
    raise SystemExit(2)


@click.command("train-lm")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--recipe", type=click.Choice(sorted(RECIPES)), default="cpu", show_default=True)
@click.option("--data", default=DEFAULT_DATA, show_default=True, help="Folder of merge shards.")
@click.option("--tokenizer", default=DEFAULT_TOKENIZER, show_default=True)
@click.option("--tokens", type=int, help="Token budget over all processes.")
@click.option("--steps", type=int, help="Optimizer steps (instead of --tokens).")
@click.option("--minutes", type=float, help="Stop cleanly when this much time is spent (0: none).")
@click.option("--batch-size", type=int, help="Sequences per step, per process.")
@click.option("--seq-len", type=int)
@click.option("--lr", type=float)
@click.option("--warmup", type=int)
@click.option("--weight-decay", type=float)
@click.option("--eval-every", type=int)
@click.option("--val-sequences", type=int)
@click.option("--checkpoint-minutes", type=float)
@click.option("--resolution-share", type=float, help="Share of resolution-task sequences.")
@click.option("--fim-rate", type=float)
@click.option("--langs", help="Only these languages, comma-separated (e.g. a fine-tune).")
@click.option("--seed", type=int)
@click.option("--threads", type=int)
@click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]))
@click.option("--bf16/--fp32", default=None, help="bfloat16 autocast (the recipe decides).")
@click.option("--hidden", type=int)
@click.option("--layers", type=int)
@click.option("--heads", type=int)
@click.option("--kv-heads", type=int)
@click.option("--intermediate", type=int, help="MLP width (per expert in a MoE).")
@click.option("--experts", type=int, help="Experts per layer: a Mixtral-style MoE (0: dense).")
@click.option("--experts-per-token", type=int, help="Experts each token is routed to.")
@click.option("--init", "init_from", type=click.Path(file_okay=False), help="Start from a model.")
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.")
@click.option("--save-dtype", type=click.Choice(["float32", "bfloat16"]))
def train_lm_command(out_dir: str, recipe: str, **given: object) -> None:
    """Train the code language model (fill-in-the-middle code + the resolution task) into OUT.

    Under torchrun every process trains on its own share of the records (data-parallel);
    rank 0 writes. One line per evaluation.
    """
    from splice.models.training.lm import LMConfig, LMTrainOptions

    settings = {**RECIPES[recipe], **{k: v for k, v in given.items() if v is not None}}
    minutes = settings.pop("minutes", None)
    steps = settings.pop("steps", None)
    if steps:
        settings["tokens"] = 0
    arch_keys = ("hidden", "layers", "heads", "kv_heads", "intermediate", "experts")
    arch = {k: settings.pop(k) for k in (*arch_keys, "experts_per_token") if k in settings}
    data, tokenizer = settings.pop("data"), settings.pop("tokenizer")
    if "langs" in settings:
        settings["langs"] = tuple(x.strip() for x in str(settings["langs"]).split(",") if x.strip())
    try:
        options = LMTrainOptions(
            out_dir=out_dir,
            data_dir=str(data),
            tokenizer=str(tokenizer),
            model=LMConfig(**arch),  # type: ignore[arg-type]
            steps=int(steps or 0),
            max_minutes=float(minutes) if minutes else None,  # type: ignore[arg-type]
            **settings,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    from splice.models.training.lm import train_lm

    try:
        report = train_lm(options, echo=click.echo)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc))
    if int(os.environ.get("RANK", "0")) == 0:
        val = report.final_val or {}
        stop = " (time budget)" if report.stopped_by_time else ""
        click.echo(
            f"{report.steps} steps{stop}, {report.tokens:,} tokens in "
            f"{report.seconds / 60:.1f} min "
            f"({report.tokens_per_second:.0f} tokens/s, {report.world} process(es)); "
            f"val loss {val.get('val_loss', float('nan')):.4f}; model in {report.out_dir}"
        )


@click.command("train-lm-adapters")
@click.argument("base", type=click.Path(file_okay=False))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--langs", default="python,java,typescript,javascript,csharp,go", show_default=True)
@click.option("--steps", type=int, default=200, show_default=True, help="Steps per language.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--seq-len", type=int, default=512, show_default=True)
@click.option("--lr", type=float, default=1e-3, show_default=True)
@click.option("--rank", type=int, default=8, show_default=True)
@click.option("--alpha", type=int, default=16, show_default=True)
@click.option("--joint/--no-joint", default=True, show_default=True, help="Also all languages.")
@click.option("--val-sequences", type=int, default=64, show_default=True)
@click.option("--data", default=DEFAULT_DATA, show_default=True)
@click.option("--tokenizer", default=DEFAULT_TOKENIZER, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=int, default=2, show_default=True)
def train_lm_adapters_command(base: str, out_dir: str, langs: str, **given: object) -> None:
    """Train one LoRA adapter per language (and one on all) for the resolution task on the
    causal LM in BASE, into OUT_DIR/<lang>; merge them with ``splice merge-adapters
    OUT_DIR/merge-linear.yaml MERGED``."""
    from splice.models.training.lm_adapters import AdapterOptions, train_adapters

    try:
        options = AdapterOptions(
            base=base,
            out_dir=out_dir,
            langs=tuple(x.strip() for x in langs.split(",") if x.strip()),
            data_dir=str(given.pop("data")),
            **given,  # type: ignore[arg-type]
        )
    except (ValueError, TypeError) as exc:
        _fail(str(exc))
    try:
        train_adapters(options, echo=click.echo)
    except (ValueError, FileNotFoundError, OSError) as exc:
        _fail(str(exc))
    click.echo(
        f"adapters in {out_dir}; merge: splice merge-adapters {out_dir}/merge-linear.yaml OUT"
    )
