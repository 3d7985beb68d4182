"""How far the file-context reranker can go on the calibration rows (prints two tables).

Rows come from ``splice calibrate MODEL_DIR ... --save-rows DIR`` (``DIR/val.jsonl.gz``); the
weights from a ``calibration.json``. See scripts/rerank_analysis.py:

    python scripts/rerank_limits.py --rows runs/rows --json runs/rerank_limits.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
from rerank_analysis import adapt_by_time, in_sample_bound  # scripts/rerank_analysis.py
from splice.models.training.hunk_calibration import load_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", required=True, help="folder with val.jsonl.gz (--save-rows)")
    ap.add_argument("--calibration", default="models/shipped/calibration.json")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    calib = json.loads(Path(args.calibration).read_text(encoding="utf-8"))
    if "rerank" not in calib:
        raise SystemExit(f"{args.calibration} has no reranker weights")
    weights = np.array(calib["rerank"]["weights"])
    rows = load_rows(Path(args.rows) / "val.jsonl.gz")
    print(f"{len(rows)} validation hunks from {len({h.repo for h in rows})} repositories")

    bounds = in_sample_bound(rows, weights, by="lang")
    print("\nlanguage     hunks  shipped  fitted on the language  fitted per repository")
    for b in bounds:
        print(
            f"{b.group:<12}{b.hunks:>6}  {b.top1_given:>7.1%}  {b.top1_in_sample:>22.1%}"
            f"  {b.top1_in_sample_per_repo:>21.1%}"
        )
    adapt = adapt_by_time(rows, weights)
    l2s = sorted(adapt[0].top1_adapted) if adapt else []
    print("\nlater half of each repository's merges: shipped vs corrected on the earlier half")
    print(
        f"{'repository':<38}{'early':>6}{'late':>6}{'shipped':>9}"
        + "".join(f"{'l2=' + str(x):>10}" for x in l2s)
    )
    for a in adapt:
        print(
            f"{a.repo:<38}{a.early_hunks:>6}{a.late_hunks:>6}{a.top1_given:>9.1%}"
            + "".join(f"{a.top1_adapted[x]:>10.1%}" for x in l2s)
        )
    n = sum(a.late_hunks for a in adapt)
    if n:
        pooled = [sum(a.top1_given * a.late_hunks for a in adapt) / n]
        pooled += [sum(a.top1_adapted[x] * a.late_hunks for a in adapt) / n for x in l2s]
        mean = [np.mean([a.top1_given for a in adapt])]
        mean += [np.mean([a.top1_adapted[x] for a in adapt]) for x in l2s]
        print(f"{'pooled':<50}" + "".join(f"{v:>9.1%} " for v in pooled))
        print(f"{'mean over repositories':<50}" + "".join(f"{v:>9.1%} " for v in mean))
    if args.json:
        out = {
            "in_sample_bound": [asdict(b) for b in bounds],
            "adapt_by_time": [
                {**asdict(a), "top1_adapted": {str(k): v for k, v in a.top1_adapted.items()}}
                for a in adapt
            ],
        }
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
