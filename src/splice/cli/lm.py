"""``splice lm`` (bits per byte and infilling under the code language model) and
``splice export-lm`` (a trained causal LM to the ONNX folder that serving loads)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

#: Exit status when the model folder is missing or cannot be loaded.
NO_MODEL = 2
#: The --press name of HOMER's hierarchical prefill (a procedure over the model, torch).
HOMER = "homer"


def _load(model_dir: str | None):
    """The :class:`~splice.models.serving.lm.CodeLM` of ``model_dir`` (default: the shipped
    one); one line on stderr and exit :data:`NO_MODEL` when it cannot be loaded."""
    from splice.models.serving.lm import CodeLM, LMUnavailable, default_lm_dir

    folder = Path(model_dir) if model_dir else default_lm_dir()
    try:
        return CodeLM(folder)
    except LMUnavailable as exc:
        hint = "" if model_dir else " (export one with `splice export-lm` or pass --model DIR)"
        click.echo(f"splice lm: no language model: {exc}{hint}", err=True)
        sys.exit(NO_MODEL)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from None


@click.group("lm")
def lm_command() -> None:
    """The code language model: bits per byte of files, infilling lines."""


@lm_command.command("perplexity")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--model", "model_dir", type=click.Path(file_okay=False), help="[models/shipped/lm]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
@click.option("--stride", type=int, help="Window step in tokens [half the model's positions].")
@click.option(
    "--press",
    help="Read each file through one cache compressed by this method of "
    "splice.models.merging.cache (cam, ems, h2o, kvmerger, random, snapkv, streaming_llm) to "
    "--budget entries; homer: HOMER's hierarchical prefill in chunks of --budget tokens (a "
    "Hugging Face --model, torch; whole files, past the model's positions).",
)
@click.option("--budget", type=click.IntRange(min=1), help="Cache entries kept with --press.")
@click.option("--chunk", type=click.IntRange(min=1), default=64, show_default=True)
def perplexity_command(
    files: tuple[str, ...],
    model_dir: str | None,
    as_json: bool,
    stride: int | None,
    press: str | None,
    budget: int | None,
    chunk: int,
) -> None:
    """Bits per byte of each FILE and of all together (total bits over total bytes); with
    --press, each file read through a cache held at --budget entries (cut at the model's
    positions; with homer, whole)."""
    if (press is None) != (budget is None):
        raise click.UsageError("--press and --budget go together")
    if press is not None:
        from splice.models.merging.cache import cache_method_names

        names = [*cache_method_names(), HOMER]
        if press not in names:
            raise click.UsageError(f"--press {press!r}: one of {', '.join(sorted(names))}")
    texts = [(path, _read(path)) for path in files]
    if press == HOMER and budget is not None:
        losses = _homer_losses(texts, model_dir, budget, chunk)
    else:
        losses = _served_losses(texts, model_dir, stride, press, budget, chunk)
    per_file = []
    for (path, _), loss in zip(texts, losses, strict=True):
        per_file.append(
            {
                "path": path,
                "tokens": loss.tokens,
                "bytes": loss.bytes,
                "bits": loss.bits,
                "bits_per_byte": loss.bits_per_byte,
            }
        )
    n_bytes = sum(f["bytes"] for f in per_file)
    bits = sum(f["bits"] for f in per_file)
    report = {
        "files": len(per_file),
        "tokens": sum(f["tokens"] for f in per_file),
        "bytes": n_bytes,
        "bits_per_byte": bits / n_bytes if n_bytes else 0.0,
        "per_file": per_file,
    }
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for f in per_file:
        click.echo(f"{f['bits_per_byte']:.3f} bits/byte  {f['tokens']:>7} tokens  {f['path']}")
    click.echo(
        f"{report['bits_per_byte']:.3f} bits/byte over {report['files']} files, "
        f"{report['tokens']} tokens, {report['bytes']} bytes"
    )


def _served_losses(
    texts: list[tuple[str, str]],
    model_dir: str | None,
    stride: int | None,
    press: str | None,
    budget: int | None,
    chunk: int,
) -> list:
    """Each text's loss under the served (ONNX) model, through a compressed cache with
    ``press``."""
    lm = _load(model_dir)
    if press is not None and not lm.reads_queries(press):
        raise click.ClickException(
            f"--press {press} needs queries, which {lm.model_dir} was exported without "
            "(export it again with `splice export-lm`)"
        )
    try:
        if press is not None and budget is not None:
            return [lm.compressed_loss(text, press, budget, chunk) for _, text in texts]
        return [lm.text_loss(text, stride) for _, text in texts]
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None


def _homer_losses(
    texts: list[tuple[str, str]], model_dir: str | None, budget: int, chunk: int
) -> list:
    """Each whole text's loss read through HOMER's hierarchical prefill with chunks of
    ``budget`` tokens (the Hugging Face model of ``model_dir``; torch)."""
    import math

    if model_dir is None or not (Path(model_dir) / "config.json").is_file():
        raise click.UsageError(
            "--press homer runs the Hugging Face model (torch): pass --model with a folder "
            "that has config.json, model weights and tokenizer.json"
        )
    from transformers.utils import logging as hf_logging

    from splice.models.merging.cache.homer import hierarchical_nats
    from splice.models.serving.lm import TextLoss
    from splice.models.serving.prompt import LMTokenizer
    from splice.models.training.lm_export import lm_spec, load_causal_lm

    hf_logging.disable_progress_bar()
    folder = Path(model_dir)
    try:
        model = load_causal_lm(folder)
        tokenizer = LMTokenizer.from_file(folder / "tokenizer.json")
        start = lm_spec(model, folder / "tokenizer.json", budget, quantized=False)["start_id"]
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"{folder}: {exc}") from None
    losses = []
    for _, text in texts:
        ids = ([start] if start is not None else []) + tokenizer.encode(text)
        try:
            nats = hierarchical_nats(model, ids, chunk_len=budget, step=chunk)
        except ValueError as exc:  # more tree levels than the model has layers
            raise click.ClickException(str(exc)) from None
        losses.append(
            TextLoss(tokens=max(len(ids) - 1, 0), bytes=len(text.encode()), bits=nats / math.log(2))
        )
    return losses


def _line_range(text: str, value: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in value.split(":"))
    except ValueError:
        raise click.ClickException(f"--lines {value!r} is not A:B") from None
    n = len(text.splitlines(keepends=True))
    if not 1 <= a <= b <= n:
        raise click.ClickException(f"--lines {a}:{b} is outside 1:{n} of the file")
    return a, b


@lm_command.command("infill")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--lines", "lines_range", required=True, help="A:B, 1-based and inclusive.")
@click.option("--model", "model_dir", type=click.Path(file_okay=False), help="[models/shipped/lm]")
@click.option("--beams", type=int, default=4, show_default=True)
@click.option("--max-tokens", type=int, default=128, show_default=True)
def infill_command(
    file: str, lines_range: str, model_dir: str | None, beams: int, max_tokens: int
) -> None:
    """Print the model's text for lines A:B of FILE, given the rest of the file."""
    from splice.models.serving.lm import GenerateOptions, LMUnavailable

    text = _read(file)
    a, b = _line_range(text, lines_range)
    lines = text.splitlines(keepends=True)
    lm = _load(model_dir)
    try:
        options = GenerateOptions(beams=beams, max_new_tokens=max_tokens)
        middle = lm.infill("".join(lines[: a - 1]), "".join(lines[b:]), options)
    except LMUnavailable as exc:
        click.echo(f"splice lm: {exc}", err=True)
        sys.exit(NO_MODEL)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(middle, nl=not middle.endswith("\n"))


@click.command("export-lm")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--no-quantize", is_flag=True, help="Serve the float32 graph (no int8 weights).")
@click.option(
    "--keep-fp32/--drop-fp32",
    default=True,
    show_default=True,
    help="Keep model.fp32.onnx beside the int8 model.onnx.",
)
@click.option(
    "--budget",
    type=click.IntRange(min=16),
    default=None,
    help="Prompt tokens (default: the sequence length the model was trained on, else 1024).",
)
def export_lm_command(
    model_dir: str, out_dir: str, no_quantize: bool, keep_fp32: bool, budget: int | None
) -> None:
    """Export MODEL_DIR (a Hugging Face causal LM with tokenizer.json) to OUT_DIR for serving:
    ONNX with the key/value cache, int8 weights, lm.json; fail if ONNX and PyTorch disagree."""
    from splice.models.training.lm_export import TOLERANCE, LMExportOptions, export_lm

    options = LMExportOptions(quantize=not no_quantize, keep_fp32=keep_fp32, budget=budget)
    try:
        report = export_lm(model_dir, out_dir, options)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"wrote {report.model} in {report.seconds:.0f} s; max |onnx - torch| float32: prefill "
        f"{report.prefill_diff:.1e}, decoding step {report.decode_diff:.1e} "
        f"(tolerance {TOLERANCE:.0e})"
    )
