"""``splice lsp`` driven by a real editor: headless Neovim's built-in LSP client opens a file
with conflict markers (a real record of ../shared/data/merges), receives the diagnostics and
applies a code action through its own ``vim.lsp.buf.code_action``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from splice.resolver.markers import parse
from test_lsp import marked, merged_with, needs_data, real_record

SCRIPT = Path(__file__).resolve().parent / "nvim" / "lsp_client.lua"
NVIM = shutil.which("nvim")
SPLICE = str(Path(sys.executable).parent / "splice")


@needs_data
@pytest.mark.skipif(NVIM is None, reason="Neovim (nvim) is not installed")
def test_neovim_gets_diagnostics_and_applies_an_action(tmp_path: Path) -> None:
    rec = real_record()
    text = marked(rec, "merge")
    conflicts = parse(text).conflicts
    target = tmp_path / Path(rec["path"]).name
    target.write_text(text, encoding="utf-8", newline="")
    report_path = tmp_path / "report.json"
    env = {
        **os.environ,
        "SPLICE_LSP_CMD": json.dumps([SPLICE, "lsp", "--stdio"]),
        "SPLICE_FILE": str(target),
        "SPLICE_ACTION": "Take theirs",
        "SPLICE_REPORT": str(report_path),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "XDG_DATA_HOME": str(tmp_path / "data"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
    }
    assert NVIM is not None
    subprocess.run(
        [NVIM, "--headless", "--clean", "-n", "-c", f"luafile {SCRIPT}"],
        env=env,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=120,
        check=False,
    )
    report = json.loads(report_path.read_text())
    assert report["errors"] == []
    diags = report["diagnostics"]
    assert [d["lnum"] for d in diags] == [c.start for c in conflicts]
    assert all(d["source"] == "splice" and d["severity"] == 3 for d in diags)
    assert all(d["message"].startswith("Merge conflict: ") for d in diags)
    assert {"Take ours", "Take theirs", "Take none"} <= set(report["titles"])
    assert report["after"] == len(conflicts) - 1
    # the first conflict now holds theirs; the others keep their markers
    first = conflicts[0]
    expected = text[: _offset(text, first.start)] + "".join(first.theirs)
    expected += text[_offset(text, first.end) :]
    assert target.read_text(encoding="utf-8") == expected
    if len(conflicts) == 1:
        assert expected == merged_with(rec, "merge", "theirs")


def _offset(text: str, line: int) -> int:
    return sum(len(x) for x in text.splitlines(keepends=True)[:line])
