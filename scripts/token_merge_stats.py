"""How far the token-level merge gets on real line-level conflict hunks (prints a small report).

For a round-robin sample of records from the merge shards: line-level diff3 hunks (from
``splice.resolver.linemerge`` when present, else ``git merge-file -p --diff3``), then the token
merge of each hunk. Reports hunks resolved completely by the token merge, token conflicts left per
hunk, and, for hunks whose human resolution can be located in the committed file, how often the
token merge is right and how often patterns can express the resolution. Also how often the syntax
check would reject the human-committed file.

    python scripts/token_merge_stats.py --limit 300
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

from splice.resolver.chunks import Chunk, Conflict, split_lines
from splice.resolver.patterns import Pattern, expressible
from splice.resolver.syntax import SyntaxCheck
from splice.resolver.tokenmerge import Tokenizer, merge_hunk, render

from splice.data.dataset import iter_records
from splice.data.evaluation import locate_resolutions, normalize

_FALLBACK = re.compile(r"\w+|[ \t]+|\r?\n|[^\w\s]|\s")


def _regex_tokenize(text: str, lang: str | None) -> list[str]:
    return _FALLBACK.findall(text)


def pick_tokenizer() -> tuple[Tokenizer, str]:
    try:
        from splice.resolver.tokenize import tokenize
    except ImportError:
        return _regex_tokenize, "regex fallback"
    return tokenize, "splice.resolver.tokenize"


def line_chunks(base: str, ours: str, theirs: str) -> list[Chunk]:
    """diff3 line chunks of a file merge."""
    try:
        from splice.resolver.linemerge import merge_lines
    except ImportError:
        pass
    else:
        return merge_lines(split_lines(base), split_lines(ours), split_lines(theirs), style="diff3")
    from splice.resolver.markers import parse

    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            p = Path(tmp) / name
            p.write_text(text, encoding="utf-8", newline="")
            paths.append(str(p))
        proc = subprocess.run(
            ["git", "merge-file", "-p", "--diff3", *paths],
            capture_output=True,
            text=True,
            encoding="utf-8",
            newline="",
            check=False,
        )
    return parse(proc.stdout).to_chunks()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="/work/shared/data/merges")
    ap.add_argument("--limit", type=int, default=300, help="records (files) to sample")
    ap.add_argument("--per-repo", type=int, default=5)
    ap.add_argument("--lang", action="append", help="only these languages (repeatable)")
    ap.add_argument("--no-syntax", action="store_true", help="skip the syntax-check statistic")
    args = ap.parse_args()

    tokenizer, tok_name = pick_tokenizer()
    t0 = time.perf_counter()
    files = hunks = located = 0
    k_hist: Counter[int] = Counter()
    clean_located = clean_correct = 0
    expr_token = expr_hunk = expr_any = 0
    k1_labels: Counter[str] = Counter()
    k1_located = k1_labelled = 0
    syntax_checked = syntax_rejected = 0
    merge_seconds = slowest = 0.0
    k1_primary: Counter[str] = Counter()

    records = iter_records(
        args.data, langs=args.lang, limit=args.limit, per_repo_limit=args.per_repo
    )
    for rec in records:
        files += 1
        lang = rec.get("lang")
        chunks = line_chunks(rec["base"], rec["ours"], rec["theirs"])
        truths = locate_resolutions(chunks, split_lines(rec["merged"]))
        line_conflicts = [c for c in chunks if isinstance(c, Conflict)]
        for conflict, truth in zip(line_conflicts, truths, strict=True):
            hunks += 1
            t = time.perf_counter()
            tchunks = merge_hunk(conflict, lang, tokenizer)
            took = time.perf_counter() - t
            merge_seconds += took
            slowest = max(slowest, took)
            toks = [c for c in tchunks if isinstance(c, Conflict)]
            k_hist[len(toks)] += 1
            if truth is None:
                continue
            located += 1
            resolution = "".join(truth)
            if not toks:
                clean_located += 1
                clean_correct += normalize(render(tchunks)) == normalize(resolution)
            e = expressible(conflict, lang, resolution, tokenizer=tokenizer)
            expr_token += bool(e.token_combos)
            expr_hunk += bool(e.hunk_patterns)
            expr_any += e.expressible
            if len(toks) == 1:
                k1_located += 1
                fits = [p for combo in e.token_combos for p in combo]
                if fits:
                    k1_labelled += 1
                    for p in set(fits):
                        k1_labels[p.value] += 1
                    k1_primary[min(fits, key=list(Pattern).index).value] += 1
        if not args.no_syntax and lang:
            check = SyntaxCheck(rec["base"], rec["ours"], rec["theirs"], lang)
            if check.lang is not None:
                syntax_checked += 1
                syntax_rejected += check.adds_parse_error(rec["merged"])

    def pct(a: int, b: int) -> str:
        return f"{a}/{b} ({100 * a / b:.1f}%)" if b else f"{a}/0"

    print(f"tokenizer: {tok_name}; files: {files}; line-level hunks: {hunks}")
    print(f"token merge resolves completely: {pct(k_hist[0], hunks)}")
    print(
        "token conflicts left per hunk: " + ", ".join(f"{k}: {k_hist[k]}" for k in sorted(k_hist))
    )
    multi = sum(v for k, v in k_hist.items() if k > 1)
    print(f"hunks with more than one token conflict: {pct(multi, hunks)}")
    print(f"located human resolutions: {pct(located, hunks)}")
    print(f"clean token merge equals the human resolution: {pct(clean_correct, clean_located)}")
    print(f"  (= accuracy of token merge alone over located hunks: {pct(clean_correct, located)})")
    print(f"expressible by token patterns: {pct(expr_token, located)}")
    print(f"expressible by a hunk-level pattern: {pct(expr_hunk, located)}")
    print(f"expressible either way: {pct(expr_any, located)}")
    print(f"hunks with exactly one token conflict, labelled: {pct(k1_labelled, k1_located)}")
    print("  patterns that fit (a hunk counts once for every pattern that fits):")
    for name, n in k1_labels.most_common():
        print(f"  {name}: {pct(n, k1_labelled)}")
    print("  first fitting pattern in enum order (one per hunk):")
    for name, n in k1_primary.most_common():
        print(f"  {name}: {pct(n, k1_labelled)}")
    if syntax_checked:
        print(
            f"human merged file flagged as adding a parse error: "
            f"{pct(syntax_rejected, syntax_checked)}"
        )
    total = time.perf_counter() - t0
    print(f"token-merge time: {merge_seconds:.2f} s (max {slowest:.3f} s); total {total:.1f} s")


if __name__ == "__main__":
    main()
