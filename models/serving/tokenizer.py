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

from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

PAD, UNK, BOS, EOS, SEP = "<pad>", "<unk>", "<s>", "</s>", "<sep>"
#: Special tokens, in id order (``<pad>`` is 0).
SPECIAL_TOKENS = (PAD, UNK, BOS, EOS, SEP)

#: Pre-token boundaries: newline, horizontal whitespace run, word, run of other characters.
SPLIT_PATTERN = r"\r?\n|[^\S\r\n]+|[\p{L}\p{M}\p{N}_$]+|[^\s\p{L}\p{M}\p{N}_$]+"


def new_tokenizer() -> Tokenizer:
    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(SPLIT_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """The tokenizer saved by :func:`splice.models.training.tokenizer.train_tokenizer`."""
    return Tokenizer.from_file(str(path))
