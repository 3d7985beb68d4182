"""The subword vocabulary of the merge-pattern classifier: a byte-level BPE over source code.

Byte-level, so every text encodes without ``<unk>`` and ``decode(encode(text)) == text``.
Before BPE, text is split at the boundaries of Splice's code tokens (see
:mod:`splice.resolver.tokenize`): newlines, runs of horizontal whitespace, words (letters,
digits, ``_``, ``$``) and runs of other characters are separate pre-tokens. Subwords therefore
never cross a whitespace/word/punctuation boundary, so a code token's subwords are the same
whether it is encoded alone (the conflict sides) or inside running text (the context).

Vocabulary size: 8,192. The classifier is small (hidden size about 192), so the embedding table
costs 8,192 x 192 = 1.6M parameters, about as much as a four-layer encoder of that width. Measured
subwords per code token on 100 validation files (BPE trained on 1,000 training files): 4,096 ->
1.38, 8,192 -> 1.30, 16,384 -> 1.26. Doubling to 16,384 would double the embeddings (3.1M) to
shorten sequences by 3%; halving to 4,096 lengthens them by 6%. The shipped tokenizer (3,000
files) gives 1.29 on 200 validation files (``models/shipped/TOKENIZER.md``).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

PAD, UNK, BOS, EOS, SEP = "<pad>", "<unk>", "<s>", "</s>", "<sep>"
#: Special tokens, in id order (``<pad>`` is 0).
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, SEP)

#: Pre-token boundaries: newline, horizontal whitespace run, word, run of other characters.
SPLIT_PATTERN = r"\r?\n|[^\S\r\n]+|[\p{L}\p{M}\p{N}_$]+|[^\s\p{L}\p{M}\p{N}_$]+"


def _new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def sample_texts(
    data_dir: str | Path,
    split: str = "train",
    max_files: int = 3000,
    side: str = "ours",
    max_chars: int = 200_000,
) -> Iterator[str]:
    """One side of up to ``max_files`` files of ``split``, round-robin over repositories."""
    from splice.dataset import iter_records

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
    tok = _new_tokenizer()
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


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved by :func:`train_tokenizer`."""
    return Tokenizer.from_file(str(path))


def subwords_per_token(
    tok: Tokenizer, data_dir: str | Path, split: str = "val", max_files: int = 200
) -> tuple[float, int]:
    """Average subwords per code token (:func:`~splice.resolver.tokenize.tokenize`), and the
    number of code tokens measured, over the ours side of ``max_files`` files of ``split``."""
    from splice.resolver.tokenize import tokenize

    from splice.dataset import iter_records

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
