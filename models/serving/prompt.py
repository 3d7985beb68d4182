"""The code language model's text formats: fill-in-the-middle and the resolution task.

One definition for training (:mod:`splice.models.training`) and serving, so the model is asked
exactly what it learned. Tokens are the project's byte-level BPE
(:mod:`splice.models.serving.tokenizer`) plus :data:`LM_SPECIAL_TOKENS`.

- Fill-in-the-middle (Bavarian et al. 2022), both orders:
  prefix-suffix-middle ``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>M<|endoftext|>`` and
  suffix-prefix-middle ``<|fim_suffix|>S<|fim_prefix|>P<|fim_middle|>M<|endoftext|>``.
- The resolution task (MergeGen's formulation as infilling): the file before and after the
  conflict as prefix and suffix, then the conflict as diff3 shows it, then the resolved lines as
  the middle: ``<|fim_prefix|>P<|fim_suffix|>S<|ours|>O<|base|>B<|theirs|>T<|fim_middle|>M
  <|endoftext|>``. The conflict sits last, next to the middle, where a small model attends best.

The prompt of a resolution holds as much of the file as fits ``budget`` tokens: the conflict
first (its sides cut from the end when they alone pass :data:`CONFLICT_SHARE` of the budget),
then the lines nearest the conflict, two thirds of the rest before it and the remainder after
(each side taking what the other leaves).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from splice.resolver.chunks import Chunk, Stable
from tokenizers import AddedToken, Tokenizer

FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE = "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"
END = "<|endoftext|>"
OURS, BASE, THEIRS = "<|ours|>", "<|base|>", "<|theirs|>"
#: Added to the classifier's vocabulary, in this order (ids 8192.. with the shipped tokenizer).
LM_SPECIAL_TOKENS = (FIM_PREFIX, FIM_SUFFIX, FIM_MIDDLE, END, OURS, BASE, THEIRS)
#: The prompt's default size in tokens.
DEFAULT_BUDGET = 1024
#: The most of the budget the conflict's three sides may take together.
CONFLICT_SHARE = 0.75
#: Characters of context read per token of budget (code averages about 3.5 per token).
CHARS_PER_TOKEN = 8


@dataclass(frozen=True)
class SpecialIds:
    """The ids of :data:`LM_SPECIAL_TOKENS`."""

    prefix: int
    suffix: int
    middle: int
    end: int
    ours: int
    base: int
    theirs: int


class LMTokenizer:
    """The language model's tokens: the classifier's BPE for text, :data:`LM_SPECIAL_TOKENS`
    after its vocabulary.

    Text is encoded without the special tokens, so a file that contains ``<|endoftext|>`` is
    read as those characters, never as a marker. :meth:`to_hf` gives the same vocabulary with
    the special tokens added, the ``tokenizer.json`` saved beside the model for transformers.
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        data = json.loads(tokenizer.to_str())
        data["added_tokens"] = [
            t for t in data.get("added_tokens", []) if t["content"] not in LM_SPECIAL_TOKENS
        ]
        self.text = Tokenizer.from_str(json.dumps(data))
        known = [tokenizer.token_to_id(t) for t in LM_SPECIAL_TOKENS]
        n = self.text.get_vocab_size()
        if all(i is None for i in known):
            known = list(range(n, n + len(LM_SPECIAL_TOKENS)))
        elif any(i is None for i in known):
            raise ValueError("the tokenizer has some of the language model's tokens, not all")
        self.special = SpecialIds(*known)  # type: ignore[arg-type]
        self.vocab_size = max(n, *known) + 1

    @classmethod
    def from_file(cls, path: str | Path) -> LMTokenizer:
        return cls(Tokenizer.from_file(str(path)))

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self.text.encode(text, add_special_tokens=False).ids if text else []

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``; special tokens are left out."""
        n = self.text.get_vocab_size()
        return self.text.decode([i for i in ids if i < n], skip_special_tokens=False)

    def to_hf(self) -> Tokenizer:
        """The vocabulary with the special tokens added (to save as ``tokenizer.json``)."""
        tok = Tokenizer.from_str(self.text.to_str())
        tok.add_special_tokens(
            [AddedToken(t, special=True, normalized=False) for t in LM_SPECIAL_TOKENS]
        )
        return tok


def fim_ids(
    tok: LMTokenizer, prefix: str, middle: str, suffix: str, *, spm: bool = False
) -> list[int]:
    """One fill-in-the-middle training sequence, ending with the end token."""
    s = tok.special
    p, m, x = tok.encode(prefix), tok.encode(middle), tok.encode(suffix)
    if spm:
        return [s.suffix, *x, s.prefix, *p, s.middle, *m, s.end]
    return [s.prefix, *p, s.suffix, *x, s.middle, *m, s.end]


def _tail(tok: LMTokenizer, text: str, n: int) -> list[int]:
    """The last ``n`` tokens of ``text``, starting at a line start when the text is cut."""
    if n <= 0 or not text:
        return []
    window = text[-n * CHARS_PER_TOKEN :]
    if len(window) < len(text):
        cut = window.find("\n")
        window = window[cut + 1 :] if cut >= 0 else window
    ids = tok.encode(window)
    return ids[-n:] if len(ids) > n else ids


def _head(tok: LMTokenizer, text: str, n: int) -> list[int]:
    """The first ``n`` tokens of ``text``."""
    if n <= 0 or not text:
        return []
    return tok.encode(text[: n * CHARS_PER_TOKEN])[:n]


def _around(tok: LMTokenizer, before: str, after: str, room: int) -> tuple[list[int], list[int]]:
    """The end of ``before`` and the start of ``after`` in ``room`` tokens: two thirds of the
    room before, the rest after, each side taking what the other leaves."""
    pre = _tail(tok, before, room - room // 3)
    suf = _head(tok, after, room - len(pre))
    if len(pre) + len(suf) < room:  # after is short: more before
        pre = _tail(tok, before, room - len(suf))
    return pre, suf


def _fit(parts: Sequence[list[int]], room: int) -> list[list[int]]:
    """Cut ``parts`` from their ends to at most ``room`` tokens together: every part is cut to
    one length, the largest that fits, so a short part is kept whole."""
    lens = [len(p) for p in parts]
    if sum(lens) <= room:
        return [list(p) for p in parts]
    lo, hi = 0, max(lens)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if sum(min(n, mid) for n in lens) <= room:
            lo = mid
        else:
            hi = mid - 1
    return [list(p[:lo]) for p in parts]


def conflict_contexts(chunks: Sequence[Chunk]) -> list[tuple[str, str]]:
    """Per conflict of a line merge's ``chunks``: the merged file's text before and after it,
    as the resolution prompt reads it in training and in serving (stable lines; the other
    conflicts as ours)."""
    lines = [c.units if isinstance(c, Stable) else c.ours for c in chunks]
    starts, n = [], 0
    for part in lines:
        starts.append(n)
        n += len(part)
    flat = [line for part in lines for line in part]
    return [
        ("".join(flat[: starts[i]]), "".join(flat[starts[i] + len(lines[i]) :]))
        for i, chunk in enumerate(chunks)
        if not isinstance(chunk, Stable)
    ]


def resolution_prompt(
    tok: LMTokenizer,
    before: str,
    after: str,
    ours: str,
    base: str,
    theirs: str,
    *,
    budget: int = DEFAULT_BUDGET,
) -> list[int]:
    """The prompt that asks for the resolved lines of one conflict (module doc); at most
    ``budget`` tokens, ending with ``<|fim_middle|>``."""
    s = tok.special
    room = budget - 6  # prefix, suffix, ours, base, theirs, middle markers
    sides = [tok.encode(ours), tok.encode(base), tok.encode(theirs)]
    o, b, t = _fit(sides, min(room, int(budget * CONFLICT_SHARE)))
    pre, suf = _around(tok, before, after, room - len(o) - len(b) - len(t))
    return [s.prefix, *pre, s.suffix, *suf, s.ours, *o, s.base, *b, s.theirs, *t, s.middle]


def infill_prompt(tok: LMTokenizer, prefix: str, suffix: str, budget: int) -> list[int]:
    """``<|fim_prefix|>P<|fim_suffix|>S<|fim_middle|>`` with at most ``budget`` tokens of the
    text around the middle (split as the resolution prompt's)."""
    s = tok.special
    pre, suf = _around(tok, prefix, suffix, max(budget - 3, 0))
    return [s.prefix, *pre, s.suffix, *suf, s.middle]


def resolution_ids(
    tok: LMTokenizer,
    before: str,
    after: str,
    ours: str,
    base: str,
    theirs: str,
    resolved: str,
    *,
    budget: int = DEFAULT_BUDGET,
) -> tuple[list[int], int]:
    """One resolution training sequence and where its middle starts (the loss is taken there)."""
    prompt = resolution_prompt(tok, before, after, ours, base, theirs, budget=budget)
    return [*prompt, *tok.encode(resolved), tok.special.end], len(prompt)
