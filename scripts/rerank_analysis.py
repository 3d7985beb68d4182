"""How far the file-context reranker can go: two diagnostics over calibration rows.

Both work on :class:`~splice.models.training.hunk_calibration.HunkCandidates` rows (``splice
calibrate
--save-rows``) and report top-1 accuracy, the share of hunks whose first candidate is right:

* :func:`in_sample_bound` fits the reranker on each group's own hunks (a language, or a
  repository) and scores those same hunks. No deployed reranker sees its test hunks, so this is
  an optimistic bound for reranking these candidates with these features: a group that misses a
  target even here needs better candidates or scores, not a better fit.
* :func:`adapt_by_time` asks whether a repository's own earlier merges teach anything about its
  later ones: per repository, the merges in date order, the shipped weights plus a correction
  fitted on the earlier half (L2-shrunk to zero, i.e. towards the shipped weights), scored on
  the later half against the shipped weights alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from splice.models.training.hunk_calibration import HunkCandidates, Rerank, fit_rerank, outcomes

#: The shipped route weights (``calibration.json``: token_weight, clean_weight).
ROUTES = (0.5, 0.5)


def _top1(hunks: Sequence[HunkCandidates], weights: Rerank) -> float:
    """Share of ``hunks`` whose best candidate under ``weights`` is right (none: wrong)."""
    return float(outcomes(hunks, *ROUTES, weights)[1].mean()) if hunks else 0.0


@dataclass
class GroupBound:
    """Top-1 of one group: with the given weights, and with weights fitted on the group itself."""

    group: str
    hunks: int
    top1_given: float
    top1_in_sample: float
    #: The group's hunks, each repository with weights fitted on its own hunks (None: the
    #: group is one repository, or the per-repository fits were not asked for).
    top1_in_sample_per_repo: float | None = None


def in_sample_bound(
    hunks: Sequence[HunkCandidates],
    weights: np.ndarray,
    by: str = "lang",
    per_repo: bool = True,
    min_hunks: int = 50,
    l2: float = 1e-3,
) -> list[GroupBound]:
    """Per group of ``hunks`` (attribute ``by``: ``"lang"`` or ``"repo"``) with at least
    ``min_hunks`` rows: top-1 under ``weights`` and under a reranker fitted on the group's own
    hunks; with ``per_repo``, also with one fit per repository of the group (module doc)."""
    groups: dict[str, list[HunkCandidates]] = {}
    for h in hunks:
        groups.setdefault(getattr(h, by), []).append(h)
    out = []
    for name in sorted(groups, key=lambda g: (-len(groups[g]), g)):
        mine = groups[name]
        if len(mine) < min_hunks:
            continue
        per = None
        if per_repo and by != "repo":
            right = 0.0
            for repo in sorted({h.repo for h in mine}):
                theirs = [h for h in mine if h.repo == repo]
                right += _top1(theirs, fit_rerank(theirs, ROUTES, l2=l2)) * len(theirs)
            per = right / len(mine)
        out.append(
            GroupBound(
                group=name,
                hunks=len(mine),
                top1_given=_top1(mine, weights),
                top1_in_sample=_top1(mine, fit_rerank(mine, ROUTES, l2=l2)),
                top1_in_sample_per_repo=per,
            )
        )
    return out


@dataclass
class Adaptation:
    """One repository's later merges: top-1 with the given weights and with each correction."""

    repo: str
    early_hunks: int
    late_hunks: int
    top1_given: float
    #: L2 strength of the correction -> top-1 on the later half with it.
    top1_adapted: dict[float, float]


def _merge_key(h: HunkCandidates) -> tuple[str, str]:
    """(date, merge) of the hunk's record: hunks of one merge commit stay together."""
    return h.date, h.record_id.split(":", 1)[0]


def adapt_by_time(
    hunks: Sequence[HunkCandidates],
    weights: np.ndarray,
    l2s: Sequence[float] = (1e-3, 1e-1, 1.0, 10.0),
    min_hunks: int = 20,
) -> list[Adaptation]:
    """Per repository whose earlier and later halves of merges (by date; a merge never on both
    sides) each hold at least ``min_hunks`` hunks: top-1 on the later half with ``weights``, and
    with ``weights`` plus a correction fitted on the earlier half for each L2 strength."""
    repos: dict[str, list[HunkCandidates]] = {}
    for h in hunks:
        if h.features is not None and len(h.right):
            repos.setdefault(h.repo, []).append(h)
    out = []
    for repo in sorted(repos, key=lambda r: (-len(repos[r]), r)):
        rows = repos[repo]
        merges = sorted({_merge_key(h) for h in rows})
        cut = merges[len(merges) // 2]
        early = [h for h in rows if _merge_key(h) < cut]
        late = [h for h in rows if _merge_key(h) >= cut]
        if len(early) < min_hunks or len(late) < min_hunks:
            continue
        adapted = {
            l2: _top1(late, weights + fit_rerank(early, ROUTES, base=weights, l2=l2)) for l2 in l2s
        }
        out.append(
            Adaptation(
                repo=repo,
                early_hunks=len(early),
                late_hunks=len(late),
                top1_given=_top1(late, weights),
                top1_adapted=adapted,
            )
        )
    return out
