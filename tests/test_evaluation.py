"""The evaluation harness: locating human resolutions, metrics, and ``splice eval`` end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from splice.resolver.chunks import Conflict, Stable, split_lines

from splice.data.evaluation import evaluate, format_table, locate_resolutions, normalize, read_rows

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data set not found at {DATA}")


def test_normalize_ignores_all_whitespace() -> None:
    assert normalize("a(b,  c)\r\n\t") == normalize("a( b, c )\n") == "a(b,c)"


def _chunks() -> list:
    return [
        Stable(("head\n", "one\n")),
        Conflict(("x\n",), ("x1\n",), ("x2\n",)),
        Stable(("mid\n",)),
        Conflict(("y\n",), ("y1\n",), ("y2\n",)),
        Stable(("tail\n",)),
    ]


def test_locates_each_resolution_between_its_stable_neighbours() -> None:
    merged = split_lines("head\none\nx1\nx2\nmid\n\ntail\n")
    assert locate_resolutions(_chunks(), merged) == [("x1\n", "x2\n"), ("\n",)]


def test_resolution_with_edited_context_is_not_located() -> None:
    merged = split_lines("head\none\nx1\nMID CHANGED\ny1\ntail\n")
    assert locate_resolutions(_chunks(), merged) == [None, None]


def test_conflict_at_file_edges() -> None:
    chunks = [Conflict(("a\n",), ("b\n",), ("c\n",)), Stable(("s\n",)), Conflict((), ("d\n",), ())]
    assert locate_resolutions(chunks, split_lines("b\nc\ns\nd\n")) == [("b\n", "c\n"), ("d\n",)]


def _record(base: str, ours: str, theirs: str, merged: str) -> dict:
    return {"base": base, "ours": ours, "theirs": theirs, "merged": merged, "lang": "python"}


def test_metrics_on_handmade_records() -> None:
    base = "def f():\n    return g(a, b)  \n"
    ours = "def f():\n    return g(a, b)\n"  # whitespace only
    theirs = "def f():\n    return g(a2, b)  \n"
    records = [
        _record(base, ours, theirs, "def f():\n    return g(a2, b)\n"),  # token-merge right
        _record(base, "x = 1\n", "x = 2\n", "x = 1\n"),  # ours right, token-merge abstains
    ]
    report = evaluate(
        records, ["ours", "token-merge"], dataset="t", workers=1, progress=False, allow_discard=True
    )
    assert report["n_files"] == 2 and report["n_hunks"] == 2 and report["unlocated"] == 0
    ours = report["resolvers"]["ours"]["overall"]
    assert (ours["coverage"], ours["precision"]) == (1.0, 0.5)
    tm = report["resolvers"]["token-merge"]["overall"]
    assert (tm["proposed"], tm["correct"], tm["coverage"], tm["precision"]) == (1, 1, 0.5, 1.0)
    assert report["resolvers"]["token-merge"]["by_lang"]["python"]["hunks"] == 2
    assert report["expressible"]["overall"] == 1.0
    # per repository, and their mean with each repository counted once
    records += [_record(base, "y = 1\n", "y = 2\n", "y = 1\n") for _ in range(2)]
    for record, repo in zip(records, ["a/one", "b/two", "b/two", "b/two"], strict=True):
        record["repo"] = repo
    report = evaluate(
        records, ["theirs"], dataset="t", workers=1, progress=False, allow_discard=True
    )
    res = report["resolvers"]["theirs"]
    assert res["overall"]["accuracy"] == 0.25
    assert {r: (m["hunks"], m["accuracy"]) for r, m in res["by_repo"].items()} == {
        "a/one": (1, 1.0),
        "b/two": (3, 0.0),
    }
    assert res["repo_mean"] == {
        "coverage": 1.0,
        "accuracy": 0.5,
        "top1_always": 0.5,
        "top3_always": 0.5,
    }
    table = format_table(report)
    assert "theirs, mean over 2 repositories: coverage 100.0%, accuracy 50.0%" in table


@needs_data
def test_splice_eval_on_real_data_writes_the_documented_schema(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "splice",
            "eval",
            "--data",
            str(DATA),
            "--limit",
            "40",
            "--workers",
            "1",
            "--no-progress",
            "--json",
            str(out),
            "--allow-discard",  # the baselines' answers drop a side: judge them all
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(out.read_text())
    assert {"dataset", "n_files", "n_hunks", "unlocated", "resolvers", "expressible"} <= set(report)
    assert report["n_files"] == 40 and report["n_hunks"] >= 40
    assert set(report["resolvers"]) == {"ours", "theirs", "token-merge-naive", "token-merge"}
    for res in report["resolvers"].values():
        assert {"coverage", "precision", "accuracy"} <= set(res["overall"])
        assert res["by_lang"]
    ours, theirs = (report["resolvers"][k]["overall"] for k in ("ours", "theirs"))
    assert ours["coverage"] == theirs["coverage"] == 1.0
    # Ours and theirs are both right only where the sides agree ignoring whitespace.
    assert ours["precision"] + theirs["precision"] <= 1.2
    assert "token-merge" in proc.stdout


def test_splice_eval_reports_a_missing_data_folder(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "splice", "eval", "--data", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0
    assert "data directory not found" in proc.stderr


def test_coverage_and_precision_by_what_the_answer_keeps(tmp_path: Path) -> None:
    records = [
        # ours drops theirs' edit, and here the human kept ours: right, drops-theirs
        _record("x = f(a)\n", "x = f(a, b)\n", "x = g(a)\n", "x = f(a, b)\n"),
        # the human combined both: ours is wrong, drops-theirs
        _record("y = f(a)\n", "y = f(a, b)\n", "y = g(a)\n", "y = g(a, b)\n"),
        # theirs changed only whitespace: taking ours keeps both
        _record("z = f(a)\n", "z = f(a, c)\n", "z = f( a )\n", "z = f(a, c)\n"),
    ]
    rows = tmp_path / "rows.jsonl.gz"
    # judged like the rest, so that the drops show up among the applied answers
    report = evaluate(
        records,
        ["ours", "token-merge"],
        dataset="t",
        workers=1,
        progress=False,
        rows_path=rows,
        allow_discard=True,
    )
    kinds = report["resolvers"]["ours"]["overall"]["by_kind"]
    assert (kinds["drops-theirs"]["proposed"], kinds["drops-theirs"]["correct"]) == (2, 1)
    assert kinds["drops-theirs"]["precision"] == 0.5
    assert (kinds["both"]["proposed"], kinds["both"]["precision"]) == (1, 1.0)
    assert kinds["drops-ours"]["proposed"] == 0
    assert report["resolvers"]["ours"]["by_lang"]["python"]["by_kind"]["both"]["proposed"] == 1
    # the token merge's combination keeps both (right once); the third hunk's edits touch
    tm = report["resolvers"]["token-merge"]["overall"]["by_kind"]
    assert (tm["both"]["top"], tm["both"]["top_correct"]) == (2, 1)
    assert "| ours | all | drops-theirs | 2 | 66.7% | 50.0% |" in format_table(report)
    # every hunk's candidates are saved for offline fitting
    saved = read_rows(rows)
    assert len(saved) == 3 and {h["truth"] for h in saved} == {r["merged"] for r in records}
    cand = saved[1]["resolvers"]["ours"]["candidates"][0]
    assert (cand["kind"], cand["correct"], cand["syntax_ok"]) == ("drops-theirs", False, True)
    assert saved[1]["resolvers"]["ours"]["applied"] == records[1]["ours"]
