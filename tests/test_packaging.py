"""The wheel: one ``splice`` namespace, the shipped model inside, no setuptools warnings."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_holds_one_namespace_and_the_shipped_model(tmp_path: Path) -> None:
    pytest.importorskip("setuptools", reason="builds the wheel with the installed setuptools")
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout to list the tracked files")
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    src = tmp_path / "src"
    for name in filter(None, (t.decode() for t in tracked)):
        if (ROOT / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, src / name)
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
        + ["-w", str(tmp_path / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    assert "would be ignored" not in built.stdout + built.stderr
    (wheel,) = (tmp_path / "dist").glob("splice_merge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    dist_info = "-".join(wheel.name.split("-")[:2]) + ".dist-info"
    assert {n.split("/")[0] for n in names} == {"splice", dist_info}  # no models/, hooks/
    for part in ("resolver", "models", "models/merging/methods", "lsp", "hooks"):
        assert f"splice/{part}/__init__.py" in names, part
    shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith("splice/models/shipped/")}
    assert {"model.onnx", "model.safetensors", "config.json", "tokenizer.json"} <= shipped
    assert {"calibration.json", "MODEL_CARD.md"} <= shipped
