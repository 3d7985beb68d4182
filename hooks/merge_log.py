"""The log of what the merge driver did, read by the ``post-merge`` hook.

The driver appends one JSON line per file it merged with conflicts to
``<git dir>/splice/last-merge.jsonl``, but only where that folder exists (``splice install
--hooks`` creates it), so repositories without the hooks see no change. The hook prints the lines
written since the merge began (``ORIG_HEAD``'s time), then empties the log.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

LOG_DIR = "splice"
LOG_NAME = "last-merge.jsonl"
#: The log is started afresh when it grows past this size (merges that stopped with conflicts
#: never run ``post-merge``, so nothing else empties it).
MAX_BYTES = 1 << 20


def git_dir_here() -> Path | None:
    """The git dir of the repository whose top folder is the current one (git runs merge drivers
    there), found without running git: ``$GIT_DIR``, ``.git`` or the file ``.git`` points to."""
    env = os.environ.get("GIT_DIR")
    if env:
        return Path(env)
    dot = Path(".git")
    if dot.is_dir():
        return dot
    if dot.is_file():
        text = dot.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            return Path(text.removeprefix("gitdir:").strip())
    return None


def log_path(git_dir: Path) -> Path:
    return git_dir / LOG_DIR / LOG_NAME


def append(path: str, exit_code: int, conflicts: int, resolved: int, message: str) -> None:
    """Record one driver run, if the hooks' folder exists in this repository's git dir."""
    git_dir = git_dir_here()
    if git_dir is None or not (git_dir / LOG_DIR).is_dir():
        return
    log = log_path(git_dir)
    entry = {
        "time": time.time(),
        "path": path,
        "exit": exit_code,
        "conflicts_left": conflicts,
        "resolved": resolved,
        "message": message,
    }
    mode = "w" if log.exists() and log.stat().st_size > MAX_BYTES else "a"
    with open(log, mode, encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def read(git_dir: Path, since: float | None = None) -> list[dict[str, Any]]:
    """The log's entries at or after ``since`` (seconds since the epoch); bad lines skipped."""
    log = log_path(git_dir)
    if not log.exists():
        return []
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and (since is None or entry.get("time", 0) >= since):
            out.append(entry)
    return out


def clear(git_dir: Path) -> None:
    log = log_path(git_dir)
    if log.exists():
        log.write_text("", encoding="utf-8")
