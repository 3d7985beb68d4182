"""``import splice``: the library's two calls, on a real conflict, and its lazy import."""

from __future__ import annotations

import subprocess
import sys

import splice

BASE = "import os\n\n\ndef f(x):\n    return x + 1\n"
OURS = "import os\nimport re\n\n\ndef f(x):\n    return x + 1\n"
THEIRS = "import os\nimport sys\n\n\ndef f(x):\n    return x + 1\n"


def test_merge_and_resolve_agree_and_say_what_they_kept() -> None:
    merged = splice.merge(BASE, OURS, THEIRS, path="a.py", style="diff3")
    assert len(merged.hunks) == 1
    report = merged.hunks[0]
    if report.answer is not None:
        assert "import re" in merged.text and "import sys" in merged.text
        assert report.kept is not None and report.kept.keeps_both
    else:
        assert "<<<<<<<" in merged.text and report.rejected
    plain = splice.merge(BASE, OURS, THEIRS, path="a.py", style="diff3", resolver="ours")
    assert plain.resolved == 0  # "ours" drops theirs' import: a suggestion, never applied
    assert plain.hunks[0].kept is not None and not plain.hunks[0].kept.keeps_both
    again = splice.resolve(plain.text, path="a.py")
    assert again.text == merged.text
    assert merged.summary().startswith(f"{merged.resolved} of 1 conflict resolved")


def test_import_splice_is_cheap() -> None:
    heavy = "('splice.', 'numpy', 'onnxruntime')"
    code = f"import sys, splice; print(sorted(m for m in sys.modules if m.startswith({heavy})))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
