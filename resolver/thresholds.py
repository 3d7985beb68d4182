"""The confidence an answer needs to be applied automatically, by the group it falls in.

Answers are grouped by a *rule* (:data:`RULES`) over what they keep and how they were obtained
(:class:`AnswerFeatures`); each group has its own threshold, fitted held out by repository on
the validation repositories (``scripts/fit_decision.py``, into ``calibration.json``'s
``decision``). A group without one (None) is never applied automatically: its answers stay
suggestions. The rule ``kind`` is the plain one: one threshold for answers that keep both sides'
edits, another for answers that drop a side's. Answers the code language model wrote (no
pattern gives them) need, whatever the rule, the threshold of the group ``written`` as well:
without one they are never applied automatically.

The same functions group the answers of a live merge (:mod:`splice.resolver.decision`) and the
rows of an evaluation run (the fitting script), so the fitted thresholds mean what they say.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from splice.resolver.keeps import Kept

#: The resolver name the token-merge policy's answers carry (:mod:`splice.resolver.policy`).
POLICY_SOURCE = "token-merge"
#: The group whose threshold written answers need besides their own.
WRITTEN_GROUP = "written"


@dataclass(frozen=True)
class AnswerFeatures:
    """What the grouping rules may look at, for one candidate answer of one hunk."""

    #: :attr:`splice.resolver.keeps.Kept.kind`: "both", "drops-ours", ...
    kind: str
    #: The answer comes from the token-merge policy (not the model).
    policy: bool = False
    #: "ours" or "theirs" when the answer equals that side ignoring whitespace, else None.
    equals: str | None = None
    #: The hunk is its file's only conflict.
    alone: bool = False
    #: The code language model wrote the answer (no pattern gives it).
    written: bool = False


def _both(f: AnswerFeatures, group: str) -> str:
    return group if f.kind == "both" else "drops"


def _side(f: AnswerFeatures) -> str:
    return f.equals or "combined"


def _file(f: AnswerFeatures) -> str:
    return "alone" if f.alone else "among"


#: Each rule maps an answer to its group; every answer that drops a side is in ``drops``.
RULES: dict[str, Callable[[AnswerFeatures], str]] = {
    "kind": lambda f: _both(f, "both"),
    "source": lambda f: _both(f, "both-policy" if f.policy else "both-model"),
    "file-hunks": lambda f: _both(f, f"both-{_file(f)}"),
    "side": lambda f: _both(f, f"both-{_side(f)}"),
    "side-file": lambda f: _both(f, f"both-{_side(f)}-{_file(f)}"),
    "source-side": lambda f: _both(f, f"both-policy-{_side(f)}" if f.policy else "both-model"),
    "source-side-file": lambda f: _both(
        f, f"both-policy-{_side(f)}-{_file(f)}" if f.policy else "both-model"
    ),
}


@dataclass(frozen=True)
class Thresholds:
    """Confidence an answer needs, by group (None: never applied automatically).

    ``drops_side`` is the threshold of every answer that drops a side's edits. For answers that
    keep both, the rule ``kind`` has one threshold, ``keeps_both``; another ``rule`` looks their
    group up in ``groups`` (a group missing there is never applied; ``keeps_both`` is then only
    what is shown as "the" threshold).
    """

    keeps_both: float | None
    drops_side: float | None
    rule: str = "kind"
    groups: tuple[tuple[str, float | None], ...] = ()

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown decision rule {self.rule!r} (known: {', '.join(RULES)})")

    def required(self, features: AnswerFeatures) -> float | None:
        """The confidence an answer with ``features`` needs (None: never applied)."""
        if features.kind != "both":
            need = self.drops_side
        elif self.rule == "kind":
            need = self.keeps_both
        else:
            need = dict(self.groups).get(RULES[self.rule](features))
        if features.written:
            written = dict(self.groups).get(WRITTEN_GROUP)
            need = None if need is None or written is None else max(need, written)
        return need


def required_confidence(
    kept: Kept, thresholds: Thresholds, features: AnswerFeatures | None = None
) -> float | None:
    """The confidence an answer keeping ``kept`` needs (``features``: the rest of what the rule
    may look at; None: the answer alone, from the model, in a file of several conflicts)."""
    return thresholds.required(features or AnswerFeatures(kept.kind))
