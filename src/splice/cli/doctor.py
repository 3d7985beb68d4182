"""``splice doctor``: can git run the configured merge driver, and does it send files to it?

For the driver in the repository's and the user's configuration (the repository's wins), it
checks that the command it names runs from a clean environment (``env -i PATH=/usr/bin:/bin``, as
a GUI client or an IDE may start git), that a clean three-way merge through it exits 0 (the
driver's imports work), and, in a repository, which file types the attributes route to it.
Every problem comes with what to do. Exit 0 when healthy, 1 when not.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from splice.cli.config import TOOL_NAME
from splice.data.git import config_get as git_config_get

#: The environment a clean shell starts with (what a GUI client or a cron job may give git).
CLEAN_ENV = {"PATH": "/usr/bin:/bin"}
#: Seconds a trial run may take (the first model-free driver start can be slow on a busy machine).
TRIAL_TIMEOUT = 120
DRIVER_KEY = f"merge.{TOOL_NAME}.driver"


def _clean_run(command: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``command`` with ``sh -c`` in :data:`CLEAN_ENV`; a failure to start is exit 127."""
    try:
        return subprocess.run(
            ["sh", "-c", command],
            env=CLEAN_ENV,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TRIAL_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess(command, 127, "", str(exc))


def _last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in (proc.stderr + proc.stdout).splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit {proc.returncode}"


def check_command(words: list[str]) -> list[str]:
    """Problems running ``words`` (splice) from a clean shell: ``--version``, then a clean merge
    through ``driver`` in a temporary folder. Empty when both work."""
    quoted = " ".join(shlex.quote(w) for w in words)
    version = _clean_run(f"{quoted} --version")
    if version.returncode != 0:
        return [f"`{quoted} --version` fails from a clean shell ({_last_line(version)})"]
    with tempfile.TemporaryDirectory(prefix="splice-doctor-") as tmp:
        base = "a = 0\n\n\nb = 0\n"
        texts = {
            "o": base,
            "a": base.replace("a = 0", "a = 1"),
            "b": base.replace("b = 0", "b = 1"),
        }
        for name, text in texts.items():
            Path(tmp, name).write_text(text)
        trial = _clean_run(f"{quoted} driver -- o a b 7 doctor.py", cwd=tmp)
        merged = Path(tmp, "a").read_text()
    if trial.returncode != 0 or merged != "a = 1\n\n\nb = 1\n":
        return [f"a clean merge through `{quoted} driver` fails ({_last_line(trial)})"]
    return []


def _routed_extensions() -> tuple[list[str], list[str]] | None:
    """Extensions git routes to the driver and those it does not (None outside a repository)."""
    from splice.cli.install import extensions_for

    exts = extensions_for(None)
    probes = [f"splice-doctor-probe{ext}" for ext in exts]
    try:
        proc = subprocess.run(
            ["git", "check-attr", "merge", "--", *probes],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if proc.returncode != 0:
        return None
    values = dict(
        line.split(": merge: ", 1) for line in proc.stdout.splitlines() if ": merge: " in line
    )
    routed = [e for e, probe in zip(exts, probes, strict=True) if values.get(probe) == TOOL_NAME]
    return routed, [e for e in exts if e not in routed]


def diagnose(*, global_only: bool = False) -> tuple[list[str], list[str]]:
    """(what is fine, what is wrong and what to do), one line each."""
    from splice.cli.install import driver_executable

    ok: list[str] = []
    bad: list[str] = []
    in_repo = not global_only and _in_repository()
    scopes = (["--local"] if in_repo else []) + ["--global"]
    values = {scope: git_config_get(DRIVER_KEY, scope=scope) for scope in scopes}
    fix = "run `splice install` (--global for every repository) where splice is installed"
    if not any(values.values()):
        bad.append(f"no {DRIVER_KEY} is configured: {fix}")
        return ok, bad
    effective = next(scope for scope in scopes if values[scope])
    for scope in scopes:
        value = values[scope]
        if not value:
            continue
        where = "repository" if scope == "--local" else "user"
        shadowed = " (overridden by the repository's)" if scope != effective else ""
        words = driver_executable(value)
        if words is None:
            ok.append(f"{where} driver{shadowed}: {value!r} was not written by splice install")
            continue
        if words == [TOOL_NAME]:
            bad.append(
                f"{where} driver{shadowed}: `{value}` finds splice through PATH and has no "
                f"fallback (where splice is not on PATH, merges lose their markers): {fix}"
            )
            continue
        problems = check_command(words)
        exe = " ".join(shlex.quote(w) for w in words)
        if problems:
            for problem in problems:
                bad.append(
                    f"{where} driver{shadowed}: {problem}; merges get git's markers from the "
                    f"fallback but Splice does not run: {fix}"
                )
        else:
            ok.append(f"{where} driver{shadowed}: {exe} runs from a clean shell and merges")
    if in_repo:
        routed = _routed_extensions()
        if routed is not None:
            yes, no = routed
            if yes:
                ok.append("attributes send " + " ".join(f"*{e}" for e in yes) + " to the driver")
            else:
                bad.append(
                    "no file type is sent to the driver (no `merge=splice` attribute): run "
                    "`splice install` (or `--languages py,java`)"
                )
    else:
        ok.append("not in a repository: the attributes were not checked")
    return ok, bad


def _in_repository() -> bool:
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "--git-dir"], capture_output=True, text=True, check=False
        )
    except OSError:
        return False
    return proc.returncode == 0


def run_doctor(*, global_only: bool = False) -> int:
    """Print the diagnosis; 0 when healthy, 1 when not."""
    ok, bad = diagnose(global_only=global_only)
    for line in ok:
        print(f"ok: {line}")
    for line in bad:
        print(f"problem: {line}")
    print("healthy" if not bad else f"not healthy: {len(bad)} problem{'s' * (len(bad) != 1)}")
    return 0 if not bad else 1


# --------------------------------------------------------------------------- the command


@click.command("doctor")
@click.option("--global", "global_", is_flag=True, help="Check only the user-wide setup.")
def doctor_command(global_: bool) -> None:
    """Check that git can run the configured driver from a clean shell (exit 0 healthy, 1 not)."""
    sys.exit(run_doctor(global_only=global_))
