"""Measure the structured merge on real conflicts and fit its confidences (issue 18 §4).

    python scripts/eval_structured.py collect --split val --rows runs/structured/val.jsonl
    python scripts/eval_structured.py report --rows runs/structured/val.jsonl [--write]

``collect`` runs :func:`splice.resolver.structured.structured_merge` on every line-level hunk of
the split's files whose human resolution is located, and writes one row per hunk (repository,
language, whether the stage answered, the parent's node type, members added and removed per side,
what the answer keeps, whether it equals the human resolution ignoring whitespace, seconds).
``report`` prints, per language and per repository, the hunks answered and right; fits the
confidence of each group (the parent's node type, else the language, else all) as the 95% Wilson
lower bound of its precision with at least ``--min-answers`` answers; and measures that rule
**held out by repository** (each repository's answers get confidences fitted on the others), at
the decision threshold the default driver applies to keeps-both answers. ``--write`` stores the
confidences fitted on all repositories in ``resolver/structured.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "merges"
CALIBRATION = ROOT / "resolver" / "structured.json"


def collect(args: argparse.Namespace) -> None:
    from splice.resolver.chunks import split_lines, text_key
    from splice.resolver.keeps import classify
    from splice.resolver.pipeline import find_hunks
    from splice.resolver.structured import structured_merge

    from splice.data.dataset import iter_records
    from splice.data.evaluation import locate_resolutions

    resolver = None
    if args.resolver:
        from splice.models.serving import load_resolver
        from splice.resolver.resolvers import resolve_all

        resolver = load_resolver(args.resolver)
    out = Path(args.rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with out.open("w") as fh:
        records = iter_records(
            args.data, split=args.split, limit=args.limit, per_repo_limit=args.per_repo
        )
        for record in records:
            b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
            chunks, reports = find_hunks(b, o, t, record["lang"], record.get("path"))
            truths = locate_resolutions(chunks, split_lines(record["merged"]))
            answers, seconds = [], []
            for report in reports:
                started = time.perf_counter()
                answers.append(structured_merge(report.hunk))
                seconds.append(time.perf_counter() - started)
            chosen: list = [None] * len(reports)
            if resolver is not None and any(a is not None for a in answers):
                chosen = [r.chosen for r in resolve_all(resolver, [r.hunk for r in reports])]
            for report, truth, answer, took, top in zip(
                reports, truths, answers, seconds, chosen, strict=True
            ):
                if truth is None:
                    continue
                row: dict[str, Any] = {
                    "repo": record["repo"],
                    "lang": record["lang"],
                    "answered": answer is not None,
                    "seconds": round(took, 5),
                }
                if answer is not None:
                    kept = classify(report.hunk.conflict, answer.lines, report.hunk.lang)
                    row.update(
                        kind=answer.kind,
                        added=list(answer.added),
                        removed=list(answer.removed),
                        kept=kept.kind,
                        right=text_key("".join(answer.lines)) == text_key("".join(truth)),
                    )
                    if resolver is not None:
                        same = top is not None and text_key("".join(top.lines)) == text_key(
                            "".join(answer.lines)
                        )
                        row.update(
                            agrees=same,
                            model_confidence=None if top is None else round(top.confidence, 4),
                            model_source=None if top is None else top.source,
                        )
                fh.write(json.dumps(row) + "\n")
                n += 1
    print(f"{n} located hunks -> {out}")


def wilson_lower(right: int, n: int, z: float = 1.96) -> float:
    """The 95% Wilson lower bound of a proportion ``right / n``."""
    if n == 0:
        return 0.0
    p = right / n
    centre = p + z * z / (2 * n)
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - margin) / (1 + z * z / n)


def fit(rows: list[dict[str, Any]], min_answers: int) -> dict[str, Any]:
    """Confidences by parent node type and by language (groups with enough answers), and one
    for all answers."""
    answered = [r for r in rows if r["answered"]]

    def table(field: str) -> dict[str, float]:
        counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in answered:
            counts[r[field]][0] += r["right"]
            counts[r[field]][1] += 1
        return {
            k: round(wilson_lower(right, n), 4)
            for k, (right, n) in sorted(counts.items())
            if n >= min_answers
        }

    right = sum(r["right"] for r in answered)
    out: dict[str, Any] = {
        "by_kind": table("kind"),
        "by_lang": table("lang"),
        "all": round(wilson_lower(right, len(answered)), 4),
        "answers": len(answered),
        "min_answers": min_answers,
    }
    agreeing = [r for r in answered if r.get("agrees") and r.get("model_source") == AGREEING]
    if agreeing:  # the classifier's top answer is the same text: by the classifier's confidence
        cuts = []
        for cut in AGREEMENT_CUTS:
            group = [r for r in agreeing if (r["model_confidence"] or 0.0) >= cut]
            if len(group) >= min_answers:
                bound = wilson_lower(sum(r["right"] for r in group), len(group))
                cuts.append([cut, round(bound, 4)])
        out["agreeing"] = cuts
        out["agreeing_source"] = AGREEING
    return out


#: The source whose top answers an agreeing structured answer may lean on (the classifier).
AGREEING = "model"
#: The resolver confidences above which agreeing answers are counted apart.
AGREEMENT_CUTS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85)


def report(args: argparse.Namespace) -> None:
    from splice.resolver.structured_stage import confidence  # the stage's own rule

    rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines()]
    answered = [r for r in rows if r["answered"]]
    print(f"{len(rows)} located hunks, {len(answered)} answered "
          f"({len(answered) / max(len(rows), 1):.1%}), "
          f"{sum(r['right'] for r in answered)} right")  # fmt: skip
    for field in ("lang", "repo", "kind"):
        counts: dict[str, Counter] = defaultdict(Counter)
        for r in rows:
            counts[r.get(field) or "-"]["hunks"] += 1
            if r["answered"]:
                counts[r[field]]["answered"] += 1
                counts[r[field]]["right"] += r["right"]
                counts[r[field]]["keeps both"] += r["kept"] == "both"
        print(f"\n| {field} | hunks | answered | right | precision | keeps both |")
        print("|---|---:|---:|---:|---:|---:|")
        for key, c in sorted(counts.items(), key=lambda kv: -kv[1]["answered"]):
            if field == "kind" and key == "-":
                continue
            prec = c["right"] / c["answered"] if c["answered"] else float("nan")
            print(f"| {key} | {c['hunks']} | {c['answered']} | {c['right']} | {prec:.1%} "
                  f"| {c['keeps both']} |")  # fmt: skip
    seconds = sorted(r["seconds"] for r in rows)
    print(
        f"\nstage cost per hunk: median {seconds[len(seconds) // 2] * 1000:.1f} ms, "
        f"p95 {seconds[int(len(seconds) * 0.95)] * 1000:.1f} ms, max {seconds[-1] * 1000:.0f} ms"
    )
    # held out by repository: each repository's answers judged with a table fitted on the others
    repos = sorted({r["repo"] for r in rows})
    applied = right = 0
    for repo in repos:
        table = fit([r for r in rows if r["repo"] != repo], args.min_answers)
        for r in answered:
            if r["repo"] != repo or r["kept"] != "both":
                continue
            agreeing = (
                r["model_confidence"]
                if r.get("agrees") and r.get("model_source") == AGREEING
                else None
            )
            if confidence(r["kind"], r["lang"], table, agreeing) >= args.threshold:
                applied += 1
                right += r["right"]
    print(f"\nheld out by repository, applied at confidence >= {args.threshold} (keeps both only):"
          f" {applied} applied ({applied / max(len(rows), 1):.1%} of located hunks), "
          f"{right} right ({right / max(applied, 1):.1%})")  # fmt: skip
    calibration = fit(rows, args.min_answers)
    print("\nfitted on all:", json.dumps(calibration))
    if args.write:
        if not args.agreement:  # measured above, not shipped (docs/STRUCTURED.md)
            calibration.pop("agreeing", None)
            calibration.pop("agreeing_source", None)
        calibration["fitted_on"] = f"{args.rows}: {len(repos)} repositories, {len(rows)} hunks"
        calibration["command"] = "python scripts/eval_structured.py report --rows ROWS --write"
        CALIBRATION.write_text(json.dumps(calibration, indent=2) + "\n")
        print(f"wrote {CALIBRATION}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--data", default=str(DATA))
    c.add_argument("--split", choices=["train", "val"], default="val")
    c.add_argument("--limit", type=int)
    c.add_argument("--per-repo", type=int)
    c.add_argument("--rows", required=True)
    c.add_argument("--resolver", help="Also ask this resolver (e.g. auto): does its top agree?")
    r = sub.add_parser("report")
    r.add_argument("--rows", required=True)
    r.add_argument("--min-answers", type=int, default=30)
    r.add_argument("--threshold", type=float, default=0.891, help="The keeps-both threshold.")
    r.add_argument("--write", action="store_true")
    r.add_argument(
        "--agreement", action="store_true", help="Also write the agreeing answers' bounds."
    )
    args = parser.parse_args()
    {"collect": collect, "report": report}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
