"""Measure the precision of each shape of clean token merge: the model-free policy's confidences.

For every located hunk whose token-level merge is clean, record its edit shape (see
``resolver/policy.py``) and whether the merge equals the human resolution; print the count and
precision per shape class, and for combinations the precision by distance between the edits and
by edit size (no subset of combinations reached 85% on held-out repositories).

    python scripts/tune_policy.py --data ../shared/data/merges --split train --per-repo 60
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
from collections import defaultdict
from typing import Any

from splice.resolver.chunks import split_lines
from splice.resolver.pipeline import find_hunks
from splice.resolver.policy import edit_shape

from splice.data.dataset import iter_records
from splice.data.evaluation import locate_resolutions, normalize


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
    classes: dict[Any, list[bool]] = defaultdict(list)
    by_gap: dict[int, list[bool]] = defaultdict(list)
    by_size: dict[int, list[bool]] = defaultdict(list)
    for shape, ok in rows:
        if shape.kind == "combined":
            key = ("combined", "same line" if shape.line_gap == 0 else "across lines")
            by_gap[min(shape.gap, 12)].append(ok)
            by_size[min(max(shape.ours_size, shape.theirs_size) // 8 * 8, 40)].append(ok)
        else:
            other = shape.theirs_size if shape.kind == "ours" else shape.ours_size
            key = (shape.kind, "other side whitespace only" if other == 0 else "other side subset")
        classes[key].append(ok)

    def show(title: str, groups: dict[Any, list[bool]]) -> None:
        print(title)
        for key, oks in sorted(groups.items()):
            print(f"  {key}: {len(oks)} hunks, precision {sum(oks) / len(oks):.3f}")

    show("shape classes", classes)
    show("combined, by significant tokens between the edits", by_gap)
    show("combined, by the larger side's edit size (buckets of 8)", by_size)


if __name__ == "__main__":
    main()
