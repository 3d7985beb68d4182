"""``splice demo`` end to end: a real repository, the installed driver, a real ``git merge``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_demo_resolves_some_files_and_leaves_markers_in_others(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "splice", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    repo = tmp_path / "repo"
    assert (repo / "billing.py").read_text() == (
        'def price(amount):\n    return format_money(amount, "EUR", rounding=2)\n'
    )
    assert "handleWithRetry" in (repo / "Service.java").read_text()
    assert "<<<<<<<" not in (repo / "Service.java").read_text()
    for name in ("server.go", "api.ts", "Program.cs"):
        assert "<<<<<<< " in (repo / name).read_text()
    assert "splice: Service.java: 1 of 1 conflict resolved" in proc.stdout
    assert "2 of 5 files resolved" in proc.stdout
