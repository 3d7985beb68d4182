"""Training examples for the pattern classifier: labelled, encoded pieces of real conflict hunks.

For every line-level hunk of every record of a split whose human resolution is located in the
committed file (:func:`~splice.data.evaluation.locate_resolutions`):

- if a choice of one pattern per token conflict reproduces the resolution (the first combo of
  :func:`~splice.resolver.patterns.expressible`), one token-route example per token conflict; its
  label is the multi-hot of every pattern giving the same output as the combo's pattern there
  (patterns with equal outputs are equally right). Hunks whose token merge is clean and right
  give no token-route example (counted as ``clean``);
- and, independently, if patterns applied to the hunk as a whole reproduce it, one hunk-route
  example labelled with all of them: the resolver asks both routes about every hunk, so both are
  trained on every hunk they can express;
- a hunk neither route expresses is counted as ``inexpressible``; unlocated hunks as
  ``not_located``.

Arrays (N examples): ``input_ids``, ``edit_ids``, ``attention_mask`` (N, 4, L) int32 (convert to
int64 per batch), ``labels`` (N, 10) uint8, ``route`` (N,) uint8 (0 token, 1 hunk), ``index``
(N,) int16 (token conflict index, -1 for the hunk route), ``lang``, ``repo``, ``hunk_key``
(``record id#hunk index``) (N,) str, and ``meta`` (a JSON string: split, max_len, counts).

    python -m splice.models.training.examples --data ../shared/data/merges --split train \\
        --out runs/train.npz --tokenizer models/shipped/tokenizer.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from splice.models.serving.encoding import NUM_LABELS, PATTERNS, encode_piece, multi_hot
from splice.models.serving.pieces import Route, hunk_piece, token_pieces
from splice.resolver.chunks import split_lines
from splice.resolver.patterns import apply, expressible, label
from tokenizers import Tokenizer

Arrays = dict[str, np.ndarray]
#: Hunk outcomes counted per language.
OUTCOMES = ("hunks", "not_located", "clean", "token", "hunk", "inexpressible", "error")


def record_examples(
    record: dict[str, Any], tokenizer: Tokenizer, max_len: int
) -> tuple[list[dict[str, Any]], Counter[str]]:
    """The examples of one record (one dict per example) and its hunk outcome counts."""
    from splice.resolver.pipeline import find_hunks

    from splice.data.evaluation import locate_resolutions

    lang = record.get("lang") or "unknown"
    counts: Counter[str] = Counter()
    b, o, t = (split_lines(record[k]) for k in ("base", "ours", "theirs"))
    chunks, reports = find_hunks(b, o, t, lang, record.get("path"))
    truths = locate_resolutions(chunks, split_lines(record["merged"]))
    out: list[dict[str, Any]] = []
    for report, truth in zip(reports, truths, strict=True):
        counts["hunks"] += 1
        if truth is None:
            counts["not_located"] += 1
            continue
        hunk = report.hunk
        key = f"{record['id']}#{report.index}"
        ex = expressible(hunk.conflict, lang, "".join(truth))
        labelled: list[tuple[Any, np.ndarray]] = []
        if ex.token_combos and ex.token_combos[0]:
            combo = ex.token_combos[0]
            pieces = token_pieces(hunk)
            if len(pieces) != len(combo):
                raise RuntimeError(f"{key}: {len(pieces)} pieces, combo of {len(combo)}")
            for piece, pat in zip(pieces, combo, strict=True):
                same = label(piece.conflict, apply(pat, piece.conflict))
                labelled.append((piece, multi_hot(same)))
            counts["token"] += 1
        elif ex.token_combos:
            counts["clean"] += 1
        if ex.hunk_patterns:  # every hunk, as the resolver asks the hunk route about every hunk
            labelled.append((hunk_piece(hunk), multi_hot(ex.hunk_patterns)))
            counts["hunk"] += 1
        if not ex.token_combos and not ex.hunk_patterns:
            counts["inexpressible"] += 1
            continue
        for piece, hot in labelled:
            enc = encode_piece(tokenizer, piece.conflict, piece.prefix, piece.suffix, max_len)
            out.append(
                {
                    "input_ids": enc.input_ids,
                    "edit_ids": enc.edit_ids,
                    "attention_mask": enc.attention_mask,
                    "labels": hot,
                    "route": int(piece.route),
                    "index": piece.index,
                    "lang": lang,
                    "repo": record.get("repo", ""),
                    "hunk_key": key,
                }
            )
    return out, counts


_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer_json: str, max_len: int) -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _WORKER["tok"] = Tokenizer.from_str(tokenizer_json)
    _WORKER["max_len"] = max_len


def _work(record: dict[str, Any]) -> tuple[list[dict[str, Any]], Counter[str], str]:
    lang = record.get("lang") or "unknown"
    try:
        examples, counts = record_examples(record, _WORKER["tok"], _WORKER["max_len"])
    except RecursionError:  # pathological input: skip the record, but say so
        return [], Counter(error=1), lang
    return examples, counts, lang


def _results(records: Iterator[dict[str, Any]], tokenizer: Tokenizer, max_len: int, workers: int):
    if workers <= 1:
        _init_worker(tokenizer.to_str(), max_len)
        yield from map(_work, records)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork after the tokenizer's threads ran
    with ctx.Pool(workers, _init_worker, (tokenizer.to_str(), max_len)) as pool:
        yield from pool.imap(_work, records, chunksize=8)


def build_examples(
    data_dir: str | Path,
    split: str,
    tokenizer: Tokenizer,
    max_len: int = 192,
    limit: int | None = None,
    per_repo: int | None = None,
    workers: int = 1,
    verbose: bool = True,
) -> Arrays:
    """Encoded, labelled examples of every located hunk of ``split`` (see module doc)."""
    from splice.data.dataset import iter_records

    records = iter_records(data_dir, split=split, limit=limit, per_repo_limit=per_repo)
    rows: list[dict[str, Any]] = []
    counts: dict[str, Counter[str]] = {}
    n_records = 0
    for examples, c, lang in _results(records, tokenizer, max_len, workers):
        rows.extend(examples)
        counts.setdefault(lang, Counter()).update(c)
        n_records += 1
    arrays = _stack(rows, max_len)
    meta = {
        "split": split,
        "max_len": max_len,
        "records": n_records,
        "hunks": {lang: dict(c) for lang, c in sorted(counts.items())},
        "classes": [p.value for p in PATTERNS],
    }
    arrays["meta"] = np.array(json.dumps(meta))
    if verbose:
        print(summary(arrays))
    return arrays


def _stack(rows: list[dict[str, Any]], max_len: int) -> Arrays:
    n = len(rows)
    out: Arrays = {}
    for name in ("input_ids", "edit_ids", "attention_mask"):
        arr = np.zeros((n, 4, max_len), dtype=np.int32)
        for i, r in enumerate(rows):
            arr[i] = r[name]
        out[name] = arr
    out["labels"] = (
        np.stack([r["labels"] for r in rows]) if n else np.zeros((0, NUM_LABELS), np.uint8)
    )
    out["route"] = np.array([r["route"] for r in rows], dtype=np.uint8)
    out["index"] = np.array([r["index"] for r in rows], dtype=np.int16)
    for name in ("lang", "repo", "hunk_key"):
        out[name] = np.array([r[name] for r in rows], dtype=str)
    return out


def summary(arrays: Arrays) -> str:
    """Hunk outcomes per language, examples per language and route, and examples per class."""
    meta = json.loads(str(arrays["meta"]))
    lines = [f"split {meta['split']}: {meta['records']} records, {len(arrays['route'])} examples"]
    lines.append("lang | " + " | ".join(OUTCOMES) + " | token ex | hunk ex")
    total: Counter[str] = Counter()
    for lang, c in meta["hunks"].items():
        mine = arrays["lang"] == lang
        n_tok = int(np.sum(mine & (arrays["route"] == Route.TOKEN)))
        n_hunk = int(np.sum(mine & (arrays["route"] == Route.HUNK)))
        total.update(c)
        total.update({"token ex": n_tok, "hunk ex": n_hunk})
        cells = [str(c.get(k, 0)) for k in OUTCOMES]
        lines.append(f"{lang} | " + " | ".join(cells) + f" | {n_tok} | {n_hunk}")
    cells = [str(total.get(k, 0)) for k in (*OUTCOMES, "token ex", "hunk ex")]
    lines.append("all | " + " | ".join(cells))
    labels = arrays["labels"].astype(bool)
    lines.append("class | token route | hunk route | (label sets count each member)")
    for i, p in enumerate(PATTERNS):
        n_tok = int(np.sum(labels[:, i] & (arrays["route"] == Route.TOKEN)))
        n_hunk = int(np.sum(labels[:, i] & (arrays["route"] == Route.HUNK)))
        lines.append(f"{p.value} | {n_tok} | {n_hunk}")
    multi = int(np.sum(labels.sum(axis=1) > 1))
    lines.append(f"examples with more than one right class: {multi}")
    return "\n".join(lines)


def save_examples(path: str | Path, arrays: Arrays) -> None:
    """Write ``arrays`` to a compressed ``.npz``."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)


def load_examples(path: str | Path) -> Arrays:
    """Read arrays written by :func:`save_examples` (no pickles)."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def main(argv: list[str] | None = None) -> None:
    from splice.models.serving.tokenizer import load_tokenizer

    ap = argparse.ArgumentParser(description="Build encoded, labelled pieces of a split.")
    ap.add_argument("--data", default="../shared/data/merges")
    ap.add_argument("--split", choices=("train", "val"), default="train")
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer", default="models/shipped/tokenizer.json")
    ap.add_argument("--max-len", type=int, default=192)
    ap.add_argument("--limit", type=int, default=None, help="records, round-robin over repos")
    ap.add_argument("--per-repo", type=int, default=None)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    arrays = build_examples(
        args.data,
        args.split,
        load_tokenizer(args.tokenizer),
        args.max_len,
        limit=args.limit,
        per_repo=args.per_repo,
        workers=args.workers,
    )
    save_examples(args.out, arrays)
    print(f"wrote {args.out} in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
