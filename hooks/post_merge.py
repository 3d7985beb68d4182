"""The ``post-merge`` hook: a summary of what Splice's merge driver did in the merge just made.

git runs it after a merge that needed no manual step; it reads the driver's log (see
:mod:`splice.hooks.merge_log`) from the time the merge began (``ORIG_HEAD`` is written then),
prints one line per file and a total, and empties the log. It never fails the merge: exit 0.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from splice.hooks import merge_log


def _git_dir() -> Path | None:
    proc = subprocess.run(
        ["git", "rev-parse", "--absolute-git-dir"], capture_output=True, text=True, check=False
    )
    return Path(proc.stdout.strip()) if proc.returncode == 0 else None


def summary(git_dir: Path) -> list[str]:
    """Summary lines for the merge that wrote ``ORIG_HEAD`` last ([]: Splice did nothing)."""
    orig = git_dir / "ORIG_HEAD"
    since = orig.stat().st_mtime - 1.0 if orig.exists() else None
    entries = merge_log.read(git_dir, since)
    if not entries:
        return []
    lines = [f"  {e.get('path')}: {e.get('message')}" for e in entries]
    resolved = sum(int(e.get("resolved", 0)) for e in entries)
    left = sum(int(e.get("conflicts_left", 0)) for e in entries)
    n = len(entries)
    head = f"splice: resolved {resolved} conflict(s) in {n} file(s); {left} left for a human"
    return [head, *lines]


def main() -> int:
    try:
        git_dir = _git_dir()
        if git_dir is None:
            return 0
        for line in summary(git_dir):
            print(line)
        merge_log.clear(git_dir)
    except Exception as exc:  # a summary must never break a merge
        print(f"splice: post-merge summary failed ({exc})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
