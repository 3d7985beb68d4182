"""``splice export-onnx``: export a trained classifier to ONNX and check it against PyTorch."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export-onnx")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="[MODEL_DIR/model.onnx]")
@click.option("--length", type=int, help="Fix the sequence length L (default: dynamic).")
@click.option(
    "--int8",
    is_flag=True,
    help="Then quantize the weights to int8 in place (the shipped model; about 4x faster on CPU).",
)
def export_command(model_dir: str, out_path: str | None, length: int | None, int8: bool) -> None:
    """Export MODEL_DIR (a save_pretrained folder) to ONNX; fail if the logits disagree."""
    from splice.models.training.export import TOLERANCE, export_onnx, quantize_int8

    target = Path(out_path) if out_path else Path(model_dir) / "model.onnx"
    try:
        report = export_onnx(model_dir, target, length=length)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    shape = "dynamic" if report.dynamic_length else f"fixed {length}"
    click.echo(
        f"wrote {report.path} (batch dynamic, L {shape}); max |onnx - torch| = "
        f"{report.max_abs_diff:.2e} (tolerance {TOLERANCE:.0e})"
    )
    if int8:
        fp32 = target.with_suffix(".fp32.onnx")
        target.replace(fp32)
        quantize_int8(fp32, target)
        fp32.unlink()
        click.echo(f"quantized {target} to int8 (float32 parity checked above)")
