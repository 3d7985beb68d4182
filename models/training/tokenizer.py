"""Training the byte-level BPE of the classifier (see :mod:`splice.models.serving.tokenizer`).

python -m splice.models.training.tokenizer --out models/shipped/tokenizer.json
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from splice.models.serving.tokenizer import SPECIAL_TOKENS, load_tokenizer, new_tokenizer
from tokenizers import Tokenizer, pre_tokenizers, trainers

__all__ = ["load_tokenizer", "sample_texts", "subwords_per_token", "train_tokenizer"]


def sample_texts(
    data_dir: str | Path,
    split: str = "train",
    max_files: int = 3000,
    side: str = "ours",
    max_chars: int = 200_000,
) -> Iterator[str]:
    """One side of up to ``max_files`` files of ``split``, round-robin over repositories."""
    from splice.data.dataset import iter_records

    for rec in iter_records(data_dir, split=split, limit=max_files):
        yield rec[side][:max_chars]


def train_tokenizer(
    data_dir: str | Path,
    out_path: str | Path | None,
    vocab_size: int = 8192,
    *,
    max_files: int = 3000,
    min_frequency: int = 2,
    split: str = "train",
) -> Tokenizer:
    """Train the byte-level BPE on the ours side of ``max_files`` files of ``split``.

    Writes ``out_path`` (a ``tokenizer.json``) when given; returns the tokenizer.
    """
    tok = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(sample_texts(data_dir, split, max_files), trainer=trainer)
    for i, name in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(name) != i:
            raise RuntimeError(f"special token {name} got id {tok.token_to_id(name)}, not {i}")
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(out_path), pretty=False)
    return tok


def subwords_per_token(
    tok: Tokenizer, data_dir: str | Path, split: str = "val", max_files: int = 200
) -> tuple[float, int]:
    """Average subwords per code token (:func:`~splice.resolver.tokenize.tokenize`), and the
    number of code tokens measured, over the ours side of ``max_files`` files of ``split``."""
    from splice.resolver.tokenize import tokenize

    from splice.data.dataset import iter_records

    n_tokens = n_sub = 0
    for rec in iter_records(data_dir, split=split, limit=max_files):
        code = tokenize(rec["ours"][:50_000], rec.get("lang"))
        if not code:
            continue
        enc = tok.encode(code, is_pretokenized=True, add_special_tokens=False)
        n_tokens += len(code)
        n_sub += len(enc.ids)
    return (n_sub / n_tokens if n_tokens else 0.0), n_tokens


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Train the byte-level BPE of the classifier.")
    ap.add_argument("--data", default="../shared/data/merges")
    ap.add_argument("--out", default="models/shipped/tokenizer.json")
    ap.add_argument("--vocab-size", type=int, default=8192)
    ap.add_argument("--max-files", type=int, default=3000)
    ap.add_argument("--eval-files", type=int, default=200)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    tok = train_tokenizer(args.data, args.out, args.vocab_size, max_files=args.max_files)
    elapsed = time.perf_counter() - t0
    print(f"trained vocab {tok.get_vocab_size()} on {args.max_files} files in {elapsed:.1f} s")
    ratio, n = subwords_per_token(tok, args.data, "val", args.eval_files)
    print(f"subwords per code token (val, {args.eval_files} files, {n} tokens): {ratio:.3f}")


if __name__ == "__main__":
    main()
