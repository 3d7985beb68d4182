"""The one git runner, and what Splice reads from git through it.

Every git process Splice starts goes through :func:`run`: arguments are a list (never a shell
line), paths are passed after ``--`` by the callers, and a missing git executable is reported as
a failed process (exit 127) instead of an exception, so callers handle one kind of failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from typing import overload

#: Values of ``merge.conflictStyle`` that git knows.
STYLES = ("merge", "diff3", "zdiff3")
DEFAULT_MARKER_SIZE = 7


@overload
def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = ...,
    stdin: bytes | None = ...,
    env: Mapping[str, str] | None = ...,
    text: bool = False,
) -> subprocess.CompletedProcess[bytes]: ...


@overload
def run(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = ...,
    stdin: str | None = ...,
    env: Mapping[str, str] | None = ...,
    text: bool = True,
) -> subprocess.CompletedProcess[str]: ...


def run(args, *, cwd=None, stdin=None, env=None, text=False):
    """``git ARGS`` with its output captured; never raises for a failure of git itself."""
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            input=stdin,
            env=None if env is None else dict(env),
            capture_output=True,
            text=text,
            check=False,
        )
    except OSError as exc:  # no git executable, or the folder is gone
        empty = "" if text else b""
        why = f"git: {exc.strerror or exc}\n"
        return subprocess.CompletedProcess(
            ["git", *args], 127, empty, why if text else why.encode()
        )


def config_get(key: str, *, cwd: str | None = None, scope: str | None = None) -> str | None:
    """The value of ``key`` in git's configuration (``scope`` e.g. "--global"), or None."""
    proc = run(["config", *([scope] if scope else []), "--get", key], cwd=cwd, text=True)
    return proc.stdout.rstrip("\n") if proc.returncode == 0 else None


def config_bool(key: str, *, cwd: str | None = None) -> bool:
    """``key`` read as a git boolean (false when unset or not a boolean)."""
    proc = run(["config", "--type=bool", "--get", key], cwd=cwd, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == "true"


def conflict_style(cwd: str | None = None) -> str:
    """``merge.conflictStyle`` as git run in ``cwd`` sees it ("merge" when unset or unknown)."""
    value = (config_get("merge.conflictStyle", cwd=cwd) or "merge").lower()
    return value if value in STYLES else "merge"


def marker_size_for(path: str, cwd: str | None = None) -> int:
    """The ``conflict-marker-size`` attribute of ``path`` (7 when unset or invalid)."""
    proc = run(["check-attr", "conflict-marker-size", "--", path], cwd=cwd, text=True)
    value = proc.stdout.rsplit(":", 1)[-1].strip() if proc.returncode == 0 else ""
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MARKER_SIZE


def index_stages(path: str) -> tuple[str, str, str] | None:
    """The base, ours and theirs versions of an unmerged ``path`` from git's index, if any
    (None when it is not unmerged there, or a version is not UTF-8 text)."""
    folder, name = os.path.split(os.path.abspath(path))
    texts = []
    for stage in (1, 2, 3):
        proc = run(["show", f":{stage}:./{name}"], cwd=folder)
        if proc.returncode != 0:
            return None
        try:
            texts.append(proc.stdout.decode("utf-8"))
        except UnicodeDecodeError:
            return None
    return texts[0], texts[1], texts[2]


def toplevel(cwd: str | None = None) -> str | None:
    """The work tree's top folder (None outside a repository)."""
    proc = run(["rev-parse", "--show-toplevel"], cwd=cwd, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None


def unmerged_paths(cwd: str | None = None) -> list[str] | None:
    """The unmerged files of the repository, relative to ``cwd`` (None outside a repository)."""
    root = toplevel(cwd)
    if root is None:
        return None
    proc = run(["diff", "--name-only", "--diff-filter=U", "-z"], cwd=cwd)
    names = [n for n in proc.stdout.decode("utf-8", "surrogateescape").split("\0") if n]
    here = os.path.abspath(cwd or os.curdir)
    return [os.path.relpath(os.path.join(root, n), here) for n in dict.fromkeys(names)]
