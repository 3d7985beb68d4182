"""The language model's formats (models/serving/prompt.py) with the shipped tokenizer."""

from __future__ import annotations

from splice.models.serving.neural import default_model_dir
from splice.models.serving.prompt import (
    LM_SPECIAL_TOKENS,
    LMTokenizer,
    fim_ids,
    resolution_ids,
    resolution_prompt,
)


def _tok() -> LMTokenizer:
    return LMTokenizer.from_file(default_model_dir() / "tokenizer.json")


def test_special_tokens_follow_the_vocabulary_and_text_never_makes_them() -> None:
    tok = _tok()
    n = tok.text.get_vocab_size()
    assert tok.special.prefix == n and tok.vocab_size == n + len(LM_SPECIAL_TOKENS)
    text = "x = '<|endoftext|><|fim_middle|>'\n"
    ids = tok.encode(text)
    assert all(i < n for i in ids) and tok.decode(ids) == text
    again = LMTokenizer(tok.to_hf())  # the tokenizer.json saved beside the model
    assert again.special == tok.special and again.encode(text) == ids


def test_fim_orders() -> None:
    tok, s = _tok(), _tok().special
    psm = fim_ids(tok, "def f(", "a, b", "):\n")
    spm = fim_ids(tok, "def f(", "a, b", "):\n", spm=True)
    assert psm[0] == s.prefix and spm[0] == s.suffix and psm[-1] == spm[-1] == s.end
    middle = psm[psm.index(s.middle) + 1 : -1]
    assert tok.decode(middle) == "a, b" == tok.decode(spm[spm.index(s.middle) + 1 : -1])
    assert sorted(psm) == sorted(spm)


def test_resolution_prompt_fits_its_budget_and_keeps_the_conflict_and_nearest_lines() -> None:
    tok, s = _tok(), _tok().special
    before = "".join(f"before_{i} = {i}\n" for i in range(3000))
    after = "".join(f"after_{i} = {i}\n" for i in range(3000))
    sides = ("x = 1\n", "x = 0\n", "x = 2\n")
    for budget in (64, 256, 1024):
        ids = resolution_prompt(tok, before, after, *sides, budget=budget)
        assert len(ids) <= budget and ids[-1] == s.middle
        text = tok.decode(ids)
        assert "before_2999 = 2999\n" in text and "after_0 = 0\n" in text
        assert "x = 1\nx = 0\nx = 2\n" in text
    short = resolution_prompt(tok, before, "}\n", *sides, budget=256)
    assert len(short) >= 250  # what the suffix leaves goes to the prefix
    huge = resolution_prompt(tok, "a\n", "b\n", "y" * 20_000, "z\n", "w\n", budget=256)
    assert len(huge) <= 256 and "z\nw\n" in tok.decode(huge)  # short sides kept whole
    ids, start = resolution_ids(tok, "a\n", "b\n", *sides, "x = 3\n")
    assert ids[start - 1] == s.middle and tok.decode(ids[start:-1]) == "x = 3\n"


def test_conflict_contexts_are_the_merged_file_around_each_conflict() -> None:
    from splice.models.serving.prompt import conflict_contexts
    from splice.resolver.linemerge import merge_lines

    base = ["a\n", "x = 0\n", "b\n", "c\n", "d\n", "y = 0\n", "e\n"]
    ours = ["a\n", "x = 1\n", "b\n", "c\n", "d\n", "y = 1\n", "e\n"]
    theirs = ["a\n", "x = 2\n", "b\n", "c\n", "d\n", "y = 2\n", "e\n"]
    chunks = merge_lines(base, ours, theirs, style="diff3")
    (b1, a1), (b2, a2) = conflict_contexts(chunks)
    assert (b1, a1) == ("a\n", "b\nc\nd\ny = 1\ne\n")  # the other conflict as ours
    assert (b2, a2) == ("a\nx = 1\nb\nc\nd\n", "e\n")
