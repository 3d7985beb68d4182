"""Thresholds by group of answer (resolver/thresholds.py), as calibration.json ships them and as
the pipeline applies them."""

from __future__ import annotations

import json

import pytest
from splice.models.serving.auto import AutoResolver
from splice.models.serving.neural import Calibration, NeuralResolver, default_model_dir
from splice.resolver.decision import DecisionRule
from splice.resolver.keeps import Kept
from splice.resolver.pipeline import merge_file
from splice.resolver.policy import SafeTokenMerge
from splice.resolver.thresholds import AnswerFeatures, Thresholds, required_confidence

BOTH = Kept("both", 0, 0, 0, 0)
GROUPED = Thresholds(
    keeps_both=0.9,
    drops_side=None,
    rule="source-side-file",
    groups=(("both-model", 0.9), ("both-policy-ours-alone", 0.87)),
)


def test_required_confidence_by_kind() -> None:
    t = Thresholds(keeps_both=0.8, drops_side=None)
    assert required_confidence(BOTH, t) == 0.8
    assert required_confidence(Kept("drops-ours", 1, 0, 1, 0), t) is None
    assert required_confidence(Kept("drops-both", 1, 1, 1, 1), Thresholds(0.8, 0.99)) == 0.99


def test_groups_by_source_side_and_file() -> None:
    def need(**kw: object) -> float | None:
        return GROUPED.required(AnswerFeatures("both", **kw))  # type: ignore[arg-type]

    assert need() == 0.9  # the model's answer
    assert need(policy=True, equals="ours", alone=True) == 0.87
    assert need(policy=True, equals="ours", alone=False) is None  # a group without threshold
    assert need(policy=True, equals="theirs", alone=True) is None
    assert need(policy=True, equals=None, alone=True) is None
    assert GROUPED.required(AnswerFeatures("drops-theirs", policy=True, equals="ours")) is None


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown decision rule"):
        Thresholds(0.9, None, rule="nope")
    data = json.loads((default_model_dir() / "calibration.json").read_text())
    data["decision"] = {"keeps_both": 0.9, "drops_side": None, "rule": "nope"}
    with pytest.raises(ValueError, match="unknown decision rule"):
        Calibration.from_json(data)
    data["decision"] = {"rule": "side", "groups": {"both-ours": 2.0}}
    with pytest.raises(ValueError, match="both-ours"):
        Calibration.from_json(data)


#: Base, ours (theirs' edit and one more), theirs.
OURS_SUBSUMES = (
    "def f(a):\n    return a\n",
    "def f(a, b):\n    return a + 1\n",
    "def f(a, b):\n    return a\n",
)


def _file(copies: int, gap: int = 8) -> tuple[str, str, str]:
    """``copies`` separate conflicts where ours' edits include theirs'."""
    base, ours, theirs = OURS_SUBSUMES
    filler = "".join(f"x{i} = {i}\n" for i in range(gap))
    join = lambda s: filler.join(s.replace("f(", f"f{i}(") for i in range(copies))  # noqa: E731
    return join(base), join(ours), join(theirs)


def test_the_pipeline_groups_by_file_and_source() -> None:
    """The policy's answer equal to ours is applied when it is the file's only conflict, and
    stays a suggestion when the file has others (the shipped rule's shape)."""
    rule = DecisionRule(GROUPED)
    alone = merge_file(*_file(1), SafeTokenMerge(), path="a.py", rule=rule)
    assert [h.kept.kind if h.kept else None for h in alone.hunks] == ["both"]
    assert alone.hunks[0].applied and alone.hunks[0].answer.source == "token-merge"
    assert "<<<<<<<" not in alone.text
    among = merge_file(*_file(2), SafeTokenMerge(), path="a.py", rule=rule)
    assert len(among.hunks) == 2
    assert not any(h.applied for h in among.hunks)
    assert among.text.count("<<<<<<<") == 2


def test_a_user_threshold_replaces_the_groups() -> None:
    """``--min-confidence`` is one threshold for every answer that keeps both sides."""

    class Grouped(SafeTokenMerge):
        thresholds = GROUPED

    among = merge_file(*_file(2), Grouped(), path="a.py")
    assert not any(h.applied for h in among.hunks)
    user = merge_file(*_file(2), Grouped(), path="a.py", min_confidence=0.8)
    assert all(h.applied for h in user.hunks)


def test_shipped_decision() -> None:
    """The shipped calibration's fitted decision (scripts/fit_decision.py): discards never."""
    auto = AutoResolver(NeuralResolver())
    assert auto.discard_min_confidence is None
    assert auto.thresholds is not None and auto.thresholds.rule != "kind"
    assert auto.min_confidence is not None and 0.5 < auto.min_confidence < 1.0
