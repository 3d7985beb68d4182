"""What ``splice mine`` says about a repository: its ``OWNER/NAME`` and its SPDX licence."""

from __future__ import annotations

import re
from pathlib import Path

import git

#: (SPDX id, phrases that must all appear), checked in order on the licence file's text.
_LICENSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Apache-2.0", ("apache license", "version 2.0")),
    ("MIT", ("permission is hereby granted, free of charge",)),
    ("BSD-3-Clause", ("redistribution and use", "neither the name")),
    ("BSD-2-Clause", ("redistribution and use",)),
    ("MPL-2.0", ("mozilla public license", "2.0")),
    ("LGPL-3.0", ("gnu lesser general public license", "version 3")),
    ("GPL-3.0", ("gnu general public license", "version 3")),
    ("GPL-2.0", ("gnu general public license", "version 2")),
    ("Unlicense", ("unlicense.org",)),
    ("ISC", ("permission to use, copy, modify, and/or distribute",)),
)
_LICENSE_FILES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "LICENCE", "COPYING", "LICENSE-MIT")


def name_from_url(url: str) -> str | None:
    """``OWNER/NAME`` from a remote URL (https, ssh or scp-like), None if it has no two parts."""
    path = re.sub(r"^[a-z+]+://[^/]*/", "", url.strip())
    path = re.sub(r"^[^@/]+@[^:]+:", "", path)
    parts = [p for p in path.removesuffix("/").removesuffix(".git").split("/") if p]
    return f"{parts[-2]}/{parts[-1]}" if len(parts) >= 2 else None


def repo_name(repo: git.Repo, path: str) -> str:
    """The repository's ``OWNER/NAME``: from its ``origin`` URL, else ``local/<folder>``."""
    try:
        url = repo.remotes.origin.url
    except (AttributeError, IndexError, ValueError):
        url = None
    found = name_from_url(url) if url else None
    if found:
        return found
    folder = Path(path).resolve().name.removesuffix(".git") or "repo"
    return f"local/{folder}"


def detect_license(repo: git.Repo) -> str:
    """The SPDX id of the licence file at HEAD ("NOASSERTION" when not recognised)."""
    try:
        tree = repo.head.commit.tree
    except (ValueError, git.BadName):
        return "NOASSERTION"
    for name in _LICENSE_FILES:
        try:
            text = (tree / name).data_stream.read().decode("utf-8", "replace").lower()
        except KeyError:
            continue
        text = " ".join(text.split())
        for spdx, phrases in _LICENSES:
            if all(p in text for p in phrases):
                return spdx
        return "NOASSERTION"
    return "NOASSERTION"
