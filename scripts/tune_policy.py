"""Tune the model-free policy's thresholds on the training repositories.

For every located hunk whose token-level merge is clean, record its edit shape and whether the
merge equals the human resolution; then grid-search ``min_gap`` and ``max_side_tokens`` for the
highest coverage at a precision target, and print the best rule sets.

    python scripts/tune_policy.py --data ../shared/data/merges --per-repo 60 --target 0.88
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from typing import Any

from splice.resolver.chunks import split_lines
from splice.resolver.pipeline import find_hunks
from splice.resolver.policy import edit_shape

from splice.dataset import iter_records
from splice.evaluation import locate_resolutions, normalize


def shapes(record: dict[str, Any]) -> tuple[int, list[tuple[Any, bool]]]:
    b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
    chunks, reports = find_hunks(b, o, t, record["lang"])
    truths = locate_resolutions(chunks, split_lines(record["merged"]))
    out = []
    located = 0
    for report, truth in zip(reports, truths, strict=True):
        if truth is None:
            continue
        located += 1
        shape = edit_shape(report.hunk.conflict, record["lang"])
        if shape is not None:
            out.append((shape, normalize(shape.merged) == normalize("".join(truth))))
    return located, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default="../shared/data/merges")
    ap.add_argument("--split", default="train")
    ap.add_argument("--per-repo", type=int, default=60)
    ap.add_argument("--target", type=float, default=0.88)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    records = iter_records(args.data, split=args.split, per_repo_limit=args.per_repo)
    rows: list[tuple[Any, bool]] = []
    total = 0
    with mp.get_context("fork").Pool(args.workers) as pool:
        for located, out in pool.imap_unordered(shapes, records, chunksize=4):
            total += located
            rows.extend(out)
    print(f"located hunks: {total}; clean token merges: {len(rows)}")
    subsumed = [ok for s, ok in rows if s.kind != "combined"]
    print(f"subsumed: {len(subsumed)} hunks, precision {sum(subsumed) / max(1, len(subsumed)):.3f}")
    results = []
    for gap in range(1, 13):
        for size in (4, 8, 12, 16, 20, 30, 40, 60, 1 << 30):
            for line_gap in (0, 1):
                combined = [
                    ok
                    for s, ok in rows
                    if s.kind == "combined"
                    and s.gap >= gap
                    and s.line_gap <= line_gap
                    and max(s.ours_size, s.theirs_size) <= size
                ]
                n = len(subsumed) + len(combined)
                precision = (sum(subsumed) + sum(combined)) / max(1, n)
                results.append((precision, n / max(1, total), gap, size, line_gap, combined))
    good = sorted((r for r in results if r[0] >= args.target), key=lambda r: -r[1])
    print("precision coverage min_gap max_side_tokens max_line_gap combined(n, precision)")
    for p, cov, gap, size, lg, combined in good[:10]:
        cp = sum(combined) / max(1, len(combined))
        print(f"{p:.3f} {cov:.3f} {gap} {size} {lg} ({len(combined)}, {cp:.2f})")


if __name__ == "__main__":
    main()
