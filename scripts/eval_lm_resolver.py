"""The code language model in the resolver, measured on validation repositories.

Step 1 (``collect``): for up to ``--per-repo`` records of each validation repository, every
located hunk goes through the shipped classifier (reranked with the file context, as served);
the LM then writes candidates (beam search) and scores every candidate
(:mod:`splice.models.serving.lm_scoring`). One row per hunk, gzipped JSON lines.

Step 2 (``report``): top-1 / top-3 of the classifier alone and with the LM, the LM's weights
fitted leave one repository out (pooled and averaged over repositories, per language); the
share of hunks some candidate gets right, with and without the written ones; how often a
written text is exact on the hunks no pattern expresses. ``--write`` fits the weights on every
row and saves ``rerank.json`` in the LM's folder.

    python scripts/eval_lm_resolver.py collect --lm runs/lm/cpu2_onnx --per-repo 40 \\
        --rows runs/eval/lm-rows.jsonl.gz
    python scripts/eval_lm_resolver.py report --rows runs/eval/lm-rows.jsonl.gz \\
        [--write runs/lm/cpu2_onnx]

The LM never trained on these repositories (it trains on the train split only), so fitting
its weights here, held out by repository, measures what users will see.
"""

from __future__ import annotations

import argparse
import gzip
import json
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from splice.models.serving import rerank
from splice.models.serving.lm_scoring import (
    LM_FEATURES,
    WRITTEN_PRIOR,
    LMRerank,
    LMScorer,
    dedup_written,
    lm_features,
)
from splice.models.serving.neural import NeuralResolver
from splice.resolver.chunks import split_lines, text_key
from splice.resolver.pipeline import find_hunks

from splice.data.dataset import iter_records
from splice.data.evaluation import locate_resolutions


def collect(args: argparse.Namespace) -> None:
    classifier = NeuralResolver(args.model)
    scorer = LMScorer(*_lm(args.lm, args.beams, args.press, args.cache_budget))
    n_hunks, started = 0, time.perf_counter()
    spent = defaultdict(float)
    with gzip.open(args.rows, "wt", encoding="utf-8") as out:
        records = iter_records(args.data, split="val", per_repo_limit=args.per_repo)
        for record in records:
            if len(record["ours"]) < args.min_chars:
                continue
            b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
            try:
                chunks, reports = find_hunks(b, o, t, record.get("lang"), record.get("path"))
                truths = locate_resolutions(chunks, split_lines(record["merged"]))
            except RecursionError:
                continue
            located = [(r.hunk, x) for r, x in zip(reports, truths, strict=True) if x is not None]
            if not located:
                continue
            hunks = [h for h, _ in located]
            t0 = time.perf_counter()
            ranked = classifier.candidates_many(hunks)
            t1 = time.perf_counter()
            written = scorer.write(hunks)
            t2 = time.perf_counter()
            pools = [
                [c.lines for c in cands] + dedup_written([c.lines for c in cands], w)
                for cands, w in zip(ranked, written, strict=True)
            ]
            log_probs, lengths = scorer.score(hunks, pools)
            t3 = time.perf_counter()
            spent["classifier"] += t1 - t0
            spent["write"] += t2 - t1
            spent["score"] += t3 - t2
            n_files = len(hunks)
            for (_, truth), cands, pool, lp, n, w in zip(
                located, ranked, pools, log_probs, lengths, written, strict=True
            ):
                key = text_key("".join(truth))
                row = {
                    "repo": record.get("repo", ""),
                    "lang": record.get("lang") or "unknown",
                    "hunks_in_file": n_files,
                    "prior": [c.score for c in cands] + [WRITTEN_PRIOR] * (len(pool) - len(cands)),
                    "written": [False] * len(cands) + [True] * (len(pool) - len(cands)),
                    "right": [text_key("".join(x)) == key for x in pool],
                    "log_prob": [float(x) for x in lp],
                    "length": n,
                    "beam_right": [text_key("".join(x)) == key for x, _ in w],
                }
                out.write(json.dumps(row) + "\n")
                n_hunks += 1
            if n_hunks and n_hunks % 50 < len(hunks):
                rate = n_hunks / (time.perf_counter() - started)
                print(f"{n_hunks} hunks, {rate:.2f}/s; " + _seconds(spent, n_hunks), flush=True)
    total = time.perf_counter() - started
    print(f"{n_hunks} hunks in {total:.0f} s; " + _seconds(spent, n_hunks))


def _seconds(spent: dict[str, float], n: int) -> str:
    return ", ".join(f"{k} {v / max(n, 1):.3f} s/hunk" for k, v in spent.items())


def _lm(folder: str, beams: int, press: str | None, budget: int) -> tuple[Any, LMRerank]:
    from splice.models.serving.lm import CodeLM

    blank = (0.0,) * len(LM_FEATURES)
    return CodeLM(folder), LMRerank(blank, beams=beams, press=press, cache_budget=budget)


# ---------------------------------------------------------------------------------- report


def load(path: str) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    for r in rows:
        r["features"] = lm_features(np.array(r["log_prob"]), r["length"], r["written"])
        for k in ("prior", "right", "written"):
            r[k] = np.array(r[k])
    return rows


def ranks(rows: Sequence[dict[str, Any]], weights: np.ndarray | None) -> np.ndarray:
    """Per row, the rank of the first right candidate (1 = top; 0 = none right) with the LM's
    ``weights`` (None: the classifier's order, written candidates excluded)."""
    out = np.zeros(len(rows), int)
    for i, r in enumerate(rows):
        if weights is None:
            keep = ~r["written"]
            score, right = r["prior"][keep], r["right"][keep]
        else:
            score, right = rerank.rerank_scores(r["prior"], r["features"], weights), r["right"]
        hits = np.flatnonzero(right[np.argsort(-score, kind="stable")])
        out[i] = hits[0] + 1 if len(hits) else 0
    return out


def fit(rows: Sequence[dict[str, Any]], l2: float = 1e-2) -> np.ndarray:
    return rerank.fit(
        [r["prior"] for r in rows], [r["features"] for r in rows], [r["right"] for r in rows], l2=l2
    )


def held_out(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Ranks with weights fitted on the other repositories (leave one repository out)."""
    out = np.zeros(len(rows), int)
    repos = sorted({r["repo"] for r in rows})
    for repo in repos:
        test = [i for i, r in enumerate(rows) if r["repo"] == repo]
        w = fit([r for r in rows if r["repo"] != repo])
        out[test] = ranks([rows[i] for i in test], w)
    return out


def summary(rows: Sequence[dict[str, Any]], rank: np.ndarray) -> dict[str, Any]:
    def stats(idx: Sequence[int]) -> dict[str, float]:
        r = rank[list(idx)]
        top3 = float(((r >= 1) & (r <= 3)).mean())
        return {"hunks": len(idx), "top1": float((r == 1).mean()), "top3": top3}

    by_repo: dict[str, list[int]] = defaultdict(list)
    by_lang: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_repo[r["repo"]].append(i)
        by_lang[r["lang"]].append(i)
    repo_stats = {k: stats(v) for k, v in sorted(by_repo.items())}
    return {
        "pooled": stats(range(len(rows))),
        "repo_mean_top1": float(np.mean([s["top1"] for s in repo_stats.values()])),
        "by_lang": {k: stats(v) for k, v in sorted(by_lang.items())},
        "by_repo": repo_stats,
    }


def report(args: argparse.Namespace) -> None:
    rows = load(args.rows)
    base = ranks(rows, None)
    lm = held_out(rows)
    expressible = np.array([bool((r["right"] & ~r["written"]).any()) for r in rows])
    written_any = np.array([bool((r["right"] & r["written"]).any()) for r in rows])
    beam_top = np.array([bool(r["beam_right"][:1] and r["beam_right"][0]) for r in rows])
    beam_any = np.array([any(r["beam_right"]) for r in rows])
    new = ~expressible
    n_written = np.array([int(r["written"].sum()) for r in rows])
    out = {
        "rows": len(rows),
        "repos": len({r["repo"] for r in rows}),
        "classifier": summary(rows, base),
        "with_lm_held_out": summary(rows, lm),
        "some_candidate_right": {
            "classifier": float(expressible.mean()),
            "with_written": float((expressible | written_any).mean()),
        },
        "not_expressible": {
            "hunks": int(new.sum()),
            "best_beam_exact": float(beam_top[new].mean()) if new.any() else 0.0,
            "any_beam_exact": float(beam_any[new].mean()) if new.any() else 0.0,
        },
        "written_per_hunk": float(n_written.mean()),
        "weights_all_rows": dict(zip(LM_FEATURES, fit(rows).round(4).tolist(), strict=True)),
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n", encoding="utf-8")
    if args.write:
        weights = tuple(float(x) for x in fit(rows))
        p, c = out["classifier"]["pooled"]["top1"], out["with_lm_held_out"]["pooled"]["top1"]
        note = (
            f"{len(rows)} hunks of {out['repos']} validation repositories ({args.rows}); "
            f"top-1 held out by repository {c:.3f} vs the classifier's {p:.3f}"
        )
        LMRerank(weights=weights, beams=args.beams, fitted_on=note).save(args.write)
        print(f"wrote {Path(args.write) / 'rerank.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--lm", required=True)
    c.add_argument("--model", default=None, help="Classifier folder (default: shipped).")
    c.add_argument("--data", default="../shared/data/merges")
    c.add_argument("--per-repo", type=int, default=40)
    c.add_argument("--beams", type=int, default=3)
    c.add_argument("--press", default=None, help="Whole files through this cache method.")
    c.add_argument("--cache-budget", type=int, default=256)
    c.add_argument("--min-chars", type=int, default=0, help="Only files at least this long.")
    c.add_argument("--rows", required=True)
    r = sub.add_parser("report")
    r.add_argument("--rows", required=True)
    r.add_argument("--json", default=None)
    r.add_argument("--write", default=None, help="Save rerank.json in this LM folder.")
    r.add_argument("--beams", type=int, default=3)
    args = parser.parse_args()
    collect(args) if args.step == "collect" else report(args)


if __name__ == "__main__":
    main()
