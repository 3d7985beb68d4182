"""The contract every registered resolver keeps (run over the whole registry).

- deterministic: the same hunks give the same answers, one by one or all at once;
- never raises: an empty hunk, a huge hunk, a hunk of odd bytes all get an answer or an
  abstention;
- its answers are well formed: confidences in [0, 1], lines that end in a newline except the last;
- its threshold is reachable: on hunks any sensible resolver is sure of, some answer clears the
  confidence the decision rule asks of it.
"""

from __future__ import annotations

import pytest
from splice.models.serving import load_resolver
from splice.resolver.chunks import Conflict, split_lines
from splice.resolver.decision import DecisionRule
from splice.resolver.resolvers import Hunk, Resolution, resolver_names


def _hunk(base: str, ours: str, theirs: str, lang: str | None = "python") -> Hunk:
    def lines(text: str) -> tuple[str, ...]:
        return tuple(split_lines(text))

    return Hunk(Conflict(lines(base), lines(ours), lines(theirs)), lang, path="x.py")


EASY = [
    # theirs made a subset of ours' edits
    _hunk("a = f(1)\nb = 2\n", "a = f(1, 2)\nb = 3\n", "a = f(1, 2)\nb = 2\n"),
    # theirs changed whitespace only
    _hunk("def f():\n    return 1\n", "def f():\n    return 2\n", "def f():\n    return  1\n"),
    # both made the same edit, plus one more on ours
    _hunk("x = [1, 2]\n", "x = [1, 2, 3]\ny = 0\n", "x = [1, 2, 3]\n"),
]
ODD = [
    _hunk("", "", ""),
    _hunk("", "a\n", ""),
    _hunk("x\n", "", "y\n"),
    _hunk("a\n", "b", "c"),  # no final newline
    _hunk("\x00\x01\n", "\ufeff\u00a0\n", "\r\r\n", None),
    _hunk("v = 0\n" * 4000, "v = 1\n" * 4000, "v = 2\n" * 4000),
    _hunk("é" * 20000 + "\n", "ü" * 20000 + "\n", "ß" * 20000 + "\n", "java"),
]


def _names() -> list:
    """Every registered resolver; the neural ones' threshold check scans real conflicts (slow)."""
    names = sorted({*resolver_names(), "auto", "model"})
    return [pytest.param(n, marks=pytest.mark.slow) if n == "model" else n for n in names]


def _check(hunk: Hunk, res: Resolution) -> None:
    for s in ([res.chosen] if res.chosen else []) + list(res.suggestions):
        assert 0.0 <= s.confidence <= 1.0
        assert all(line.endswith("\n") for line in s.lines[:-1])


@pytest.fixture(scope="module", params=_names())
def resolver(request: pytest.FixtureRequest):
    return load_resolver(request.param)


def test_deterministic_and_batch_equals_single(resolver) -> None:
    hunks = EASY + ODD
    first = resolver.resolve_many(hunks)
    assert resolver.resolve_many(hunks) == first
    if resolver.name not in ("model", "auto"):  # their reranker reads the file's other hunks
        assert [resolver.resolve(h) for h in hunks] == first
    for hunk, res in zip(hunks, first, strict=True):
        _check(hunk, res)


def test_never_raises_on_odd_hunks(resolver) -> None:
    for hunk in ODD:
        _check(hunk, resolver.resolve(hunk))
    assert len(resolver.resolve_many([])) == 0


def _real_hunks(limit: int = 400) -> list[list[Hunk]]:
    """The hunks of real validation conflicts, file by file (skips without the data set)."""
    from pathlib import Path

    from splice.resolver.pipeline import find_hunks

    from splice.data.dataset import iter_records

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"
    if not data.is_dir():
        pytest.skip(f"no data set at {data}")
    files = []
    for rec in iter_records(data, split="val", per_repo_limit=40, limit=limit):
        texts = (split_lines(rec[k]) for k in ("base", "ours", "theirs"))
        files.append([r.hunk for r in find_hunks(*texts, rec["lang"], rec["path"])[1]])
    return files


def test_threshold_reachable(resolver) -> None:
    """Some answer clears the rule: on the easy hunks, else on real validation conflicts."""
    rule = DecisionRule.for_resolver(resolver)
    assert 0.0 < rule.min_confidence <= 1.0
    if rule.discard_min_confidence is not None:
        assert rule.min_confidence <= rule.discard_min_confidence <= 1.0

    def best(hunks: list[Hunk]) -> float:
        answers = resolver.resolve_many(hunks)
        return max((s.confidence for r in answers for s in r.suggestions), default=0.0)

    if best(EASY) >= rule.min_confidence:
        return
    for hunks in _real_hunks():
        if hunks and best(hunks) >= rule.min_confidence:
            return
    pytest.fail(f"{resolver.name}: no answer reaches {rule.min_confidence:.2f}")
