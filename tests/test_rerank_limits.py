"""Calibration rows on disk and the reranker's limits (scripts/rerank_analysis.py)."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
from splice.models.serving.rerank import FEATURES
from splice.models.training.hunk_calibration import HunkCandidates, load_rows, save_rows

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from rerank_analysis import adapt_by_time, in_sample_bound  # noqa: E402

K = FEATURES.index("covers_theirs_added_lines")


def _row(rng: np.random.Generator, repo: str, lang: str, date: str, rule: int) -> HunkCandidates:
    """Two candidates; the right one has feature K = ``rule`` (1 or 0), the mixture is a coin."""
    good = int(rng.integers(2))
    x = rng.normal(scale=0.1, size=(2, len(FEATURES)))
    x[:, K] = 1 - rule
    x[good, K] = rule
    p = rng.uniform(0.4, 0.6)
    probs = np.array([p, 1 - p])
    return HunkCandidates(
        lang=lang,
        repo=repo,
        token_p=probs,
        hunk_p=probs,
        clean=False,
        has_token=False,
        right=np.arange(2) == good,
        date=date,
        record_id=f"{repo}@{date}:f.py",
        sides=np.array([1, 2], dtype=np.int8),
        features=x,
    )


def test_rows_survive_the_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [_row(rng, "a/b", "python", f"2024-01-{i + 1:02d}", 1) for i in range(5)]
    rows.append(HunkCandidates("go", "c/d", np.zeros(0), np.zeros(0), True, False))
    save_rows(rows, tmp_path / "val.jsonl.gz")
    back = load_rows(tmp_path / "val.jsonl.gz")
    assert len(back) == len(rows)
    for a, b in zip(rows, back, strict=True):
        for f in fields(a):
            u, v = getattr(a, f.name), getattr(b, f.name)
            if isinstance(u, np.ndarray):
                assert u.dtype == v.dtype and np.array_equal(u, v), f.name
            else:
                assert u == v, f.name


def test_in_sample_fit_finds_each_group_s_own_rule() -> None:
    """Repository x wants feature K set, repository y wants it clear: one fit over both can't
    serve both, one fit per repository can; zero weights leave the coin."""
    rng = np.random.default_rng(1)
    rows = [_row(rng, "o/x", "java", "2024-01-01", 1) for _ in range(200)]
    rows += [_row(rng, "o/y", "java", "2024-01-01", 0) for _ in range(200)]
    (java,) = in_sample_bound(rows, np.zeros(len(FEATURES)), by="lang")
    assert java.group == "java" and java.hunks == 400
    assert 0.35 < java.top1_given < 0.65
    assert java.top1_in_sample < 0.75
    assert java.top1_in_sample_per_repo is not None and java.top1_in_sample_per_repo > 0.95
    by_repo = in_sample_bound(rows, np.zeros(len(FEATURES)), by="repo")
    assert [b.group for b in by_repo] == ["o/x", "o/y"]
    assert all(b.top1_in_sample > 0.95 and b.top1_in_sample_per_repo is None for b in by_repo)


def test_adaptation_helps_a_steady_repository_and_hurts_a_changing_one() -> None:
    rng = np.random.default_rng(2)
    steady = [_row(rng, "o/steady", "go", f"2024-01-{1 + i // 10:02d}", 1) for i in range(200)]
    changing = [
        _row(rng, "o/changing", "go", f"2024-02-{1 + i // 10:02d}", int(i < 100))
        for i in range(200)
    ]
    zero = np.zeros(len(FEATURES))
    out = {a.repo: a for a in adapt_by_time(steady + changing, zero, l2s=(1e-3,))}
    assert set(out) == {"o/steady", "o/changing"}
    s, c = out["o/steady"], out["o/changing"]
    assert s.early_hunks + s.late_hunks == 200 and s.early_hunks >= 90
    assert s.top1_adapted[1e-3] > 0.95 > s.top1_given + 0.3
    assert c.top1_adapted[1e-3] < 0.05  # learnt the old rule, which now always misleads
    # the shipped weights already know the steady rule: nothing left to adapt
    knows = zero.copy()
    knows[K] = 20.0
    (s2,) = [a for a in adapt_by_time(steady, knows, l2s=(1e-3,))]
    assert s2.top1_given > 0.95 and s2.top1_adapted[1e-3] > 0.95


def test_the_script_prints_both_tables_and_writes_json(tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    rng = np.random.default_rng(3)
    rows = [_row(rng, "o/x", "java", f"2024-03-{1 + i // 10:02d}", 1) for i in range(120)]
    rows += [_row(rng, "o/y", "python", f"2024-04-{1 + i // 10:02d}", 0) for i in range(120)]
    save_rows(rows, tmp_path / "val.jsonl.gz")
    calib = tmp_path / "calibration.json"
    calib.write_text(json.dumps({"rerank": {"weights": [0.0] * len(FEATURES)}}))
    script = Path(__file__).resolve().parents[1] / "scripts" / "rerank_limits.py"
    out = tmp_path / "limits.json"
    args = [sys.executable, str(script), "--rows", str(tmp_path), "--calibration", str(calib)]
    done = subprocess.run([*args, "--json", str(out)], capture_output=True, text=True, check=True)
    assert "240 validation hunks from 2 repositories" in done.stdout
    assert "mean over repositories" in done.stdout
    report = json.loads(out.read_text())
    assert {b["group"] for b in report["in_sample_bound"]} == {"java", "python"}
    assert all(b["top1_in_sample"] > 0.95 for b in report["in_sample_bound"])
    assert {a["repo"] for a in report["adapt_by_time"]} == {"o/x", "o/y"}
    calib.write_text("{}")
    bad = subprocess.run(args, capture_output=True, text=True)
    assert bad.returncode == 1 and "no reranker weights" in bad.stderr
