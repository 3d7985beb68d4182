"""``splice calibrate``: fit the model's temperature and threshold on validation repositories."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("calibrate")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--val-npz",
    "val_npz",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Example set of the validation repositories (python -m splice.models.examples).",
)
@click.option("--target-precision", type=float, default=0.95, show_default=True)
@click.option("--token-weight", type=float, default=0.5, show_default=True)
@click.option("--max-examples", type=int, help="Use only the first N examples (whole hunks).")
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False), help="[MODEL_DIR/calibration.json]"
)
def calibrate_command(
    model_dir: str,
    val_npz: str,
    target_precision: float,
    token_weight: float,
    max_examples: int | None,
    out_path: str | None,
) -> None:
    """Temperature scaling, ECE before/after, and the threshold reaching --target-precision."""
    from splice.models.calibrate import calibrate

    if not (Path(model_dir) / "model.onnx").is_file():
        raise click.ClickException(f"no model.onnx in {model_dir}")
    try:
        r = calibrate(
            model_dir,
            val_npz,
            out_path=out_path,
            target=target_precision,
            token_weight=token_weight,
            max_examples=max_examples,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"temperature {r.temperature:.3f}: NLL {r.nll_before:.4f} -> {r.nll_after:.4f}, "
        f"ECE ({r.n_pieces} pieces, 15 bins) {r.ece_before:.4f} -> {r.ece_after:.4f}, "
        f"top-1 accuracy {r.accuracy:.1%}"
    )
    click.echo(
        f"threshold {r.threshold:.4f}: precision {r.precision_at_threshold:.1%} "
        f"(target {r.target_precision:.0%}), coverage {r.coverage:.1%} of {r.n_hunks} "
        "labelled validation hunks"
    )
    click.echo(f"wrote {Path(out_path) if out_path else Path(model_dir) / 'calibration.json'}")
