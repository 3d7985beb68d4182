"""``splice train``: build (or load) the example sets and train the merge-pattern classifier."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

DEFAULT_DATA = "../shared/data/merges"
DEFAULT_TOKENIZER = "models/shipped/tokenizer.json"


def _example_sets(
    data: str, out: Path, tokenizer_path: str, max_len: int, limit: int | None, workers: int
) -> tuple[Path, Path]:
    """Paths of the train and val example sets, built into ``out/examples`` on first use."""
    from splice.models.serving.tokenizer import load_tokenizer
    from splice.models.training.examples import build_examples, save_examples

    tokenizer = load_tokenizer(tokenizer_path)
    paths = []
    for split in ("train", "val"):
        suffix = f"-limit{limit}" if limit else ""
        path = out / "examples" / f"{split}-L{max_len}{suffix}.npz"
        if not path.exists():
            click.echo(f"building {split} examples into {path}")
            arrays = build_examples(
                data, split, tokenizer, max_len=max_len, limit=limit, workers=workers
            )
            save_examples(path, arrays)
        paths.append(path)
    return paths[0], paths[1]


@click.command("train")
@click.option("--data", default=DEFAULT_DATA, show_default=True, help="Folder of merge shards.")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--tokenizer", "tokenizer_path", default=DEFAULT_TOKENIZER, show_default=True)
@click.option("--train-npz", type=click.Path(dir_okay=False, exists=True), help="Pre-built set.")
@click.option("--val-npz", type=click.Path(dir_okay=False, exists=True), help="Pre-built set.")
@click.option("--limit", type=int, help="Build from at most this many records per split.")
@click.option("--workers", type=int, default=2, show_default=True, help="Example builders.")
@click.option("--epochs", type=int, default=3, show_default=True)
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--lr", type=float, default=5e-4, show_default=True)
@click.option("--hidden", type=int, default=128, show_default=True)
@click.option("--layers", type=int, default=2, show_default=True)
@click.option("--heads", type=int, default=4, show_default=True)
@click.option("--max-len", type=int, default=192, show_default=True)
@click.option(
    "--minutes",
    type=float,
    default=100.0,
    show_default=True,
    help="Time budget; stops cleanly when spent (0: none).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--resume", is_flag=True, help="Continue from OUT/checkpoint.")
@click.option("--body", help="Local Hugging Face encoder to use as the encoder body.")
@click.option("--checkpoint-every", type=int, default=400, show_default=True)
@click.option("--max-val", type=int, default=2000, show_default=True, help="Validation subset.")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option(
    "--class-weights/--no-class-weights",
    default=False,
    show_default=True,
    help="Weight the loss by inverse class frequency.",
)
@click.option(
    "--bf16/--fp32",
    default=True,
    show_default=True,
    help="bfloat16 autocast for training steps (faster on CPU).",
)
@click.option(
    "--device",
    type=click.Choice(["cpu", "cuda", "auto"]),
    default="cpu",
    show_default=True,
    help="Where to train (auto: CUDA when available). Nothing needs a GPU.",
)
@click.option(
    "--init",
    "init_from",
    type=click.Path(file_okay=False, exists=True),
    help="Start from a saved model, e.g. the masked-LM pretrained body "
    "(splice.models.training.pretrain).",
)
@click.option(
    "--mirror",
    "mirror_rate",
    type=float,
    default=0.5,
    show_default=True,
    help="Share of training examples replaced by their mirror image (ours and theirs swapped).",
)
@click.option(
    "--ema",
    "ema_decay",
    type=float,
    help="Validate and keep an exponential moving average of the weights with this decay "
    "(e.g. 0.999).",
)
def train_command(
    data: str,
    out_dir: str,
    tokenizer_path: str,
    train_npz: str | None,
    val_npz: str | None,
    limit: int | None,
    workers: int,
    epochs: int,
    batch_size: int,
    lr: float,
    hidden: int,
    layers: int,
    heads: int,
    max_len: int,
    minutes: float | None,
    seed: int,
    resume: bool,
    body: str | None,
    checkpoint_every: int,
    max_val: int,
    threads: int,
    class_weights: bool,
    bf16: bool,
    device: str,
    init_from: str | None,
    mirror_rate: float,
    ema_decay: float | None,
) -> None:
    """Train the merge-pattern classifier; the best model by validation lands in OUT.

    The defaults are the CPU recipe measured on a 2-core machine (models/shipped/MODEL_CARD.md):
    building the examples takes about 14 minutes, training stops after --minutes 100.
    """
    from splice.models.training.configuration import SpliceConfig
    from splice.models.training.train import TrainOptions, train

    try:  # bad values fail here, before minutes of building examples
        options = TrainOptions(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_minutes=minutes if minutes and minutes > 0 else None,
            resume=resume,
            class_weights=class_weights,
            checkpoint_every=checkpoint_every,
            max_val_examples=max_val or None,
            num_threads=threads,
            bf16=bf16,
            device=device,
            init_from=init_from,
            mirror_rate=mirror_rate,
            ema_decay=ema_decay,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    out = Path(out_dir)
    if bool(train_npz) != bool(val_npz):
        raise click.UsageError("give both --train-npz and --val-npz, or neither")
    if train_npz and val_npz:
        train_path, val_path = Path(train_npz), Path(val_npz)
    else:
        train_path, val_path = _example_sets(data, out, tokenizer_path, max_len, limit, workers)
    vocab_size = 8192
    if Path(tokenizer_path).exists():
        from splice.models.serving.tokenizer import load_tokenizer

        vocab_size = load_tokenizer(tokenizer_path).get_vocab_size()
    architecture = SpliceConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        num_layers=layers,
        num_heads=heads,
        max_position=max_len,
        body=body,
    )
    result = train(train_path, val_path, out, replace(options, architecture=architecture))
    stop = " (time budget)" if result.stopped_by_time else ""
    click.echo(
        f"step {result.step}/{result.total_steps}{stop}; best val accuracy "
        f"{result.best_accuracy:.4f} at step {result.best_step}; "
        f"{result.examples_per_second:.1f} examples/s, {result.tokens_per_second:.0f} tokens/s; "
        f"model in {out}"
    )
