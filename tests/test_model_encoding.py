"""The classifier's input side without torch: tokenizer, encoding, pieces, examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from splice.models.serving.encoding import (
    DELETE,
    EQUAL,
    INSERT,
    NUM_LABELS,
    PATTERNS,
    REPLACE,
    encode_batch,
    encode_piece,
    multi_hot,
)
from splice.models.serving.pieces import Route, assemble, hunk_pieces
from splice.models.training.examples import build_examples, load_examples, save_examples
from splice.models.training.tokenizer import SPECIAL_TOKENS, load_tokenizer, train_tokenizer
from splice.resolver.chunks import Conflict, split_lines
from splice.resolver.patterns import Pattern, expressible
from splice.resolver.resolvers import Hunk

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not found at {DATA}")

SAMPLES = [
    "def foo(a, b):\n    return a+b  # sum\n",
    'class X {\r\n\tpublic string S = "héllo wörld 😀";\r\n}\r\n',
    "   \n\n\t\t  x\r  y\u0301 $z === !== ;;\n",
    "",
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory: pytest.TempPathFactory):
    """A tiny tokenizer trained on a few real files (or on the samples without the data set)."""
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    if DATA.is_dir():
        train_tokenizer(DATA, path, vocab_size=600, max_files=12)
    else:  # pragma: no cover - no data set
        from splice.models.serving.tokenizer import new_tokenizer

        t = new_tokenizer()
        from tokenizers import pre_tokenizers, trainers

        trainer = trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        t.train_from_iterator(SAMPLES * 20, trainer=trainer)
        t.save(str(path))
    return load_tokenizer(path)


def test_tokenizer_round_trip_and_specials(tok) -> None:
    for i, name in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(name) == i
    unk = tok.token_to_id("<unk>")
    for text in SAMPLES:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert unk not in ids
        assert tok.decode(ids) == text


def _row(tok, enc, k: int) -> tuple[list[str], list[int]]:
    n = int(enc.attention_mask[k].sum())
    return [tok.id_to_token(int(i)) for i in enc.input_ids[k, :n]], enc.edit_ids[k, :n].tolist()


def test_edit_types_of_a_small_replace(tok) -> None:
    piece = Conflict(base=("f", "(", "a", ")"), ours=("f", "(", "b", ")"), theirs=("a", ",", "c"))
    enc = encode_piece(tok, piece, "", "", max_len=16)
    for arr in (enc.input_ids, enc.edit_ids, enc.attention_mask):
        assert arr.shape == (4, 16) and arr.dtype == np.int64
    e, i, d, r = EQUAL, INSERT, DELETE, REPLACE
    # a|o: ours against base; o|a: base against ours.
    assert _row(tok, enc, 0) == (
        ["<s>", "<sep>", "f", "(", "b", ")", "<sep>", "</s>"],
        [e, e, e, e, r, e, e, e],
    )
    assert _row(tok, enc, 1) == (
        ["<s>", "<sep>", "f", "(", "a", ")", "<sep>", "</s>"],
        [e, e, e, e, r, e, e, e],
    )
    # Theirs keeps "a" of base, deletes "f (" and replaces ")" with ", c".
    assert _row(tok, enc, 2)[1] == [e, e, e, r, r, e, e]
    assert _row(tok, enc, 3)[1] == [e, e, d, d, e, r, e, e]
    grow = Conflict(base=("a",), ours=("a", "b"), theirs=("a",))
    assert _row(tok, encode_piece(tok, grow, "", "", 16), 0)[1] == [e, e, e, i, e, e]
    assert enc.edit_ids[:, 8:].max() == 0 and enc.input_ids[0, 8:].max() == 0  # padding
    batch = encode_batch([enc, enc, enc])
    assert {k: v.shape for k, v in batch.items()} == {
        "input_ids": (3, 4, 16),
        "edit_ids": (3, 4, 16),
        "attention_mask": (3, 4, 16),
    }


def _between_seps(tok, enc, k: int) -> list[int]:
    sep = tok.token_to_id("<sep>")
    row = enc.input_ids[k].tolist()
    first = row.index(sep)
    return row[first + 1 : row.index(sep, first + 1)]


def test_truncation_keeps_the_conflict(tok) -> None:
    side = ("x", " ", "=", " ", "compute", "(", "value", ")", "\n")
    piece = Conflict(base=side, ours=side + ("+1",), theirs=("y",))
    prefix = "".join(f"line_{i} = {i}\n" for i in range(200))
    suffix = "".join(f"after_{i}()\n" for i in range(200))
    enc = encode_piece(tok, piece, prefix, suffix, max_len=48)
    assert enc.attention_mask.sum(axis=1).tolist() == [48, 48, 48, 48]  # context fills the rest
    ours_ids = tok.encode(list(piece.ours), is_pretokenized=True, add_special_tokens=False).ids
    assert _between_seps(tok, enc, 0) == ours_ids
    # The prefix kept is the end of the prefix text, the suffix the start of the suffix text.
    n = int(enc.attention_mask[0].sum())
    text = tok.decode(enc.input_ids[0, :n].tolist())
    assert prefix.endswith(text.split("".join(piece.ours))[0])
    assert suffix.startswith(text.split("".join(piece.ours))[1])
    # A side longer than the budget is cut at its end, with no context left.
    long = Conflict(base=("a",), ours=tuple(f"t{i} " for i in range(100)), theirs=("b",))
    enc = encode_piece(tok, long, prefix, suffix, max_len=32)
    assert enc.input_ids[0, 1] == tok.token_to_id("<sep>")
    assert enc.input_ids[0, -1] == tok.token_to_id("</s>")
    kept = tok.decode(_between_seps(tok, enc, 0))
    assert len(_between_seps(tok, enc, 0)) == 32 - 4
    assert "".join(long.ours).startswith(kept)


def _hunk(base: str, ours: str, theirs: str) -> Hunk:
    c = Conflict(*(tuple(split_lines(text)) for text in (base, ours, theirs)))
    return Hunk(c, "python", before=("def f():\n",), after=("    return y\n",))


def test_token_route_assembles_the_resolution() -> None:
    hunk = _hunk("    foo(a)\n", "    foo(a, b)\n", "    foo(c)\n")
    pieces = hunk_pieces(hunk)
    tokens = [p for p in pieces if p.route == Route.TOKEN]
    assert [p.conflict for p in tokens] == [Conflict(("a",), ("a", ",", " ", "b"), ("c",))]
    assert tokens[0].prefix == "def f():\n    foo("
    assert tokens[0].suffix == ")\n    return y\n"
    assert assemble(tokens, [Pattern.THEIRS_OURS_MINUS_BASE]) == ("    foo(c, b)\n",)
    ex = expressible(hunk.conflict, "python", "    foo(c, b)\n")
    assert assemble(tokens, ex.token_combos[0]) == ("    foo(c, b)\n",)


def test_hunk_route_assembles_the_resolution() -> None:
    hunk = _hunk("x = 1\n", "x = 2\n", "x = 3\n")
    pieces = hunk_pieces(hunk)
    whole = [p for p in pieces if p.route == Route.HUNK]
    assert len(whole) == 1 and pieces[-1] is whole[0]
    assert whole[0].conflict.ours == ("x", " ", "=", " ", "2", "\n")
    assert whole[0].prefix == "def f():\n" and whole[0].suffix == "    return y\n"
    assert expressible(hunk.conflict, "python", "x = 2\nx = 3\n").hunk_patterns == [
        Pattern.OURS_THEIRS,
        Pattern.OURS_THEIRS_MINUS_BASE,  # no line of ours or theirs is aligned with base
    ]
    assert assemble(whole, [Pattern.OURS_THEIRS]) == ("x = 2\n", "x = 3\n")
    with pytest.raises(ValueError):
        assemble(pieces, [Pattern.OURS] * len(pieces))  # mixed routes


def test_multi_hot_order() -> None:
    assert PATTERNS[0] == Pattern.OURS and len(PATTERNS) == NUM_LABELS
    assert multi_hot([Pattern.THEIRS, Pattern.EMPTY]).tolist() == [0, 1] + [0] * 7 + [1]


@needs_data
def test_build_examples_on_a_slice(tok, tmp_path: Path) -> None:
    arrays = build_examples(DATA, "train", tok, max_len=64, limit=20, verbose=False)
    n = len(arrays["route"])
    assert n > 0
    assert arrays["input_ids"].shape == (n, 4, 64) and arrays["input_ids"].dtype == np.int32
    assert arrays["edit_ids"].shape == arrays["attention_mask"].shape == (n, 4, 64)
    assert arrays["labels"].shape == (n, NUM_LABELS) and arrays["labels"].dtype == np.uint8
    assert (arrays["labels"].sum(axis=1) >= 1).all()
    assert set(arrays["route"].tolist()) <= {0, 1}
    assert ((arrays["index"] == -1) == (arrays["route"] == Route.HUNK)).all()
    assert all("#" in k for k in arrays["hunk_key"])
    path = tmp_path / "ex.npz"
    save_examples(path, arrays)
    back = load_examples(path)
    assert set(back) == set(arrays)
    assert (back["input_ids"] == arrays["input_ids"]).all()
    assert back["hunk_key"].tolist() == arrays["hunk_key"].tolist()


@needs_data
def test_assemble_reproduces_real_resolutions() -> None:
    from splice.resolver.chunks import split_lines
    from splice.resolver.patterns import squash
    from splice.resolver.pipeline import find_hunks

    from splice.data.dataset import iter_records
    from splice.data.evaluation import locate_resolutions

    checked = 0
    for rec in iter_records(DATA, split="val", limit=20):
        sides = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        chunks, reports = find_hunks(*sides, rec["lang"])
        truths = locate_resolutions(chunks, split_lines(rec["merged"]))
        for report, truth in zip(reports, truths, strict=True):
            if truth is None:
                continue
            ex = expressible(report.hunk.conflict, rec["lang"], "".join(truth))
            pieces = hunk_pieces(report.hunk)
            want = squash("".join(truth))
            if ex.token_combos and ex.token_combos[0]:
                tokens = [p for p in pieces if p.route == Route.TOKEN]
                assert squash("".join(assemble(tokens, ex.token_combos[0]))) == want
                checked += 1
            for pattern in ex.hunk_patterns:
                assert squash("".join(assemble(pieces[-1:], [pattern]))) == want
                checked += 1
    assert checked > 10
