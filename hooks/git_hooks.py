"""Plain git hooks: ``pre-commit`` (no conflict markers staged) and ``post-merge`` (a summary).

``splice install --hooks`` writes them into the repository's hooks folder (``core.hooksPath``
respected). An existing hook is never overwritten silently: it is moved aside to
``NAME.pre-splice`` and Splice's hook runs it first (chaining), or, where that name is taken too,
the install refuses with a message. Uninstalling puts the original back.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from splice.hooks.merge_log import LOG_DIR

MARK = "# installed by `splice install --hooks` (remove with `splice uninstall`)"
SUFFIX = ".pre-splice"
#: Hook name -> the module (and arguments) it runs.
HOOKS: dict[str, str] = {
    "pre-commit": "splice.hooks.check_markers --staged",
    "post-merge": "splice.hooks.post_merge",
}


class HookError(Exception):
    """A hook cannot be installed without losing an existing one."""


def _git(*args: str) -> str:
    proc = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise HookError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return proc.stdout.strip()


def hooks_dir() -> Path:
    """The folder git reads hooks from (``core.hooksPath`` or ``<git dir>/hooks``)."""
    return Path(os.path.abspath(_git("rev-parse", "--git-path", "hooks")))


def _quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


def hook_script(name: str, python: str | None = None) -> str:
    """The shell script of hook ``name``: run a chained hook first, then Splice's module."""
    python = python or sys.executable
    chained = f"{name}{SUFFIX}"
    return (
        "#!/bin/sh\n"
        f"{MARK}\n"
        f'chained="$(dirname "$0")/{chained}"\n'
        'if [ -x "$chained" ]; then\n'
        '    "$chained" "$@" || exit $?\n'
        "fi\n"
        f'exec {_quote(python)} -m {HOOKS[name]} "$@"\n'
    )


def is_ours(path: Path) -> bool:
    try:
        return MARK in path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def install_hooks(python: str | None = None) -> list[str]:
    """Install both hooks in the current repository; the changes made, as lines to print."""
    folder = hooks_dir()
    git_dir = Path(_git("rev-parse", "--absolute-git-dir"))
    folder.mkdir(parents=True, exist_ok=True)
    plan: list[tuple[Path, str, bool]] = []
    for name in HOOKS:
        path, script = folder / name, hook_script(name, python)
        chain = path.exists() and not is_ours(path)
        if chain and (folder / f"{name}{SUFFIX}").exists():
            raise HookError(
                f"{path} exists and so does {name}{SUFFIX}: not overwriting either; "
                "merge them by hand, then run `splice install --hooks` again"
            )
        plan.append((path, script, chain))
    changes: list[str] = []
    for path, script, chain in plan:
        if chain:
            path.rename(path.with_name(path.name + SUFFIX))
            changes.append(f"moved the existing {path.name} hook to {path.name}{SUFFIX} (chained)")
        if path.exists() and path.read_text(encoding="utf-8") == script:
            continue
        path.write_text(script, encoding="utf-8")
        path.chmod(0o755)
        changes.append(f"installed the {path.name} hook: {path}")
    (git_dir / LOG_DIR).mkdir(exist_ok=True)
    return changes


def uninstall_hooks() -> list[str]:
    """Remove Splice's hooks (putting chained ones back); the changes made."""
    folder = hooks_dir()
    changes: list[str] = []
    for name in HOOKS:
        path = folder / name
        if not is_ours(path):
            continue
        path.unlink()
        changes.append(f"removed the {name} hook")
        chained = folder / f"{name}{SUFFIX}"
        if chained.exists():
            chained.rename(path)
            changes.append(f"restored the previous {name} hook")
    return changes
