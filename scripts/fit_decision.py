"""Fit the decision thresholds by what an answer keeps, held out by repository.

Input: the per-hunk rows of ``splice eval --split val --resolver auto --rows ROWS`` (every hunk's
candidates in the pipeline's order, with confidence, syntax check and correctness). Each candidate
is classified again with :func:`splice.resolver.keeps.classify` (so a change there needs no new
eval run; the result is cached next to the rows), and the decision is simulated: the first
candidate, in the pipeline's order, whose confidence reaches the threshold of its group and that
passes the syntax check is applied.

Groups: ``drops`` (an answer that drops a side's edits), and the answers that keep both, split
by the rule under test (``GROUPS``: the library's ``RULES`` and two measured only). Each group's
threshold is the lowest confidence at which that group's answers (the most confident syntax-valid
one per hunk) are at least ``target`` precise on the fitting repositories, with at least
``--min-answers`` answers; else None (never).

Protocol: leave one repository out. For each validation repository the thresholds are fitted on
the other ones and applied to it; the pooled applied answers of all held-out repositories give
the held-out coverage and precision (and by kind and language). The shipped thresholds are then
fitted on all validation repositories. ``--write`` puts them, with the held-out report, into
``calibration.json`` under ``decision`` (other fields unchanged).

    .venv/bin/splice eval --split val --resolver auto --allow-discard --workers 2 \\
        --rows runs/eval/val-auto.jsonl.gz --json runs/eval/val-auto.json
    .venv/bin/python scripts/fit_decision.py --rows runs/eval/val-auto.jsonl.gz \\
        --rule source-side-file --write models/shipped/calibration.json
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from splice.resolver.chunks import Conflict, split_lines, text_key
from splice.resolver.keeps import classify
from splice.resolver.resolvers import WRITTEN_SOURCE
from splice.resolver.thresholds import POLICY_SOURCE, RULES, AnswerFeatures

from splice.data.evaluation import read_rows

Group = Callable[[dict[str, Any], dict[str, Any]], str]
KINDS = ("both", "drops-ours", "drops-theirs", "drops-both")


def prepare(rows: list[dict[str, Any]], resolver: str, workers: int = 1) -> list[dict[str, Any]]:
    """Located hunks with each candidate reclassified and its features attached."""
    todo = [
        (h, resolver) for h in rows if h.get("truth") is not None and resolver in h["resolvers"]
    ]
    if workers <= 1:
        return [_prepare_one(job) for job in todo]
    import multiprocessing as mp

    with mp.get_context("fork").Pool(workers) as pool:
        return list(pool.imap(_prepare_one, todo, chunksize=32))


def _prepare_one(job: tuple[dict[str, Any], str]) -> dict[str, Any]:
    h, resolver = job
    lang = h["lang"]
    c = Conflict(
        tuple(split_lines(h["base"])),
        tuple(split_lines(h["ours"])),
        tuple(split_lines(h["theirs"])),
    )
    sides = {"ours": text_key(h["ours"]), "theirs": text_key(h["theirs"])}
    base_sig = text_key(h["base"])
    for cand in h["resolvers"][resolver]["candidates"]:
        kept = classify(c, split_lines(cand["text"]), lang)
        cand["kind"] = kept.kind
        cand["policy"] = cand.get("source") == POLICY_SOURCE or cand["explanation"].startswith(
            ("token-level merge", "a token-level merge")  # rows written before ``source``
        )
        cand["written"] = cand.get("source") == WRITTEN_SOURCE
        sig = text_key(cand["text"])
        cand["equals"] = next((k for k, v in sides.items() if v == sig), None)
        cand["extra"] = 0
        if kept.keeps_both and cand["equals"]:
            other = "theirs" if cand["equals"] == "ours" else "ours"
            if sides[other] != base_sig:  # the other side's edits are a proper subset
                smaller = classify(c, split_lines(h[other]), lang)
                cand["extra"] = (
                    smaller.ours_dropped if cand["equals"] == "ours" else smaller.theirs_dropped
                )
    return h


def features(h: dict[str, Any], c: dict[str, Any]) -> AnswerFeatures:
    """The candidate's :class:`AnswerFeatures`, as the live decision builds them."""
    return AnswerFeatures(c["kind"], c["policy"], c["equals"], h["n_hunks"] == 1, c["written"])


def _rule(name: str) -> Group:
    rule = RULES[name]
    return lambda h, c: rule(features(h, c))


def _subsumes(c: dict[str, Any], extra_size: bool) -> str:
    if c["kind"] != "both":
        return "drops"
    if not c["extra"]:
        return "both"
    if not extra_size:
        return "both-extra"
    return "both-extra-1" if c["extra"] <= 1 else "both-extra-2+"


#: The library's rules (what the pipeline can ship), then two measured only: a subsuming side's
#: extra edit, and its size (those need the other side classified, which the pipeline skips).
GROUPS: dict[str, Group] = {
    **{name: _rule(name) for name in RULES},
    "subsumes": lambda h, c: _subsumes(c, False),
    "extra-size": lambda h, c: _subsumes(c, True),
}


def best_per_group(hunks: list[dict[str, Any]], group: Group, resolver: str) -> dict[str, list]:
    """Per group: (confidence, correct) of each hunk's most confident syntax-valid candidate."""
    out: dict[str, list] = defaultdict(list)
    for h in hunks:
        best: dict[str, dict[str, Any]] = {}
        for c in h["resolvers"][resolver]["candidates"]:
            if not c["syntax_ok"]:
                continue
            g = group(h, c)
            if g not in best or c["confidence"] > best[g]["confidence"]:
                best[g] = c
        for g, c in best.items():
            out[g].append((c["confidence"], c["correct"]))
    return out


def fit_threshold(pairs: list[tuple[float, bool]], target: float, min_n: int) -> float | None:
    """The lowest confidence whose answers at or above it are ``target`` precise (None: none)."""
    pairs = sorted(pairs, key=lambda p: -p[0])
    best = None
    right = 0
    for n, (conf, ok) in enumerate(pairs, start=1):
        right += ok
        if n < len(pairs) and pairs[n][0] == conf:
            continue  # a threshold takes every answer of equal confidence
        if n >= min_n and right / n >= target:
            best = conf
    return best


def fit(
    hunks: list[dict[str, Any]], group: Group, resolver: str, targets: dict[str, float], min_n: int
) -> dict[str, float | None]:
    per = best_per_group(hunks, group, resolver)
    return {
        g: fit_threshold(pairs, targets["drops" if g == "drops" else "both"], min_n)
        for g, pairs in sorted(per.items())
    }


def decide(
    h: dict[str, Any], group: Group, thresholds: dict[str, float | None], resolver: str
) -> dict[str, Any] | None:
    """The candidate the decision rule applies (None: markers stay)."""
    for c in h["resolvers"][resolver]["candidates"]:
        t = thresholds.get(group(h, c))
        if t is not None and c["confidence"] >= t and c["syntax_ok"]:
            return c
    return None


def tally(results: list[tuple[dict[str, Any], dict[str, Any] | None]]) -> dict[str, Any]:
    """Coverage and precision overall, by kind, by language and by repository."""

    def metrics(rs: list) -> dict[str, Any]:
        applied = [c for _, c in rs if c is not None]
        right = sum(c["correct"] for c in applied)
        return {
            "hunks": len(rs),
            "applied": len(applied),
            "correct": right,
            "coverage": len(applied) / len(rs) if rs else 0.0,
            "precision": right / len(applied) if applied else 0.0,
        }

    by_lang: dict[str, list] = defaultdict(list)
    by_repo: dict[str, list] = defaultdict(list)
    for h, c in results:
        by_lang[h["lang"]].append((h, c))
        by_repo[h["repo"]].append((h, c))
    n = len(results)
    by_kind = {}
    for kind in KINDS:
        applied = [c for _, c in results if c is not None and c["kind"] == kind]
        right = sum(c["correct"] for c in applied)
        by_kind[kind] = {
            "applied": len(applied),
            "correct": right,
            "coverage": len(applied) / n if n else 0.0,
            "precision": right / len(applied) if applied else 0.0,
        }
    return {
        **metrics(results),
        "by_kind": by_kind,
        "by_lang": {k: metrics(v) for k, v in sorted(by_lang.items())},
        "by_repo": {k: metrics(v) for k, v in sorted(by_repo.items())},
    }


def held_out(
    hunks: list[dict[str, Any]], group: Group, resolver: str, targets: dict[str, float], min_n: int
) -> tuple[dict[str, Any], dict[str, dict[str, float | None]]]:
    """Leave one repository out: each repository decided with thresholds fitted without it."""
    results = []
    folds = {}
    for repo in sorted({h["repo"] for h in hunks}):
        thr = fit([h for h in hunks if h["repo"] != repo], group, resolver, targets, min_n)
        folds[repo] = thr
        results += [(h, decide(h, group, thr, resolver)) for h in hunks if h["repo"] == repo]
    return tally(results), folds


def load(rows: str, resolver: str, workers: int) -> list[dict[str, Any]]:
    """The prepared hunks, cached in ``ROWS.prepared.pkl.gz`` (refreshed when older)."""
    cache = Path(rows + ".prepared.pkl.gz")
    if cache.is_file() and cache.stat().st_mtime > Path(rows).stat().st_mtime:
        with gzip.open(cache, "rb") as f:
            return pickle.load(f)
    hunks = prepare(read_rows(rows), resolver, workers)
    with gzip.open(cache, "wb") as f:
        pickle.dump(hunks, f)
    return hunks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", required=True, help="splice eval --rows output (.jsonl.gz)")
    ap.add_argument("--resolver", default="auto")
    ap.add_argument("--target-both", type=float, default=0.96)
    ap.add_argument("--target-drops", type=float, default=0.97)
    ap.add_argument("--min-answers", type=int, default=20)
    ap.add_argument(
        "--rule", default="source-side-file", choices=sorted(RULES), help="the shipped rule"
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--one-threshold", type=float, default=0.85, help="today's (cross-check)")
    ap.add_argument("--write", help="calibration.json to update (its decision section only)")
    ap.add_argument("--report", help="write the full JSON report here")
    args = ap.parse_args()

    hunks = load(args.rows, args.resolver, args.workers)
    targets = {"both": args.target_both, "drops": args.target_drops}
    res = args.resolver
    # Before: the rule of the eval run (its applied answers), and one threshold for every kind
    # simulated (the cross-check of the simulation: with --allow-discard the two agree).
    before = tally(
        [
            (
                h,
                next(
                    (
                        c
                        for c in h["resolvers"][res]["candidates"]
                        if h["resolvers"][res]["applied"] == c["text"]
                    ),
                    None,
                ),
            )
            for h in hunks
        ]
    )
    one = {g: args.one_threshold for g in ("both", "drops")}
    check = tally([(h, decide(h, GROUPS["kind"], one, res)) for h in hunks])
    report: dict[str, Any] = {
        "hunks": len(hunks),
        "before": before,
        "simulated_one_threshold": check,
        "rules": {},
    }
    for name, group in GROUPS.items():
        ho, folds = held_out(hunks, group, res, targets, args.min_answers)
        fitted = fit(hunks, group, res, targets, args.min_answers)
        report["rules"][name] = {"held_out": ho, "folds": folds, "fitted": fitted}
    _print(report)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    if args.write:
        chosen = report["rules"][args.rule]
        fitted, ho = chosen["fitted"], chosen["held_out"]
        path = Path(args.write)
        calib = json.loads(path.read_text(encoding="utf-8"))
        if args.rule not in RULES:
            raise SystemExit(f"--write takes a rule the pipeline reads: {', '.join(RULES)}")
        keep = fitted.get("both") if args.rule == "kind" else fitted.get("both-model")
        calib["decision"] = {
            "keeps_both": keep,
            "drops_side": fitted.get("drops"),
            "rule": args.rule,
            "groups": {g: t for g, t in fitted.items() if g != "drops"},
            "targets": targets,
            "min_answers": args.min_answers,
            "fitted_on": f"{len(hunks)} located hunks of the {len(ho['by_repo'])} validation "
            "repositories (splice eval --split val --resolver auto --allow-discard --rows)",
            "command": f"python scripts/fit_decision.py --rows ROWS --rule {args.rule} "
            "--write calibration.json",
            "held_out": {
                "protocol": "leave one repository out: each repository's answers decided with "
                "thresholds fitted on the other 21",
                **{k: ho[k] for k in ("hunks", "applied", "coverage", "precision")},
                "by_kind": ho["by_kind"],
                "by_lang": ho["by_lang"],
                "folds_drops_side": sorted({str(f.get("drops")) for f in chosen["folds"].values()}),
            },
            "before": {
                "rule": f"one threshold {args.one_threshold} for every answer",
                **{k: check[k] for k in ("hunks", "applied", "coverage", "precision")},
                "by_kind": check["by_kind"],
            },
        }
        path.write_text(json.dumps(calib, indent=2) + "\n", encoding="utf-8")
        print(f"decision written to {path}")


def _print(report: dict[str, Any]) -> None:
    def line(label: str, m: dict[str, Any]) -> str:
        return (
            f"  {label:<14} {m.get('applied', 0):>5} applied  coverage {m['coverage']:6.1%}  "
            f"precision {m['precision']:6.1%}"
        )

    def block(title: str, m: dict[str, Any]) -> None:
        print(title)
        for k, v in [("all", m), *m["by_kind"].items(), *m["by_lang"].items()]:
            if k == "all" or v.get("applied") or v.get("hunks", 0) > 50:
                print(line(k, v))

    print(f"{report['hunks']} located hunks")
    block("the eval run's applied answers", report["before"])
    block("simulated, one threshold for every kind", report["simulated_one_threshold"])
    for name, r in report["rules"].items():
        fitted = ", ".join(f"{g} {t if t is None else round(t, 4)}" for g, t in r["fitted"].items())
        block(f"rule {name!r}, held out by repository; fitted on all: {fitted}", r["held_out"])


if __name__ == "__main__":
    main()
