"""The structured stage of the pipeline: the syntax-tree merge's answer as one more candidate.

For every hunk the pipeline asks a resolver about, :func:`with_structured` runs
:func:`splice.resolver.structured.attempt` and, when it answers, adds its lines to the
resolution as a :class:`~splice.resolver.resolvers.Suggestion` of source
:data:`STRUCTURED_SOURCE` ("kept both: merged as members of class Foo ..."). Its confidence is
the stage's own, calibrated on validation repositories (``resolver/structured.json``, written by
``scripts/eval_structured.py report --write``): the 95% lower bound of the precision of its
answers by parent node type, else by language, else overall; and, when the classifier's top
answer (source ``agreeing_source``) is the same text, whitespace aside, the bound of the answers
that agreed with a classifier at least as confident, if higher (``agreeing``: cut -> bound).
The answer is then decided by the same rule as every other (:mod:`splice.resolver.decision`):
what it keeps, its group's threshold, the syntax check. Without a calibration file its
confidence is 0: a suggestion only. When the resolver already proposes the same lines, the one
suggestion keeps the higher confidence and says both.

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

from splice.resolver.chunks import text_key
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


def confidence(
    kind: str, lang: str | None, table: dict[str, Any] | None, agreeing: float | None = None
) -> float:
    """The confidence of an answer merged under a parent of node type ``kind`` in ``lang``;
    ``agreeing``: the resolver's confidence in the same text, when its top answer is it."""
    if table is None:
        return 0.0
    by_kind, by_lang = table.get("by_kind") or {}, table.get("by_lang") or {}
    if kind in by_kind:
        own = float(by_kind[kind])
    elif lang in by_lang:
        own = float(by_lang[lang])
    else:
        own = float(table["all"])
    if agreeing is not None:
        cuts = [float(c) for cut, c in table.get("agreeing") or () if agreeing >= float(cut)]
        own = max([own, *cuts])
    return own


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
    chosen, table = resolution.chosen, calibration()
    agreeing = None
    if (
        chosen is not None
        and table is not None
        and chosen.source == table.get("agreeing_source")
        and text_key("".join(chosen.lines)) == text_key("".join(found.lines))
    ):
        agreeing = chosen.confidence
    conf = confidence(found.kind, hunk.lang, table, agreeing)
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
