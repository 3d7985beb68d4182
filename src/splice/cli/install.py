"""``splice install`` / ``splice uninstall``: register the merge driver and mergetool with git.

Install writes, in the repository's configuration (or the user's with ``--global``):
``merge.splice.name``, ``merge.splice.driver``, ``mergetool.splice.cmd`` and
``mergetool.splice.trustExitCode``, and a marked block of ``*.EXT merge=splice`` lines in the
repository's ``.gitattributes`` (or, with ``--global``, the file ``core.attributesFile`` names,
``~/.config/git/attributes`` by default, which it then sets). What it changed is recorded under
``splice.installed.*`` so that uninstall removes exactly that and nothing else. Both are idempotent.
``--hooks`` also installs the git hooks of :mod:`splice.hooks.git_hooks` (uninstall removes them).

git passes the labels %S/%X/%Y to drivers only from 2.44 on (older versions pass the literal
text), so the ``-s %S -x %X -y %Y`` options are written only for git >= 2.44.

The commands name the ``splice`` executable by its absolute path (a GUI client or a shell without
the virtual environment still finds it) and pass git's arguments after ``--`` (a file named
``-h.py`` is data, not an option). The driver command is a small POSIX-sh line::

    a=$(cksum <%A); '/venv/bin/splice' driver -- %O %A %B %L %P || { s=$?;
      [ "$(cksum <%A)" = "$a" ] || exit $s; echo splice: %P: ... >&2;
      git merge-file --marker-size=%L -L ours -L base -L theirs -- %A %O %B; exit 1; }

When the driver fails (any non-zero exit: 1 with markers left, 126/127 when it cannot run, a
signal, a Python that dies before the driver's own guard) and %A is byte for byte what git gave
it, the driver wrote nothing, so ``git merge-file`` writes its markers into %A. The driver writes
%A only by replacing it whole, and a result with markers left always differs from ours, so a
changed %A is the driver's own answer and is kept. (A marker-line test could not tell: ours may
hold marker-like lines itself.) The status is then 1, a conflict, even where git merge-file
merged cleanly: a driver that did not run is worth a look.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

import click

from splice.cli.config import TOOL_NAME
from splice.data import git

BEGIN = f"# {TOOL_NAME}: begin (added by `splice install`, removed by `splice uninstall`)"
END = f"# {TOOL_NAME}: end"
RECORD = f"{TOOL_NAME}.installed"
#: What ``splice install`` wrote before the absolute path and the shell fallback (uninstall still
#: recognises these; install replaces them).
LEGACY_DRIVER = (
    "splice driver %O %A %B %L %P",
    "splice driver %O %A %B %L %P -s %S -x %X -y %Y",
)
LEGACY_MERGETOOL = 'splice mergetool "$BASE" "$LOCAL" "$REMOTE" "$MERGED"'
#: Where a clean login shell looks for commands (POSIX ``getconf PATH`` plus the usual extras).
DEFAULT_PATH = ("/usr/local/bin", "/usr/bin", "/bin", "/usr/local/sbin", "/usr/sbin", "/sbin")


class InstallError(Exception):
    """Bad input or a git failure, reported to the user as is."""


def _git(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = git.run(args, text=True)
    if check and proc.returncode != 0:
        raise InstallError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return proc


def git_version() -> tuple[int, int]:
    """git's (major, minor) version."""
    out = _git("version").stdout
    match = re.search(r"(\d+)\.(\d+)", out)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def splice_command() -> list[str]:
    """The absolute command that runs this installation's ``splice``.

    The console script that is running (``sys.argv[0]``), else the one beside this Python or in
    its scripts folder, else ``python -m splice`` with this Python.
    """
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == TOOL_NAME and _is_executable(argv0):
        return [os.path.abspath(argv0)]
    folders = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    for folder in folders:
        candidate = os.path.join(folder, TOOL_NAME)
        if folder and _is_executable(candidate):
            return [os.path.abspath(candidate)]
    return [os.path.abspath(sys.executable), "-m", TOOL_NAME]


def _quoted(command: list[str]) -> str:
    return " ".join(shlex.quote(word) for word in command)


def driver_command(version: tuple[int, int] | None = None, exe: str | None = None) -> str:
    """The ``merge.splice.driver`` value for this git (labels only where git passes them).

    ``exe`` is the shell-quoted command that runs splice (default: :func:`splice_command`).
    """
    exe = _quoted(splice_command()) if exe is None else exe
    exe = exe.replace("%", "%%")  # git expands %X in the whole line
    labels = (version or git_version()) >= (2, 44)
    options = "-s %S -x %X -y %Y " if labels else ""
    names = "-L %X -L %S -L %Y" if labels else "-L ours -L base -L theirs"
    return (
        f"a=$(cksum <%A); {exe} driver {options}-- %O %A %B %L %P || {{ s=$?; "
        f'[ "$(cksum <%A)" = "$a" ] || exit $s; '
        f'echo splice: %P: "the driver wrote nothing (exit $s): git merge-file merged it" >&2; '
        f"git merge-file --marker-size=%L {names} -- %A %O %B; exit 1; }}"
    )


def mergetool_command(exe: str | None = None) -> str:
    """The ``mergetool.splice.cmd`` value (git evaluates it in a shell that sets $BASE...)."""
    exe = _quoted(splice_command()) if exe is None else exe
    return f'{exe} mergetool -- "$BASE" "$LOCAL" "$REMOTE" "$MERGED"'


def _template_match(value: str, template: str) -> bool:
    """Whether ``value`` is ``template`` with its ``\0`` replaced by one shell-quoted command."""
    head, _, tail = template.partition("\0")
    if not (value.startswith(head) and value.endswith(tail)) or len(value) < len(head + tail):
        return False
    middle = value[len(head) : len(value) - len(tail)].replace("%%", "%")
    try:
        words = shlex.split(middle)
    except ValueError:
        return False
    return bool(words) and _quoted(words) == middle


def _template_words(value: str, template: str) -> list[str] | None:
    """The command in ``value`` where ``template`` has its ``\0`` (None when it does not fit)."""
    if not _template_match(value, template):
        return None
    head, _, tail = template.partition("\0")
    return shlex.split(value[len(head) : len(value) - len(tail)].replace("%%", "%"))


def driver_executable(value: str) -> list[str] | None:
    """The command that runs splice in a ``merge.splice.driver`` value some install wrote
    (``["splice"]`` for the old, PATH-dependent values), else None."""
    if value in LEGACY_DRIVER:
        return [TOOL_NAME]
    for version in ((2, 0), (2, 44)):
        words = _template_words(value, driver_command(version, "\0"))
        if words:
            return words
    return None


def written_by_install(key: str, value: str) -> bool:
    """Whether ``value`` of ``key`` is one that some ``splice install`` wrote (any executable)."""
    if key == f"merge.{TOOL_NAME}.driver":
        return driver_executable(value) is not None
    if key == f"mergetool.{TOOL_NAME}.cmd":
        return value == LEGACY_MERGETOOL or _template_match(value, mergetool_command("\0"))
    return value == wanted_config().get(key)


def wanted_config() -> dict[str, str]:
    return {
        f"merge.{TOOL_NAME}.name": "Splice merge-conflict resolver",
        f"merge.{TOOL_NAME}.driver": driver_command(),
        f"mergetool.{TOOL_NAME}.cmd": mergetool_command(),
        f"mergetool.{TOOL_NAME}.trustExitCode": "true",
    }


def venv_warning(command: list[str]) -> str | None:
    """One line when the executable lives where a clean shell would not look for it."""
    folder = os.path.dirname(command[0])
    if folder in DEFAULT_PATH:
        return None
    in_venv = sys.prefix != sys.base_prefix or os.path.isfile(
        os.path.join(os.path.dirname(folder), "pyvenv.cfg")
    )
    where = "a virtual environment" if in_venv else "a folder"
    return (
        f"splice: note: {command[0]} lives in {where} ({folder}) that a clean shell does not have "
        "on PATH; the commands name it by its absolute path, so merges work from any shell, "
        "but it must stay there (re-run `splice install` if it moves)"
    )


def extensions_for(languages: str | None) -> list[str]:
    """File extensions (".py") for a comma-separated list of language names or extensions
    (``all``: every language Splice knows; none: the languages its models are trained on)."""
    from splice.resolver.languages import UnknownLanguage, select_extensions

    try:
        return select_extensions(languages)
    except UnknownLanguage as exc:
        raise InstallError(str(exc)) from exc


def attributes_block(extensions: list[str]) -> list[str]:
    return [BEGIN, *(f"*{ext} merge={TOOL_NAME}" for ext in extensions), END]


def _split_block(lines: list[str]) -> tuple[list[str], list[str] | None, list[str]]:
    """Lines before the managed block, the block (None when absent), lines after it."""
    bare = [line.rstrip("\r\n") for line in lines]
    if BEGIN not in bare:
        return lines, None, []
    start = bare.index(BEGIN)
    end = bare.index(END, start) if END in bare[start:] else len(lines) - 1
    return lines[:start], lines[start : end + 1], lines[end + 1 :]


def _read_lines(path: Path) -> list[str]:
    """The file's lines with their endings ([] when it does not exist)."""
    if not path.exists():
        return []
    return path.read_bytes().decode("utf-8").splitlines(keepends=True)


def _write_lines(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes("".join(lines).encode("utf-8"))


class _Setup:
    """Where this install lives: config scope and attributes file."""

    def __init__(self, global_: bool) -> None:
        self.scope = "--global" if global_ else "--local"
        self.global_ = global_
        if not global_:
            proc = _git("rev-parse", "--show-toplevel", check=False)
            if proc.returncode != 0:
                raise InstallError("not in a git repository (use --global to install for the user)")
            self.top = Path(proc.stdout.strip())

    def get(self, key: str) -> str | None:
        proc = _git("config", self.scope, "--get", key, check=False)
        return proc.stdout.rstrip("\n") if proc.returncode == 0 else None

    def get_all(self, key: str) -> list[str]:
        proc = _git("config", self.scope, "--get-all", key, check=False)
        return proc.stdout.splitlines() if proc.returncode == 0 else []

    def set(self, key: str, value: str) -> None:
        _git("config", self.scope, key, value)

    def add(self, key: str, value: str) -> None:
        _git("config", self.scope, "--add", key, value)

    def unset(self, key: str) -> None:
        _git("config", self.scope, "--unset-all", key, check=False)

    def attributes_path(self) -> tuple[Path, bool]:
        """The attributes file and whether core.attributesFile must be set to name it."""
        if not self.global_:
            return self.top / ".gitattributes", False
        configured = self.get("core.attributesFile")
        if configured:
            return Path(os.path.expanduser(configured)), False
        xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
        return Path(xdg) / "git" / "attributes", True


def install(*, global_: bool = False, languages: str | None = None, hooks: bool = False) -> int:
    """Install (with ``hooks``, the git hooks too); prints each change (or that there was none).
    Returns the exit status."""
    try:
        if hooks and global_:
            raise InstallError("--hooks installs into one repository: leave out --global")
        setup = _Setup(global_)
        extensions = extensions_for(languages)
        changes: list[str] = []
        recorded = setup.get_all(f"{RECORD}.key")
        for key, value in wanted_config().items():
            if setup.get(key) == value:
                continue
            setup.set(key, value)
            if key not in recorded:
                setup.add(f"{RECORD}.key", key)
            changes.append(f"set {key} = {value}")

        path, set_core = setup.attributes_path()
        if set_core:
            setup.set("core.attributesFile", str(path))
            setup.set(f"{RECORD}.attributesFile", str(path))
            changes.append(f"set core.attributesFile = {path}")
        existed = path.exists()
        before, block, after = _split_block(_read_lines(path))
        eol = "\r\n" if before and before[0].endswith("\r\n") else "\n"
        wanted = [line + eol for line in attributes_block(extensions)]
        if block != wanted:
            if block is None and before and not before[-1].endswith("\n"):
                before = [*before[:-1], before[-1] + eol]
            _write_lines(path, before + wanted + after)
            if not existed:
                setup.set(f"{RECORD}.createdAttributesFile", "true")
            verb = "updated" if block is not None else "added"
            patterns = " ".join(f"*{e}" for e in extensions)
            changes.append(f"{verb} {path}: {patterns} merge={TOOL_NAME}")
        if hooks:
            from splice.hooks.git_hooks import HookError, install_hooks

            try:
                changes += install_hooks()
            except HookError as exc:
                raise InstallError(str(exc)) from exc
    except (InstallError, OSError) as exc:
        print(f"splice: error: {exc}", file=sys.stderr)
        return 2
    where = "user-wide" if global_ else "in this repository"
    warning = venv_warning(splice_command())
    if warning:
        print(warning, file=sys.stderr)
    if not changes:
        print(f"splice is already installed {where}; nothing changed")
    for line in changes:
        print(line)
    return 0


def uninstall(*, global_: bool = False) -> int:
    """Remove what install recorded; prints each change (or that there was none)."""
    try:
        setup = _Setup(global_)
        changes: list[str] = []
        wanted = wanted_config()
        for key in setup.get_all(f"{RECORD}.key"):
            value = setup.get(key)
            if key in wanted and value is not None and written_by_install(key, value):
                setup.unset(key)
                changes.append(f"unset {key}")
        for section in (f"merge.{TOOL_NAME}", f"mergetool.{TOOL_NAME}"):
            pattern = f"^{re.escape(section)}\\."
            if _git("config", setup.scope, "--get-regexp", pattern, check=False).returncode == 1:
                _git("config", setup.scope, "--remove-section", section, check=False)
        path, _ = setup.attributes_path()
        set_core = setup.get(f"{RECORD}.attributesFile")
        if set_core and not global_:
            set_core = None
        created = setup.get(f"{RECORD}.createdAttributesFile") == "true"
        if set_core:
            path = Path(set_core)
        before, block, after = _split_block(_read_lines(path))
        if block is not None:
            rest = before + after
            if created and not any(line.strip() for line in rest):
                path.unlink()
                changes.append(f"removed {path}")
            else:
                _write_lines(path, rest)
                changes.append(f"removed the {TOOL_NAME} block from {path}")
        if set_core and setup.get("core.attributesFile") == set_core:
            setup.unset("core.attributesFile")
            changes.append("unset core.attributesFile")
        _git("config", setup.scope, "--remove-section", RECORD, check=False)
        if not global_:
            from splice.hooks.git_hooks import HookError, uninstall_hooks

            try:
                changes += uninstall_hooks()
            except HookError as exc:
                raise InstallError(str(exc)) from exc
    except (InstallError, OSError) as exc:
        print(f"splice: error: {exc}", file=sys.stderr)
        return 2
    if not changes:
        where = "user-wide" if global_ else "in this repository"
        print(f"splice is not installed {where}; nothing changed")
    for line in changes:
        print(line)
    return 0


# --------------------------------------------------------------------------- the command


@click.command("install")
@click.option("--global", "global_", is_flag=True, help="Install for the user, not the repo.")
@click.option(
    "--languages",
    help="Comma-separated languages or extensions (e.g. py,java,rust), or 'all' "
    "[default: the languages the models are trained on; `splice languages` lists them all].",
)
@click.option("--hooks", is_flag=True, help="Also install the pre-commit and post-merge hooks.")
def install_command(global_: bool, languages: str | None, hooks: bool) -> None:
    """Register the merge driver and mergetool, and route the languages' files to it."""
    sys.exit(install(global_=global_, languages=languages, hooks=hooks))


# --------------------------------------------------------------------------- the command


@click.command("uninstall")
@click.option("--global", "global_", is_flag=True, help="Uninstall the user-wide setup.")
def uninstall_command(global_: bool) -> None:
    """Remove exactly what ``splice install`` added."""
    sys.exit(uninstall(global_=global_))
