"""``auto``: the driver's default resolver, the model-free policy and the model together.

The two answer different hunks well: the token-merge policy (:mod:`splice.resolver.policy`) is
sure of the hunks where one side's edits subsume the other's, with confidences measured as its
precision per edit shape; the model ranks every hunk's candidates, with confidences calibrated on
the validation repositories (:mod:`splice.models.training.hunk_calibration`). Both are estimates
of the probability of being right, so for each hunk the more confident answer is chosen, and the
other one stays among the suggestions (top 3, distinct texts).

The thresholds depend on the answer's group (:mod:`splice.resolver.thresholds`: what it keeps,
whether the policy or the model gave it, which side it equals, whether the file has other
conflicts): with a ``decision`` section in ``calibration.json`` (``scripts/fit_decision.py``,
fitted held out by repository) they are its groups'; answers that drop a side's edits need
``discard_min_confidence`` (None: never applied automatically). Without it, ``min_confidence``
is ``auto_threshold`` (else the model's ``threshold``) and answers that drop a side are never
applied automatically.

Without an installed model, ``auto`` is the token-merge policy alone, silently;
with a broken one, the same after one line on stderr.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from splice.resolver.chunks import text_key
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion, register
from splice.resolver.thresholds import Thresholds

TOP_K = 3


def combine(policy: Resolution, model: Resolution, top_k: int = TOP_K) -> Resolution:
    """The more confident of the two chosen answers, then the other suggestions, by confidence."""
    pool: list[Suggestion] = []
    for s in (policy.chosen, model.chosen, *policy.suggestions, *model.suggestions):
        if s is not None:
            pool.append(s)
    best: dict[str, Suggestion] = {}
    for s in pool:  # one entry per text (whitespace ignored), keeping its highest confidence
        key = text_key("".join(s.lines))
        if key not in best or s.confidence > best[key].confidence:
            best[key] = s
    ranked = sorted(best.values(), key=lambda s: -s.confidence)[:top_k]
    return Resolution(chosen=ranked[0] if ranked else None, suggestions=tuple(ranked))


class AutoResolver(Resolver):
    """Token-merge policy + neural model (module doc)."""

    name = "auto"

    def __init__(self, model: object, policy: Resolver | None = None) -> None:
        from splice.resolver.policy import SafeTokenMerge

        self.model = model
        self.policy = policy or SafeTokenMerge()
        calib = getattr(model, "calibration", None)
        self._threshold = getattr(calib, "auto_threshold", None)
        if self._threshold is None:
            self._threshold = getattr(model, "min_confidence", None)
        self._decision: Thresholds | None = getattr(calib, "decision", None)

    @property
    def min_confidence(self) -> float | None:  # type: ignore[override]
        """The threshold shown as "the" one: the model's answers that keep both sides'."""
        if self._decision is not None:
            return self._decision.keeps_both
        return self._threshold

    @property
    def discard_min_confidence(self) -> float | None:  # type: ignore[override]
        """The threshold of answers that drop a side's edits (None: never applied)."""
        return None if self._decision is None else self._decision.drops_side

    @property
    def thresholds(self) -> Thresholds | None:  # type: ignore[override]
        """The calibration's thresholds by group (None: the two above alone)."""
        return self._decision

    def resolve_many(self, hunks: Sequence[Hunk]) -> list[Resolution]:
        model_answers = self.model.resolve_many(hunks)  # type: ignore[attr-defined]
        return [
            combine(self.policy.resolve(h), m) for h, m in zip(hunks, model_answers, strict=True)
        ]

    def resolve(self, hunk: Hunk) -> Resolution:
        return self.resolve_many([hunk])[0]


def auto_resolver(model_dir: str | None = None, lm_dir: str | None = None) -> Resolver:
    """``auto`` when a model is installed (in ``model_dir``, default the shipped one), with the
    code language model when there is one (``lm_dir``: :func:`~.neural.load_lm`), else
    ``token-merge`` (module doc)."""
    from splice.models.serving.neural import NeuralResolver, default_model_dir, load_lm
    from splice.resolver.policy import SafeTokenMerge

    folder = Path(model_dir) if model_dir else default_model_dir()
    if model_dir or (folder / "model.onnx").is_file():
        model = NeuralResolver(folder)  # ModelUnavailable: load_resolver reports it
        model.lm = load_lm(lm_dir)
        return AutoResolver(model)
    return SafeTokenMerge()


register("auto")(auto_resolver)
