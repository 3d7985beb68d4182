"""MergeBERT's input for one piece: four aligned subword sequences with edit types.

For a piece (a :class:`Conflict` of code tokens, with the text before and after it) the four
sequences are, in this order:

- ``a|o``: the ours tokens, each tagged by the diff base->ours (equal, insert or replace);
- ``o|a``: the base tokens, tagged by the same diff (equal, delete or replace);
- ``b|o``: the theirs tokens, tagged by the diff base->theirs;
- ``o|b``: the base tokens, tagged by that diff.

Each code token is split into subwords that inherit its edit type, and each sequence is laid out
as ``<s> prefix <sep> side <sep> suffix </s>`` (context and special tokens tagged equal), then
padded to ``max_len`` with ``<pad>``, edit type pad and attention mask 0. The context is cut to
fit: the end of the prefix and the start of the suffix, sharing what the side leaves free half
and half (one side's unused share goes to the other). Only a side longer than the whole budget is
cut itself, at its end, leaving no context.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

import numpy as np
from splice.models.serving.tokenizer import BOS, EOS, PAD, SEP
from splice.resolver.chunks import Conflict
from splice.resolver.patterns import Pattern
from splice.resolver.seqdiff import opcodes
from tokenizers import Tokenizer

EDIT_TYPES = ("pad", "equal", "insert", "delete", "replace")
PAD_TYPE, EQUAL, INSERT, DELETE, REPLACE = range(5)
#: The classes of the model, in enum order (index = class id).
PATTERNS: list[Pattern] = list(Pattern)
NUM_LABELS = 10
#: Names of the four sequences, in array order.
SEQUENCES = ("a|o", "o|a", "b|o", "o|b")

#: Special tokens per sequence: <s>, two <sep> and </s>.
_N_SPECIAL = 4
#: Code-token -> subword cache entries kept per tokenizer before it is cleared.
_CACHE_LIMIT = 200_000
#: Characters of context read per subword wanted (grown when too few).
_CHARS_PER_SUBWORD = 6
#: Sides are diffed over at most this many times the subword budget of tokens (for speed).
_DIFF_WINDOW = 2
#: The tokenizer's pre-token boundaries (:data:`~splice.models.serving.tokenizer.SPLIT_PATTERN`) in
#: Python's ``re``; it covers every character, and the tokenizer splits any pre-token further
#: where its own pattern differs (e.g. combining marks), so subwords are the same.
_PRE_TOKEN = re.compile(r"\r?\n|[^\S\r\n]+|\r|[\w$]+|[^\s\w$]+")


@dataclass(frozen=True)
class EncodedPiece:
    """The model input of one piece: int64 arrays of shape (4, max_len)."""

    input_ids: np.ndarray
    edit_ids: np.ndarray
    attention_mask: np.ndarray


def multi_hot(patterns: Iterable[Pattern]) -> np.ndarray:
    """A (NUM_LABELS,) uint8 vector with 1 at each pattern's class index."""
    out = np.zeros(NUM_LABELS, dtype=np.uint8)
    for p in patterns:
        out[PATTERNS.index(Pattern(p))] = 1
    return out


class _Subwords:
    """Subword ids of code tokens, cached (code tokens repeat a lot)."""

    def __init__(self, tok: Tokenizer) -> None:
        self.tok = tok
        self.cache: dict[str, tuple[int, ...]] = {}
        ids = [tok.token_to_id(t) for t in (PAD, BOS, SEP, EOS)]
        if any(i is None for i in ids):
            raise ValueError("tokenizer lacks the special tokens <pad>, <s>, <sep>, </s>")
        self.pad, self.bos, self.sep, self.eos = ids

    def of(self, tokens: Sequence[str]) -> list[tuple[int, ...]]:
        """Subword ids of each code token."""
        cache = self.cache
        try:
            return [cache[t] for t in tokens]
        except KeyError:
            self._add(tokens)
            return [cache[t] for t in tokens]

    def _add(self, tokens: Sequence[str]) -> None:
        cache = self.cache
        if len(cache) + len(tokens) > _CACHE_LIMIT:
            cache.clear()
        missing = [t for t in dict.fromkeys(tokens) if t not in cache]
        enc = self.tok.encode(missing, is_pretokenized=True, add_special_tokens=False)
        groups: list[list[int]] = [[] for _ in missing]
        for i, w in zip(enc.ids, enc.word_ids, strict=True):
            groups[w].append(i)
        cache.update(zip(missing, map(tuple, groups), strict=True))

    def text(self, text: str) -> list[int]:
        """Subword ids of running text, through the cache of its pre-tokens."""
        return list(chain.from_iterable(self.of(_PRE_TOKEN.findall(text))))

    def tail(self, text: str, need: int) -> list[int]:
        """The last ``need`` subwords of ``text`` (encoding only a window at its end)."""
        if need <= 0 or not text:
            return []
        window = need * _CHARS_PER_SUBWORD
        while True:
            if window >= len(text):
                return self.text(text)[-need:]
            chunk = text[-window:]
            cut = chunk.find("\n")
            if 0 <= cut < len(chunk) // 2:
                chunk = chunk[cut + 1 :]  # start at a line boundary
            ids = self.text(chunk)
            if len(ids) >= need:
                return ids[-need:]
            window *= 4

    def head(self, text: str, need: int) -> list[int]:
        """The first ``need`` subwords of ``text``."""
        if need <= 0 or not text:
            return []
        window = need * _CHARS_PER_SUBWORD
        while True:
            if window >= len(text):
                return self.text(text)[:need]
            chunk = text[:window]
            cut = chunk.rfind("\n")
            if cut >= len(chunk) // 2:
                chunk = chunk[: cut + 1]  # end at a line boundary
            ids = self.text(chunk)
            if len(ids) >= need:
                return ids[:need]
            window *= 4


_SUBWORDS: dict[int, _Subwords] = {}


def _subwords(tok: Tokenizer) -> _Subwords:
    found = _SUBWORDS.get(id(tok))
    if found is None or found.tok is not tok:
        found = _SUBWORDS[id(tok)] = _Subwords(tok)
    return found


def edit_types(base: Sequence[str], side: Sequence[str]) -> tuple[list[int], list[int]]:
    """Edit type of each ``side`` token and of each ``base`` token under the diff base->side.

    Side tokens are equal, insert or replace; base tokens are equal, delete or replace.
    """
    side_t = [EQUAL] * len(side)
    base_t = [EQUAL] * len(base)
    for op in opcodes(base, side):
        if op.tag == "equal":
            continue
        if op.tag != "delete":
            side_t[op.b1 : op.b2] = [INSERT if op.tag == "insert" else REPLACE] * (op.b2 - op.b1)
        if op.tag != "insert":
            base_t[op.a1 : op.a2] = [DELETE if op.tag == "delete" else REPLACE] * (op.a2 - op.a1)
    return side_t, base_t


def _side(
    sub: _Subwords, tokens: Sequence[str], types: Sequence[int], budget: int
) -> tuple[list[int], list[int]]:
    """Subword ids and their edit types for a side, at most ``budget`` of them."""
    tokens = tokens[:budget]  # every code token gives at least one subword
    ids: list[int] = []
    kinds: list[int] = []
    for piece, kind in zip(sub.of(tokens), types, strict=False):
        ids.extend(piece)
        kinds.extend([kind] * len(piece))
        if len(ids) >= budget:
            break
    return ids[:budget], kinds[:budget]


def encode_piece(
    tokenizer: Tokenizer, piece: Conflict, prefix: str, suffix: str, max_len: int = 128
) -> EncodedPiece:
    """The four aligned sequences of ``piece`` (see module doc) as (4, max_len) int64 arrays."""
    budget = max_len - _N_SPECIAL
    if budget < 1:
        raise ValueError(f"max_len must be at least {_N_SPECIAL + 1}")
    sub = _subwords(tokenizer)
    window = _DIFF_WINDOW * budget
    base, ours, theirs = piece.base[:window], piece.ours[:window], piece.theirs[:window]
    ours_t, base_vs_ours = edit_types(base, ours)
    theirs_t, base_vs_theirs = edit_types(base, theirs)
    sides = [
        _side(sub, ours, ours_t, budget),
        _side(sub, base, base_vs_ours, budget),
        _side(sub, theirs, theirs_t, budget),
        _side(sub, base, base_vs_theirs, budget),
    ]
    room = budget - min(len(ids) for ids, _ in sides)
    pre = sub.tail(prefix, room)
    post = sub.head(suffix, room)

    input_ids = np.full((4, max_len), sub.pad, dtype=np.int64)
    edit_ids = np.zeros((4, max_len), dtype=np.int64)
    mask = np.zeros((4, max_len), dtype=np.int64)
    for k, (ids, kinds) in enumerate(sides):
        free = budget - len(ids)
        p_take = min(len(pre), free - min(len(post), free // 2))
        s_take = min(len(post), free - p_take)
        row = [sub.bos, *pre[len(pre) - p_take :], sub.sep, *ids, sub.sep, *post[:s_take], sub.eos]
        n = len(row)
        input_ids[k, :n] = row
        edit_ids[k, :n] = EQUAL
        start = p_take + 2
        edit_ids[k, start : start + len(kinds)] = kinds
        mask[k, :n] = 1
    return EncodedPiece(input_ids, edit_ids, mask)


def encode_batch(pieces: Sequence[EncodedPiece]) -> dict[str, np.ndarray]:
    """Stack encoded pieces into (N, 4, L) arrays keyed like the model's inputs."""
    return {
        "input_ids": np.stack([p.input_ids for p in pieces]),
        "edit_ids": np.stack([p.edit_ids for p in pieces]),
        "attention_mask": np.stack([p.attention_mask for p in pieces]),
    }
