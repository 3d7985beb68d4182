"""``splice calibrate``: fit the model's temperature and threshold on validation repositories."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import click


@click.command("calibrate")
@click.argument("model_dir", type=click.Path(file_okay=False, exists=True))
@click.option(
    "--val-npz",
    "val_npz",
    required=True,
    type=click.Path(dir_okay=False, exists=True),
    help="Example set of the validation repositories (python -m splice.models.training.examples).",
)
@click.option("--target-precision", type=float, default=0.95, show_default=True)
@click.option("--token-weight", type=float, default=0.5, show_default=True)
@click.option("--max-examples", type=int, help="Use only the first N examples (whole hunks).")
@click.option(
    "--temperature",
    type=click.FloatRange(min=0, min_open=True),
    help="Use this temperature instead of fitting one on the pieces (the shipped model: 1).",
)
@click.option(
    "--max-len",
    type=click.IntRange(min=5),
    help="Sequence length written for inference (default: the example set's; the shipped "
    "model: 128, trained at 192). The --hunks fits run at this length.",
)
@click.option(
    "--auto-threshold",
    type=click.FloatRange(0, 1),
    help="Write this threshold for the auto combination instead of its 95%-precision one "
    "(the shipped model: 0.85, the product default).",
)
@click.option(
    "--out", "out_path", type=click.Path(dir_okay=False), help="[MODEL_DIR/calibration.json]"
)
@click.option(
    "--hunks/--no-hunks",
    default=True,
    show_default=True,
    help="Then fit the route weights and the threshold on real validation hunks "
    "(splice.models.training.hunk_calibration); else the threshold comes from labelled pieces.",
)
@click.option("--data", default="../shared/data/merges", show_default=True)
@click.option("--per-repo", type=int, help="Validation files per repository for --hunks.")
@click.option(
    "--train-per-repo",
    type=int,
    default=100,
    show_default=True,
    help="Training-repository files per repository on which --hunks fits the route weights "
    "and the reranker (0: route weights on the validation hunks, in sample; no reranker).",
)
@click.option(
    "--rerank/--no-rerank",
    default=True,
    show_default=True,
    help="Fit the file-context reranker (splice.models.serving.rerank) on the training hunks.",
)
@click.option(
    "--workers",
    type=int,
    default=1,
    show_default=True,
    help="Processes collecting the hunks' candidates for --hunks.",
)
@click.option(
    "--folds",
    type=int,
    default=5,
    show_default=True,
    help="Groups of validation repositories for the held-out report (hunk_calibration.cross_fit).",
)
@click.option(
    "--save-rows",
    type=click.Path(file_okay=False),
    help="Also write the collected hunk rows to DIR/train.jsonl.gz and DIR/val.jsonl.gz "
    "(hunk_calibration.load_rows reads them; scripts/rerank_limits.py uses them).",
)
def calibrate_command(
    model_dir: str,
    val_npz: str,
    target_precision: float,
    token_weight: float,
    max_examples: int | None,
    temperature: float | None,
    max_len: int | None,
    auto_threshold: float | None,
    out_path: str | None,
    hunks: bool,
    data: str,
    per_repo: int | None,
    train_per_repo: int,
    rerank: bool,
    workers: int,
    folds: int,
    save_rows: str | None,
) -> None:
    """Temperature scaling, ECE before/after, route weights and the threshold reaching
    --target-precision on validation hunks."""
    from splice.models.training.calibrate import calibrate

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
            temperature=temperature,
            max_len=max_len,
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
    target_path = Path(out_path) if out_path else Path(model_dir) / "calibration.json"
    if hunks:
        _calibrate_hunks(
            model_dir,
            target_path,
            data,
            per_repo,
            target_precision,
            train_per_repo,
            folds,
            rerank,
            workers,
            auto_threshold,
            save_rows,
        )
    click.echo(f"wrote {target_path}")


def _calibrate_hunks(
    model_dir: str,
    path: Path,
    data: str,
    per_repo: int | None,
    target: float,
    train_per_repo: int,
    folds: int,
    rerank: bool = True,
    workers: int = 1,
    auto_threshold: float | None = None,
    rows_dir: str | None = None,
) -> None:
    """Route weights (and the reranker) on training-repository hunks, Platt map and thresholds
    on validation hunks, and the held-out report (:mod:`splice.models.training.hunk_calibration`);
    merged into ``path``."""
    import json

    import numpy as np

    from splice.data.dataset import iter_records
    from splice.models.serving.neural import NeuralResolver
    from splice.models.serving.rerank import FEATURES
    from splice.models.training.hunk_calibration import (
        collect,
        collect_parallel,
        cross_fit,
        error_kinds,
        fit,
        fit_rerank,
        fit_weights,
        save_rows,
    )

    calib = json.loads(path.read_text(encoding="utf-8"))
    calib.pop("rerank", None)
    rerank = rerank and train_per_repo > 0
    if rerank:
        # the route weights stay at the plain average: the reranker learns the balance of the
        # routes (its first three features), and fitted route weights only followed the sample
        # (0.35 / 0.65 on one training sample cost 4.6 points of validation top-1 after reranking)
        calib["token_weight"] = calib["clean_weight"] = 0.5
    resolver = NeuralResolver(model_dir)
    resolver.calibration = resolver.calibration.__class__.from_json(calib)

    def gather(records: Iterable[dict[str, Any]], split: str) -> list:
        if workers > 1:
            rows = collect_parallel(records, model_dir, calib, workers)
        else:
            rows = collect(records, resolver)
        if rows_dir:
            Path(rows_dir).mkdir(parents=True, exist_ok=True)
            save_rows(rows, Path(rows_dir) / f"{split}.jsonl.gz")
        return rows

    weights = None
    rerank_w = None
    if train_per_repo > 0:
        train = gather(iter_records(data, split="train", per_repo_limit=train_per_repo), "train")
        if not train:
            raise click.ClickException(f"no located training hunks in {data}")
        if rerank:
            weights = (0.5, 0.5)
            rerank_w = fit_rerank(train, weights)
            calib["rerank"] = {
                "features": list(FEATURES),
                "weights": [round(float(x), 6) for x in rerank_w],
                "training_hunks": len(train),
            }
            rerank_w = np.array(calib["rerank"]["weights"])  # exactly what ships
            click.echo(f"reranker fitted on {len(train)} training hunks")
        else:
            weights = fit_weights(train)
            click.echo(f"route weights from {len(train)} training hunks: {weights}")
    rows = gather(iter_records(data, split="val", per_repo_limit=per_repo), "val")
    if not rows:
        raise click.ClickException(f"no located validation hunks in {data}")
    report = fit(rows, target, weights, rerank_w)
    held_out = cross_fit(rows, folds, target, weights, rerank_w)
    calib.update(report)
    if auto_threshold is not None:
        calib["auto_threshold"] = auto_threshold
    calib["held_out"] = held_out
    calib["errors"] = error_kinds(rows, (report["token_weight"], report["clean_weight"]), rerank_w)
    calib["notes"] = (
        "route weights 0.5 / 0.5 and the reranker fitted on training-repository hunks"
        if rerank_w is not None
        else "route weights fitted on training-repository hunks"
        if weights is not None
        else "route weights fitted on the validation hunks (in sample)"
    ) + "; Platt map and thresholds on validation hunks; held_out: cross_fit by repository"
    path.write_text(json.dumps(calib, indent=2) + "\n", encoding="utf-8")
    click.echo(
        f"hunks: {report['n_hunks']}; weights token {report['token_weight']}, clean "
        f"{report['clean_weight']}; top-1 {report['hunk_top1']:.1%} (default weights "
        f"{report['hunk_top1_default_weights']:.1%}), top-3 {report['hunk_top3']:.1%}; threshold "
        f"{report['threshold']:.4f}: precision {report['hunk_precision_at_threshold']:.1%}, "
        f"coverage {report['hunk_coverage']:.1%}; hunk ECE {report['hunk_ece_before']:.4f}"
        f" -> {report['hunk_ece_after']:.4f}"
    )
    m = held_out["model_at_threshold"]
    click.echo(
        f"held out ({folds} groups of repositories): top-1 {held_out['hunk_top1']:.1%} "
        f"({held_out['repo_mean_top1']:.1%} averaged over "
        f"{len(held_out['per_repository'])} repositories), "
        f"precision {m['precision']:.1%} at coverage {m['coverage']:.2%}, "
        f"hunk ECE {held_out['hunk_ece']:.4f}"
    )
