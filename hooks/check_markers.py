"""``splice-check-markers``: fail on conflict markers left in files (any marker size).

With file names (as pre-commit passes them) the files are read from the work tree; with
``--staged`` (the plain git ``pre-commit`` hook) the staged content of every staged file is read
from the index. Each complete conflict is reported as ``file:line``, and so is every marker-shaped
line outside one (a malformed conflict). Exit 1 when any is found.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def find_markers(text: str) -> list[tuple[int, str]]:
    """(1-based line, description) of each leftover conflict or stray marker line, as
    :func:`splice.resolver.markers.markers_left` finds them (the shapes git's parser reads)."""
    from splice.resolver.markers import markers_left, parse

    left = markers_left(text)
    size = {c.start + 1: c.marker_size for c in parse(text).conflicts}
    found = [(line, f"conflict (marker size {size[line]})") for line in left.conflicts]
    found += [(line, f"stray conflict marker {text!r}") for line, text in left.stray]
    return sorted(found)


def _staged_files() -> list[str]:
    proc = subprocess.run(
        ["git", "diff", "--cached", "--name-only", "--diff-filter=ACMR", "-z"],
        capture_output=True,
        check=True,
    )
    return [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]


def _staged_text(path: str) -> bytes:
    return subprocess.run(["git", "show", f":{path}"], capture_output=True, check=True).stdout


def check_files(paths: Sequence[str], *, staged: bool = False) -> int:
    """Print each marker found as ``file:line: ...``; 1 if any, else 0."""
    status = 0
    for path in paths:
        try:
            data = _staged_text(path) if staged else Path(path).read_bytes()
        except (OSError, subprocess.CalledProcessError):
            continue
        if b"\0" in data:
            continue
        for line, what in find_markers(data.decode("utf-8", "replace")):
            print(f"{path}:{line}: {what}")
            status = 1
    if status:
        print("splice: resolve the conflicts above (or run `splice resolve`) before committing")
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="splice-check-markers", description=__doc__)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--staged", action="store_true", help="Check the index's staged files.")
    args = parser.parse_args(argv)
    files = list(args.files)
    if args.staged and not files:
        files = _staged_files()
    return check_files(files, staged=args.staged)


if __name__ == "__main__":
    sys.exit(main())
