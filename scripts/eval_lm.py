"""Measure the code language model on validation code: bits per byte next to ``xz -9``, and
single-line infilling exact match.

Files: the human-merged file of validation records (repositories never trained on), round-robin
over repositories, one file per record, deduplicated. For each file:

- bits per byte under the model (:meth:`splice.models.serving.lm.CodeLM.text_loss`, windows of
  the model's positions) and under ``xz -9e`` (``lzma``; per file, so its ~60-byte container counts
  against small files, and over each language's files concatenated, the fairer number);
- one random non-blank line (seeded) masked and infilled greedily from the rest of the file (the
  prompt's budget split as :func:`splice.models.serving.prompt.infill_prompt` does); exact match
  ignoring the line's surrounding whitespace.

Pooled over files and averaged over repositories, per language and overall.

    python scripts/eval_lm.py --files 120 --json runs/lm/eval.json [--model DIR]
"""

from __future__ import annotations

import argparse
import json
import lzma
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from splice.models.serving.lm import CodeLM, GenerateOptions

from splice.data.dataset import iter_records

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"


def xz_bits(data: bytes) -> float:
    return 8.0 * len(lzma.compress(data, preset=9 | lzma.PRESET_EXTREME))


def sample_files(data: Path, n: int, max_bytes: int) -> list[dict[str, Any]]:
    seen: set[int] = set()
    out = []
    for rec in iter_records(data, split="val", limit=n * 4, per_repo_limit=max(n // 10, 4)):
        text = rec["merged"]
        if not text.strip() or len(text.encode("utf-8")) > max_bytes or hash(text) in seen:
            continue
        seen.add(hash(text))
        out.append({"repo": rec["repo"], "lang": rec["lang"], "path": rec["path"], "text": text})
        if len(out) == n:
            break
    return out


def infill_one(lm: CodeLM, text: str, rng: random.Random, max_new: int) -> dict[str, Any]:
    lines = text.splitlines(keepends=True)
    candidates = [i for i, line in enumerate(lines) if line.strip() and len(line) < 200]
    if not candidates:
        return {"skipped": True}
    i = rng.choice(candidates)
    prefix, middle, suffix = "".join(lines[:i]), lines[i], "".join(lines[i + 1 :])
    got = lm.infill(prefix, suffix, GenerateOptions(beams=1, max_new_tokens=max_new))
    first = got.splitlines()[0] if got.strip() else ""
    return {"line": i + 1, "want": middle, "got": got, "exact": first.strip() == middle.strip()}


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def pooled(rs: list[dict[str, Any]]) -> dict[str, Any]:
        nbytes = sum(r["bytes"] for r in rs)
        infills = [r["infill"]["exact"] for r in rs if not r["infill"].get("skipped")]
        concat = "".join(r["text"] for r in rs).encode("utf-8")
        return {
            "files": len(rs),
            "bytes": nbytes,
            "tokens": sum(r["tokens"] for r in rs),
            "bits_per_byte": sum(r["bits"] for r in rs) / nbytes,
            "xz_bits_per_byte_per_file": sum(r["xz_bits"] for r in rs) / nbytes,
            "xz_bits_per_byte_concatenated": xz_bits(concat) / len(concat),
            "infill_exact": sum(infills) / len(infills) if infills else 0.0,
            "infill_n": len(infills),
        }

    by_lang: dict[str, list] = defaultdict(list)
    by_repo: dict[str, list] = defaultdict(list)
    for r in rows:
        by_lang[r["lang"]].append(r)
        by_repo[r["repo"]].append(r)
    repos = {k: pooled(v) for k, v in sorted(by_repo.items())}
    keys = ("bits_per_byte", "xz_bits_per_byte_per_file", "infill_exact")
    return {
        "pooled": pooled(rows),
        "mean_over_repositories": {k: sum(r[k] for r in repos.values()) / len(repos) for k in keys},
        "by_lang": {k: pooled(v) for k, v in sorted(by_lang.items())},
        "by_repo": repos,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="model folder (default: the shipped LM)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--files", type=int, default=120)
    ap.add_argument("--max-bytes", type=int, default=40_000)
    ap.add_argument("--max-new", type=int, default=48, help="tokens generated per infill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    lm = CodeLM(args.model)
    rng = random.Random(args.seed)
    files = sample_files(args.data, args.files, args.max_bytes)
    t0 = time.perf_counter()
    rows = []
    for k, f in enumerate(files, start=1):
        loss = lm.text_loss(f["text"])
        data = f["text"].encode("utf-8")
        rows.append(
            {
                **f,
                "bytes": len(data),
                "tokens": loss.tokens,
                "bits": loss.bits,
                "xz_bits": xz_bits(data),
                "infill": infill_one(lm, f["text"], rng, args.max_new),
            }
        )
        if k % 20 == 0:
            print(f"{k}/{len(files)} files, {time.perf_counter() - t0:.0f} s", flush=True)
    report = summarize(rows)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["command"] = "python scripts/eval_lm.py " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None
    )
    p = report["pooled"]
    print(
        f"{p['files']} files, {p['tokens']} tokens: {p['bits_per_byte']:.3f} bits/byte "
        f"(xz -9e: {p['xz_bits_per_byte_per_file']:.3f} per file, "
        f"{p['xz_bits_per_byte_concatenated']:.3f} concatenated); "
        f"single-line infill exact {p['infill_exact']:.1%} of {p['infill_n']}"
    )
    for lang, m in report["by_lang"].items():
        print(
            f"  {lang:<11} {m['files']:>4} files  {m['bits_per_byte']:.3f} bits/byte  "
            f"xz {m['xz_bits_per_byte_concatenated']:.3f}  infill {m['infill_exact']:.1%}"
        )
    mean = report["mean_over_repositories"]
    print(
        f"mean over {len(report['by_repo'])} repositories: {mean['bits_per_byte']:.3f} bits/byte, "
        f"infill {mean['infill_exact']:.1%}"
    )
    if args.json:
        for r in rows:
            r.pop("text")
        report["rows"] = rows
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
