"""Every front end writes the same text for the same conflict (one pipeline, one decision rule).

Real conflicts from the validation repositories are committed into one real repository (base on
``main``, ours on ``main``, theirs on a branch; one file per conflict record), then merged four
ways with the shipped ``auto`` resolver, diff3 conflict style:

- the git merge driver (``splice install``, then ``git merge``);
- ``splice resolve`` on git's diff3 markers after a plain ``git merge`` (the index stages there);
- the language server's fix-all (its analysis of the marked file, with the index stages);
- ``splice ci`` (the merged text it reports for each file).

Each file must come out byte for byte the same from all four.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import BIN_DIR, GitRepo

from splice.data.dataset import iter_records

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "merges"
#: Conflict records sampled (one per validation repository, then round-robin), and how many of
#: them are picked among those the shipped decision resolves (so the comparison covers answers).
SAMPLE = 30
RESOLVABLE = 6
EXT = {"python": ".py", "java": ".java", "javascript": ".js", "typescript": ".ts"}
EXT |= {"csharp": ".cs", "go": ".go"}


def _policy_applies(rec: dict) -> bool:
    """Whether the shipped decision applies the token-merge policy's answer somewhere in ``rec``."""
    import json

    from splice.models.serving.neural import Calibration, default_model_dir
    from splice.resolver.decision import DecisionRule
    from splice.resolver.pipeline import merge_file
    from splice.resolver.policy import SafeTokenMerge

    calib = json.loads((default_model_dir() / "calibration.json").read_text())
    rule = DecisionRule(Calibration.from_json(calib).decision)
    out = merge_file(rec["base"], rec["ours"], rec["theirs"], SafeTokenMerge(), rule=rule)
    return any(h.applied for h in out.hunks)


def _sample() -> list[dict]:
    if not DATA.is_dir():
        pytest.skip(f"no data set at {DATA}")
    out, resolvable = [], []
    for rec in iter_records(DATA, split="val", per_repo_limit=40, limit=2000):
        small = max(len(rec[k]) for k in ("base", "ours", "theirs")) < 40_000
        if not (small and rec["lang"] in EXT and 1 <= rec["n_conflicts"] <= 6):
            continue
        if len(out) < SAMPLE - RESOLVABLE and rec["repo"] not in {r["repo"] for r in out[-3:]}:
            out.append(rec)
        elif len(resolvable) < RESOLVABLE and rec["n_conflicts"] == 1 and _policy_applies(rec):
            resolvable.append(rec)
        if len(out) + len(resolvable) == SAMPLE:
            break
    return out + resolvable


def _repo(path: Path, records: list[dict]) -> tuple[GitRepo, dict[str, dict]]:
    path.mkdir()
    repo = GitRepo(path)
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.name", "Splice Tests")
    repo.git("config", "user.email", "tests@splice.invalid")
    repo.git("config", "commit.gpgsign", "false")
    repo.git("config", "merge.conflictStyle", "diff3")
    files = {f"f{i:02d}{EXT[r['lang']]}": r for i, r in enumerate(records)}
    repo.conflict_branches({name: (r["base"], r["ours"], r["theirs"]) for name, r in files.items()})
    return repo, files


def _splice(repo: GitRepo, *args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("splice", path=BIN_DIR) or "splice"
    return subprocess.run(
        [exe, *args], cwd=repo.path, capture_output=True, text=True, check=False, timeout=900
    )


def _fix_all(repo: GitRepo, name: str) -> str:
    """The file after the language server's fix-all (its analysis and its edit)."""
    from splice.lsp.analysis import analyze
    from splice.lsp.engine import Engine
    from splice.lsp.settings import Settings

    from splice.data.git import index_stages

    engine = _fix_all.engine = getattr(_fix_all, "engine", None) or Engine(Settings(), print)
    path = repo.path / name
    text = path.read_bytes().decode("utf-8")
    analysis = analyze(
        text,
        uri=path.as_uri(),
        version=1,
        path=str(path),
        engine=engine,
        min_confidence=Settings().confidence_threshold,
        stages=lambda: index_stages(str(path)),
    )
    out, done = [], 0
    for view, candidate in analysis.fix_all:
        out += [text[done : view.start], candidate.text]
        done = view.end
    return "".join(out) + text[done:]


@pytest.mark.slow
def test_driver_resolve_lsp_and_ci_write_the_same_text(tmp_path: Path, git_env: Path) -> None:
    records = _sample()
    assert len(records) >= 20

    driven, files = _repo(tmp_path / "driver", records)
    assert _splice(driven, "install").returncode == 0
    # no time-out: on a loaded machine a large file may take the driver past its 10 s default,
    # and its fallback (git's own merge) is not what this test compares
    command = driven.git("config", "merge.splice.driver").stdout.strip()
    driven.git(
        "config", "merge.splice.driver", command.replace(" driver ", " driver --timeout 600 ", 1)
    )
    driven.merge()

    marked, _ = _repo(tmp_path / "resolve", records)
    ci = _splice(marked, "ci", "--base", "main", "--head", "theirs", "--format", "json")
    assert ci.returncode in (0, 1), ci.stderr
    import json

    ci_text = {f["path"]: f["merged"] for f in json.loads(ci.stdout)["files"]}
    assert marked.merge().returncode == 1
    # git merge's own merge (ort) may cut a conflict differently from ``git merge-file``, which
    # the driver reproduces; ``checkout --conflict`` writes the index stages' merge-file merge
    unmerged = marked.git("diff", "--name-only", "--diff-filter=U").stdout.split()
    marked.git("checkout", "--conflict=diff3", "--", *unmerged)
    lsp_text = {name: _fix_all(marked, name) for name in files if "<<<<<<<" in _text(marked, name)}
    res = _splice(marked, "resolve")
    assert res.returncode in (0, 1), res.stderr

    differ = []
    applied = 0
    for name in files:
        want = _text(driven, name)
        got = {"resolve": _text(marked, name), "ci": _unlabelled(ci_text.get(name))}
        if name in lsp_text:
            got["lsp"] = _unlabelled(lsp_text[name])
        if name not in ci_text:  # git merged it cleanly: nothing for ci to report
            assert "<<<<<<<" not in want
            del got["ci"]
        bad = [k for k, v in got.items() if v != want]
        if bad:
            diff = difflib.unified_diff(
                want.splitlines(), got[bad[0]].splitlines(), "driver", bad[0], lineterm="", n=1
            )
            detail = "\n".join(list(diff)[:40])
            differ.append(f"{name} ({files[name]['id']}): {', '.join(bad)}\n{detail}")
        applied += want != _text_plain(marked, name)
    assert not differ, "front ends disagree:\n" + "\n".join(differ)
    assert applied > 0, "nothing was resolved: the comparison says nothing"


def _text(repo: GitRepo, name: str) -> str:
    return _unlabelled((repo.path / name).read_bytes().decode("utf-8"))


def _unlabelled(text: str | None) -> str | None:
    """``text`` with the labels cut from its marker lines (git < 2.44 gives a driver no labels,
    so its markers say "ours" where git's own say "HEAD")."""
    if text is None:
        return None
    return re.sub(r"(?m)^(<{7}|\|{7}|>{7})[^\r\n]*", r"\1", text)


def _text_plain(repo: GitRepo, name: str) -> str:
    """git's own merge of the file (markers left), from its index stages."""
    proc = subprocess.run(
        ["git", "checkout", "--conflict=diff3", "--", name],
        cwd=repo.path,
        capture_output=True,
        check=False,
        env={**os.environ},
    )
    text = _text(repo, name) if proc.returncode == 0 else ""
    return text
