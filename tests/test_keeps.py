"""What a candidate keeps of each side's edits (resolver/keeps.py): examples and properties."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from splice.resolver.chunks import Conflict, Stable, split_lines
from splice.resolver.keeps import Kept, classify, units
from splice.resolver.thresholds import Thresholds, required_confidence
from splice.resolver.tokenmerge import merge_hunk


def _c(base: str, ours: str, theirs: str) -> Conflict:
    return Conflict(tuple(split_lines(base)), tuple(split_lines(ours)), tuple(split_lines(theirs)))


def _kind(c: Conflict, answer: str, lang: str | None = "python") -> str:
    return classify(c, split_lines(answer), lang).kind


def test_combination_keeps_both_and_each_side_drops_the_other() -> None:
    c = _c("f(a)\n", "f(a, b)\n", "g(a)\n")
    assert _kind(c, "g(a, b)\n") == "both"
    assert _kind(c, "f(a, b)\n") == "drops-theirs"
    assert _kind(c, "g(a)\n") == "drops-ours"
    assert _kind(c, "f(a)\n") == "drops-both"


def test_a_side_that_subsumes_the_other_keeps_both() -> None:
    c = _c("log.Info(x)\n", "log.Error(x)\n", "log.Error(x, y)\n")
    assert _kind(c, "log.Error(x, y)\n") == "both"
    assert _kind(c, "log.Error(x)\n") == "drops-theirs"


def test_deleting_a_block_the_other_side_modified_drops_the_modification() -> None:
    c = _c("a = 1\nb = 2\n", "", "a = 1\nb = 3\n")
    kept = classify(c, [], "python")
    assert kept.kind == "drops-theirs"
    assert kept.theirs_lines == 1
    assert kept.describe() == "dropped theirs: 1 line"
    # Keeping the modified block undoes ours' deletion.
    assert _kind(c, "a = 1\nb = 3\n") == "drops-ours"


def test_keeping_text_a_side_deleted_drops_that_side() -> None:
    c = _c("x = 1\ny = 2\n", "x = 1\n", "x = 1\ny = 2\nz = 3\n")
    assert _kind(c, "x = 1\nz = 3\n") == "both"
    assert _kind(c, "x = 1\ny = 2\nz = 3\n") == "drops-ours"


def test_whitespace_between_tokens_is_not_an_edit() -> None:
    c = _c("f(a,b)\n", "f(a, b)\n", "f(a,c)\n")
    assert _kind(c, "f(a,c)\n") == "both"


def test_whitespace_inside_a_string_literal_is_content() -> None:
    c = _c('say("a b")\n', 'say("a  b")\n', 'say("a b", 1)\n')
    assert _kind(c, 'say("a b", 1)\n') == "drops-ours"
    assert _kind(c, 'say("a  b", 1)\n') == "both"
    # and without a grammar, by the generic lexer
    assert _kind(c, 'say("a b", 1)\n', lang=None) == "drops-ours"


def test_a_non_breaking_space_is_content() -> None:
    c = _c("a = 1\n", "a =\u00a01\n", "a = 2\n")
    assert _kind(c, "a = 2\n") == "drops-ours"
    assert units("a =\u00a01", None).texts == ("a", "=", "\u00a0", "1")


def test_describe_and_counts() -> None:
    assert Kept("both", 0, 0, 0, 0).describe() == "both sides kept"
    assert Kept("drops-theirs", 0, 7, 0, 3).describe() == "dropped theirs: 3 lines"
    assert Kept("drops-both", 2, 1, 1, 1).describe() == "dropped ours: 1 line, theirs: 1 line"
    kept = classify(_c("", "a\nb\nc\n", "d\n"), split_lines("d\n"), "python")
    assert (kept.kind, kept.ours_dropped, kept.ours_lines) == ("drops-ours", 3, 3)


def test_required_confidence_by_kind() -> None:
    t = Thresholds(keeps_both=0.8, drops_side=None)
    assert required_confidence(Kept("both", 0, 0, 0, 0), t) == 0.8
    assert required_confidence(Kept("drops-ours", 1, 0, 1, 0), t) is None
    assert required_confidence(Kept("drops-both", 1, 1, 1, 1), Thresholds(0.8, 0.99)) == 0.99


# --------------------------------------------------------------------------- properties

WORDS = st.sampled_from(["a", "b", "c", "f", "(", ")", ",", "=", "1", "x.y", '"s t"'])
LINE = st.lists(WORDS, min_size=1, max_size=4).map(lambda ws: " ".join(ws) + "\n")
TEXT = st.lists(LINE, max_size=5).map("".join)


def _sig(text: str) -> tuple[str, ...]:
    return units(text, "python").texts


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_each_side_keeps_its_own_edits(base: str, ours: str, theirs: str) -> None:
    c = _c(base, ours, theirs)
    assert classify(c, split_lines(ours), "python").ours_dropped == 0
    assert classify(c, split_lines(theirs), "python").theirs_dropped == 0


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_base_drops_both_when_both_changed(base: str, ours: str, theirs: str) -> None:
    c = _c(base, ours, theirs)
    kept = classify(c, split_lines(base), "python")
    assert (kept.ours_dropped > 0) == (_sig(ours) != _sig(base))
    assert (kept.theirs_dropped > 0) == (_sig(theirs) != _sig(base))


@settings(max_examples=300, deadline=None)
@given(TEXT, TEXT, TEXT)
def test_a_clean_token_merge_keeps_both(base: str, ours: str, theirs: str) -> None:
    c = _c(base, ours, theirs)
    chunks = merge_hunk(c, "python")
    if all(isinstance(ch, Stable) for ch in chunks):
        merged = "".join(u for ch in chunks for u in ch.units)
        assert _kind(c, merged) == "both"


FRESH = st.sampled_from(["p", "q", "r", "s", "t", "u"])


@st.composite
def nested_edits(draw: st.DrawFn) -> tuple[str, str, str, bool]:
    """Base words; ours makes some replacements, theirs a subset of them (plus, maybe, one of
    its own at a position ours left alone). Returns base, ours, theirs and whether theirs has
    an edit of its own."""
    n = draw(st.integers(2, 8))
    base = [f"w{i}" for i in range(n)]
    ours_at = draw(st.sets(st.integers(0, n - 1), min_size=1))
    theirs_at = draw(st.sets(st.sampled_from(sorted(ours_at))))
    own = draw(st.sampled_from([None, *sorted(set(range(n)) - ours_at)]))
    new = {i: draw(FRESH) + str(i) for i in range(n)}
    ours = [new[i] if i in ours_at else w for i, w in enumerate(base)]
    theirs = [new[i] if i in theirs_at else w for i, w in enumerate(base)]
    if own is not None:
        theirs[own] = "z" + str(own)
    return (" ; ".join(base), " ; ".join(ours), " ; ".join(theirs), own is not None)


@settings(max_examples=300, deadline=None)
@given(nested_edits())
def test_ours_drops_theirs_unless_theirs_is_a_subset(case: tuple[str, str, str, bool]) -> None:
    base, ours, theirs, theirs_has_own = case
    c = _c(base + "\n", ours + "\n", theirs + "\n")
    kept = classify(c, split_lines(ours + "\n"), "python")
    assert kept.ours_dropped == 0
    assert (kept.kind == "drops-theirs") == theirs_has_own
    assert (kept.kind == "both") == (not theirs_has_own)


def test_calibration_decision_reaches_the_auto_resolver(tmp_path: Path) -> None:
    """``decision`` in calibration.json: read by ``Calibration``, exposed by ``auto``."""
    import json

    import pytest
    from splice.models.serving.auto import AutoResolver
    from splice.models.serving.neural import Calibration, NeuralResolver, default_model_dir

    shipped = default_model_dir()
    data = json.loads((shipped / "calibration.json").read_text())
    data.pop("decision", None)
    assert Calibration.from_json(data).decision is None
    with pytest.raises(ValueError, match="decision.keeps_both"):
        Calibration.from_json({**data, "decision": {"keeps_both": 1.5, "drops_side": None}})
    for name in ("tokenizer.json", "model.onnx"):
        (tmp_path / name).symlink_to(shipped / name)
    (tmp_path / "calibration.json").write_text(json.dumps(data))
    old = AutoResolver(NeuralResolver(tmp_path))
    assert (old.min_confidence, old.discard_min_confidence) == (data["auto_threshold"], None)
    data["decision"] = {"keeps_both": 0.7, "drops_side": 0.99}
    (tmp_path / "calibration.json").write_text(json.dumps(data))
    auto = AutoResolver(NeuralResolver(tmp_path))
    assert (auto.min_confidence, auto.discard_min_confidence) == (0.7, 0.99)
    assert auto.thresholds is not None
    assert auto.thresholds == Thresholds(0.7, 0.99)
    assert required_confidence(Kept("drops-ours", 1, 0, 1, 0), auto.thresholds) == 0.99
