"""Settings the git integration reads: Splice's defaults and the user's git configuration.

Everything here is cheap to import (the driver's start-up path): git is asked through one
``git config`` or ``git check-attr`` process, and the resolver pipeline is imported only on demand.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from splice.resolver.resolvers import Resolver

#: The resolver the driver, the mergetool and ``splice resolve`` use unless told otherwise:
#: "auto" is the neural ``model`` when one is installed (``models/shipped/model.onnx``), else the
#: model-free ``token-merge``.
DEFAULT_RESOLVER = "auto"
#: What the driver uses when the model was asked for but cannot be loaded.
FALLBACK_RESOLVER = "token-merge"
#: Seconds the driver gives the resolver before falling back to git's own merge.
DEFAULT_TIMEOUT = 10.0
#: Bytes above which (for any of the three inputs) the driver leaves the merge to git.
DEFAULT_MAX_SIZE = 2 * 1024 * 1024
DEFAULT_MARKER_SIZE = 7
#: Values of ``merge.conflictStyle`` that git knows.
STYLES = ("merge", "diff3", "zdiff3")
#: The name of the merge driver and of the mergetool in git's configuration.
TOOL_NAME = "splice"


def git_config_get(key: str, *, cwd: str | None = None, scope: str | None = None) -> str | None:
    """The value of ``key`` in git's configuration (``scope`` e.g. "--global"), or None."""
    cmd = ["git", "config"]
    if scope:
        cmd.append(scope)
    cmd += ["--get", key]
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.rstrip("\n")


def conflict_style(cwd: str | None = None) -> str:
    """``merge.conflictStyle`` as git run in ``cwd`` sees it ("merge" when unset or unknown)."""
    value = (git_config_get("merge.conflictStyle", cwd=cwd) or "merge").lower()
    return value if value in STYLES else "merge"


def marker_size_for(path: str, cwd: str | None = None) -> int:
    """The ``conflict-marker-size`` attribute of ``path`` (7 when unset or invalid)."""
    try:
        proc = subprocess.run(
            ["git", "check-attr", "conflict-marker-size", "--", path],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return DEFAULT_MARKER_SIZE
    value = proc.stdout.rsplit(":", 1)[-1].strip() if proc.returncode == 0 else ""
    return int(value) if value.isdigit() and int(value) > 0 else DEFAULT_MARKER_SIZE


def load_resolver(name: str, *, model_dir: str | None = None) -> Resolver:
    """Build the resolver registered as ``name`` (:func:`splice.models.serving.load_resolver`:
    the model's resolvers registered; when the model cannot be loaded, one stderr line and
    :data:`FALLBACK_RESOLVER`)."""
    from splice.models.serving import load_resolver as load

    return load(name, model_dir=model_dir)
