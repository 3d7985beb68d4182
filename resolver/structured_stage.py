"""The structured stage of the pipeline: the syntax-tree merge's answer as one more candidate.

For every hunk the pipeline asks a resolver about, :func:`with_structured` runs
:func:`splice.resolver.structured.attempt` and, when it answers, adds its lines to the
resolution as a :class:`~splice.resolver.resolvers.Suggestion` of source
:data:`STRUCTURED_SOURCE` ("kept both: merged as members of class Foo ..."). Its confidence is
the stage's own, calibrated on validation repositories (``resolver/structured.json``, written by
``scripts/eval_structured.py report --write``): the 95% lower bound of the held-out precision of
its answers by parent node type, else by language, else overall. The answer is then decided by
the same rule as every other (:mod:`splice.resolver.decision`): what it keeps, its group's
threshold, the syntax check. Without a calibration file its confidence is 0: a suggestion only.
When the resolver already proposes the same lines, the one suggestion keeps the higher
confidence and says both.

``SPLICE_STRUCTURED=off`` turns the stage off (for measurement, and as an escape hatch);
``SPLICE_STRUCTURED_CALIBRATION=FILE`` reads the confidences from another file.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

from splice.resolver.resolvers import Hunk, Resolution, Suggestion

#: The source of the structured merge's answers, and its name in words.
STRUCTURED_SOURCE = "structured"
STRUCTURED = "merged structurally"
#: The stage's calibration (shipped beside this module).
CALIBRATION = Path(__file__).with_name("structured.json")


def calibration() -> dict[str, Any] | None:
    """The fitted confidences (``$SPLICE_STRUCTURED_CALIBRATION``, else :data:`CALIBRATION`),
    or None when there are none (or they cannot be read)."""
    given = os.environ.get("SPLICE_STRUCTURED_CALIBRATION")
    return _read(Path(given) if given else CALIBRATION)


@cache
def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("all"), int | float):
        return None
    return data


def confidence(kind: str, lang: str | None, table: dict[str, Any] | None) -> float:
    """The confidence of an answer merged under a parent of node type ``kind`` in ``lang``."""
    if table is None:
        return 0.0
    by_kind, by_lang = table.get("by_kind") or {}, table.get("by_lang") or {}
    if kind in by_kind:
        return float(by_kind[kind])
    if lang in by_lang:
        return float(by_lang[lang])
    return float(table["all"])


def enabled() -> bool:
    return os.environ.get("SPLICE_STRUCTURED", "on").strip().lower() not in ("off", "0", "no")


def with_structured(hunk: Hunk, resolution: Resolution) -> tuple[Resolution, str]:
    """``resolution`` with the structured merge's answer added, and what the stage did (its
    explanation, or why it abstained), in words."""
    from splice.resolver.structured import attempt

    if not enabled():
        return resolution, "off (SPLICE_STRUCTURED)"
    found = attempt(hunk)
    if isinstance(found, str):
        return resolution, f"abstained: {found}"
    conf = confidence(found.kind, hunk.lang, calibration())
    answer = Suggestion(tuple(found.lines), conf, found.explanation, STRUCTURED_SOURCE)
    others = []
    for s in resolution.suggestions:
        if tuple(s.lines) == answer.lines:
            if s.confidence > answer.confidence:
                answer = replace(s, explanation=f"{s.explanation}; also {found.explanation}")
        else:
            others.append(s)
    chosen = resolution.chosen
    if (
        chosen is None
        or tuple(chosen.lines) == answer.lines
        or answer.confidence > chosen.confidence
    ):
        chosen = answer
    ranked = sorted([answer, *others], key=lambda s: -s.confidence)
    return Resolution(chosen, tuple(ranked)), found.explanation
