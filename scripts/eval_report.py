"""Render the results tables of docs/EVALUATION.md from ``splice eval --json`` reports.

python scripts/eval_report.py runs/eval_all.json runs/eval_val.json runs/eval_train.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(all_path: str, val_path: str, train_path: str) -> None:
    reports = {
        name: json.loads(Path(path).read_text())
        for name, path in (("all", all_path), ("val (held out)", val_path), ("train", train_path))
    }
    full, val = reports["all"], reports["val (held out)"]
    print(
        f"Whole development set: {full['n_files']:,} files, {full['n_hunks']:,} hunks, "
        f"{full['unlocated']:,} not located ({full['unlocated'] / full['n_hunks']:.1%}).\n"
    )
    print("| resolver | split | hunks | coverage | precision | accuracy |")
    print("|---|---|---:|---:|---:|---:|")
    for name in ("ours", "theirs", "token-merge-naive", "token-merge"):
        for split, rep in reports.items():
            if name in rep["resolvers"]:
                m = rep["resolvers"][name]["overall"]
                print(
                    f"| {name} | {split} | {m['hunks']:,} | {m['coverage']:.1%} | "
                    f"{m['precision']:.1%} | {m['accuracy']:.1%} |"
                )
    print("\n`token-merge` per language (whole development set; held-out precision in brackets):\n")
    print("| lang | hunks | coverage | precision | accuracy | expressible |")
    print("|---|---:|---:|---:|---:|---:|")
    for lang, m in full["resolvers"]["token-merge"]["by_lang"].items():
        if m["hunks"] < 50:
            continue
        vm = val["resolvers"]["token-merge"]["by_lang"].get(lang)
        vs = f" ({vm['precision']:.1%})" if vm and vm["hunks"] >= 50 else ""
        print(
            f"| {lang} | {m['hunks']:,} | {m['coverage']:.1%} | {m['precision']:.1%}{vs} | "
            f"{m['accuracy']:.1%} | {full['expressible']['by_lang'][lang]:.1%} |"
        )
    print(
        "\nExpressible by primitive patterns (the ceiling for a pattern classifier): "
        f"{full['expressible']['overall']:.1%} of located hunks "
        f"(held out {val['expressible']['overall']:.1%})."
    )


if __name__ == "__main__":
    main(*sys.argv[1:4])
