"""The HTML report of ``splice ci``: self-contained, and it renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import GitRepo

from splice.cli import main

BASE = "def f():\n    return 0\n"
OURS = "def f():\n    return 10  # <ours>\n"
THEIRS = "def f():\n    return 20\n"
CHROMIUM = next((p for p in ("chromium", "chromium-browser") if shutil.which(p)), None)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
def report(git_repo: GitRepo, tmp_path: Path) -> Path:
    git_repo.write("g.py", "a = 1\n")
    git_repo.conflict_branches({"f.py": (BASE, OURS, THEIRS), "g.py": ("a\n", "b\n", "c\n")})
    out = tmp_path / "report.html"
    args = ["ci", "-C", str(git_repo.path), "--base", "main", "--head", "theirs"]
    result = CliRunner().invoke(main, [*args, "--format", "html", "-o", str(out)])
    assert result.exit_code == 1, result.output
    return out


def test_html_is_self_contained(report: Path) -> None:
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<script" not in page
    assert "return 10  # &lt;ours&gt;" in page  # escaped
    assert page.count('class="sbs"') == 2  # one side-by-side view per conflict


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (Debian: chromium)")
def test_html_renders_in_chromium(report: Path, tmp_path: Path) -> None:
    profile = tmp_path / "profile"
    shot = tmp_path / "report.png"
    base = [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}"]
    url = report.as_uri()
    dom = subprocess.run(
        [*base, "--dump-dom", url], capture_output=True, text=True, timeout=90, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "a human is needed" in dom.stdout and 'id="summary"' in dom.stdout
    proc = subprocess.run(
        [*base, f"--screenshot={shot}", "--window-size=1280,900", url],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 5000
