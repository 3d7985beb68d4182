"""The structured stage in the one pipeline: its answer as a candidate with the stage's own
calibrated confidence, decided by the same rule, through ``splice resolve`` and the git driver."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import GitRepo
from splice.resolver.chunks import split_lines
from splice.resolver.pipeline import merge_file
from splice.resolver.resolvers import Hunk, Resolution, Resolver, Suggestion
from splice.resolver.structured_stage import (
    STRUCTURED_SOURCE,
    calibration,
    confidence,
    with_structured,
)

BASE = "import os\nimport sys\n\n\ndef main():\n    return 0\n"
OURS = "import json\nimport os\nimport sys\n\n\ndef main():\n    return 0\n"
THEIRS = "import abc\nimport os\nimport sys\n\n\ndef main():\n    return 0\n"
MERGED = "import abc\nimport json\nimport os\nimport sys\n\n\ndef main():\n    return 0\n"


class Abstains(Resolver):
    """A resolver with no answer: what the stage adds is all there is."""

    name = "abstains"
    min_confidence = 0.9
    discard_min_confidence = None

    def resolve(self, hunk: Hunk) -> Resolution:
        return Resolution(None)


class Proposes(Resolver):
    """A resolver proposing fixed lines with a fixed confidence."""

    name = "proposes"
    min_confidence = 0.9
    discard_min_confidence = None

    def __init__(self, text: str, conf: float) -> None:
        self.answer = Suggestion(tuple(split_lines(text)), conf, "the model's", "model")

    def resolve(self, hunk: Hunk) -> Resolution:
        return Resolution(self.answer, (self.answer,))


@pytest.fixture
def calibrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "structured.json"
    path.write_text(json.dumps({"by_kind": {"module": 0.97}, "by_lang": {}, "all": 0.6}))
    monkeypatch.setenv("SPLICE_STRUCTURED_CALIBRATION", str(path))
    return path


def test_confidence_by_kind_then_language_then_all() -> None:
    table = {"by_kind": {"class_body": 0.96}, "by_lang": {"go": 0.93}, "all": 0.7}
    assert confidence("class_body", "java", table) == 0.96
    assert confidence("field_declaration_list", "go", table) == 0.93
    assert confidence("object", "javascript", table) == 0.7
    assert confidence("class_body", "java", None) == 0.0


def test_without_a_calibration_the_answer_is_only_a_suggestion(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SPLICE_STRUCTURED_CALIBRATION", str(tmp_path / "missing.json"))
    assert calibration() is None
    outcome = merge_file(BASE, OURS, THEIRS, Abstains(), path="a.py", lang="python")
    (report,) = outcome.hunks
    assert report.answer is None and "<<<<<<<" in outcome.text
    top = report.resolution.chosen
    assert top.source == STRUCTURED_SOURCE and top.confidence == 0.0
    assert "".join(top.lines) == "import abc\nimport json\n"
    assert report.structured.startswith("kept both: merged as members of")


def test_a_calibrated_answer_is_applied_by_the_same_rule(calibrated: Path) -> None:
    outcome = merge_file(BASE, OURS, THEIRS, Abstains(), path="a.py", lang="python")
    (report,) = outcome.hunks
    assert outcome.text == MERGED
    assert report.answer.source == STRUCTURED_SOURCE and report.answer.confidence == 0.97
    assert report.kept.keeps_both
    # the same rule: a stricter threshold than the stage's confidence leaves the markers
    strict = merge_file(
        BASE, OURS, THEIRS, Abstains(), path="a.py", lang="python", min_confidence=0.99
    )
    assert "<<<<<<<" in strict.text and strict.hunks[0].rejected.startswith("confidence 0.97")


def test_the_same_lines_from_the_resolver_are_one_suggestion(calibrated: Path) -> None:
    agree = Proposes("import abc\nimport json\n", 0.5)
    (report,) = merge_file(BASE, OURS, THEIRS, agree, path="a.py", lang="python").hunks
    assert len(report.resolution.suggestions) == 1
    assert report.resolution.chosen.confidence == 0.97  # the higher of the two
    other = Proposes("import json\n", 0.99)  # drops theirs' import: a suggestion only
    (report,) = merge_file(BASE, OURS, THEIRS, other, path="a.py", lang="python").hunks
    assert [s.source for s in report.resolution.suggestions] == ["model", STRUCTURED_SOURCE]
    assert report.answer.source == STRUCTURED_SOURCE  # the discard is never applied


def test_off_switch_and_abstention_are_reported(
    calibrated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = "from x import a\n" + BASE
    theirs = "from x import b\n" + BASE  # the same import (module x) added differently
    (report,) = merge_file(BASE, ours, theirs, Abstains(), path="a.py", lang="python").hunks
    assert report.structured.startswith("abstained: ") and report.answer is None
    monkeypatch.setenv("SPLICE_STRUCTURED", "off")
    outcome = merge_file(BASE, OURS, THEIRS, Abstains(), path="a.py", lang="python")
    assert "<<<<<<<" in outcome.text and outcome.hunks[0].structured == "off (SPLICE_STRUCTURED)"


def test_with_structured_leaves_other_languages_alone() -> None:
    from splice.resolver.pipeline import find_hunks

    _, reports = find_hunks(split_lines("a\n"), split_lines("b\n"), split_lines("c\n"), None)
    resolution = Resolution(None)
    same, said = with_structured(reports[0].hunk, resolution)
    assert same is resolution and said == "abstained: unsupported language"


def test_through_git_and_splice_resolve(git_repo: GitRepo, calibrated: Path) -> None:
    """The driver applies the structured answer; ``splice resolve --explain`` says so."""
    git_repo.conflict_branches({"app.py": (BASE, OURS, THEIRS)})
    git_repo.use_driver("--resolver token-merge")
    result = git_repo.merge()
    assert result.returncode == 0, result.stdout + result.stderr
    assert git_repo.read("app.py").decode() == MERGED
    # without the driver: the conflict is left in the file, then resolved by splice resolve
    git_repo.git("reset", "-q", "--hard", "HEAD~1")  # undo the merge commit
    git_repo.git("config", "--unset", "merge.splice.driver")
    (git_repo.path / ".git" / "info" / "attributes").unlink()
    assert git_repo.merge().returncode != 0
    import subprocess

    proc = subprocess.run(
        ["splice", "resolve", "--resolver", "token-merge", "--explain", "app.py"],
        cwd=git_repo.path,
        capture_output=True,
        text=True,
    )
    assert "merged as members of" in proc.stdout, proc.stdout + proc.stderr
    assert git_repo.read("app.py").decode() == MERGED


def test_explain_says_why_the_stage_abstained(tmp_path: Path, git_env: Path) -> None:
    import subprocess

    marked = tmp_path / "app.py"
    marked.write_text(
        "<<<<<<< ours\nfrom x import a\n||||||| base\n=======\nfrom x import b\n>>>>>>> theirs\n"
        + BASE
    )
    proc = subprocess.run(
        ["splice", "resolve", "--resolver", "token-merge", "--explain", str(marked)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert "structured merge abstained: " in proc.stdout, proc.stdout + proc.stderr
    assert "<<<<<<<" in marked.read_text()


def test_agreeing_with_the_classifier_uses_the_agreement_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = {
        "by_kind": {},
        "by_lang": {},
        "all": 0.6,
        "agreeing": [[0.5, 0.8], [0.8, 0.93]],
        "agreeing_source": "model",
    }
    path = tmp_path / "structured.json"
    path.write_text(json.dumps(table))
    monkeypatch.setenv("SPLICE_STRUCTURED_CALIBRATION", str(path))
    assert confidence("module", "python", table, 0.85) == 0.93
    assert confidence("module", "python", table, 0.6) == 0.8
    assert confidence("module", "python", table, 0.4) == 0.6
    same = Proposes("import abc\nimport json\n", 0.85)  # source "model", below 0.9 alone
    outcome = merge_file(BASE, OURS, THEIRS, same, path="a.py", lang="python")
    assert outcome.text == MERGED and outcome.hunks[0].answer.confidence == 0.93
    policy = Proposes("import abc\nimport json\n", 0.85)
    policy.answer = Suggestion(policy.answer.lines, 0.85, "the policy's", "token-merge")
    outcome = merge_file(BASE, OURS, THEIRS, policy, path="a.py", lang="python")
    assert "<<<<<<<" in outcome.text  # another source's confidence means something else
