"""The ``splice`` console script: the click group :data:`splice.cli.main`, with a lighter start
and end for ``splice driver``, which git starts once per conflicting file.

On the driver's path this module is its own guard, written with the standard library only: if
importing the CLI or the driver fails, if an option is refused, or if anything else stops the
command before the driver has run, and %A is still what git gave, ``git merge-file`` writes its
markers into %A, one line goes to stderr and the exit status is 1 (git's "conflict").
"""

from __future__ import annotations

import os
import subprocess
import sys

#: ``splice driver`` options that take a value (what the guard must skip to find git's files).
_VALUE_OPTIONS = (
    *("-s", "-x", "-y", "--style", "--resolver"),
    *("--timeout", "--min-confidence", "--max-size"),
)


def driver_args(argv: list[str]) -> tuple[list[str], dict[str, str]]:
    """The positional arguments (%O %A %B %L %P) and the valued options of a driver call."""
    positional: list[str] = []
    options: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            positional += argv[i + 1 :]
            break
        if arg == "-" or not arg.startswith("-"):
            positional.append(arg)
        elif arg.startswith("--") and "=" in arg:
            name, value = arg.split("=", 1)
            options[name] = value
        elif arg in _VALUE_OPTIONS:
            if i + 1 < len(argv):
                options[arg] = argv[i + 1]
            i += 1
        elif arg[:2] in ("-s", "-x", "-y"):
            options[arg[:2]] = arg[2:]
        i += 1
    return positional, options


def _stamp(path: str) -> tuple[int, ...] | None:
    """What changes when a file is written or replaced (None when it cannot be read)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def git_fallback(argv: list[str], why: str) -> bool:
    """Write ``git merge-file``'s result into %A and say so in one stderr line; False when the
    call names no files (nothing to do)."""
    positional, options = driver_args(argv)
    if len(positional) < 3:
        return False
    base, ours, theirs = positional[:3]
    size = positional[3] if len(positional) > 3 else ""
    size = size if size.isdigit() and int(size) > 0 else "7"
    name = positional[4] if len(positional) > 4 else ours
    labels = []
    for flag, default, literal in (
        ("-x", "ours", "%X"),
        ("-s", "base", "%S"),
        ("-y", "theirs", "%Y"),
    ):
        label = options.get(flag) or default
        labels += ["-L", default if label == literal else label]
    style = options.get("--style", "").lower()
    flags = [f"--{style}"] if style in ("diff3", "zdiff3") else []
    cmd = ["git", "merge-file", f"--marker-size={size}", *labels, *flags, "--", ours, base, theirs]
    try:
        code = subprocess.run(cmd, stdout=subprocess.DEVNULL, check=False).returncode
    except OSError:
        code = -1
    done = "git merge-file wrote the markers" if 0 <= code < 128 else "git merge-file failed too"
    print(f"splice: {name}: {why}; {done}", file=sys.stderr, flush=True)
    return True


def _driver(argv: list[str]) -> int:
    """``splice driver``: the exit status, with the guard described in the module docstring."""
    positional, _ = driver_args(argv)
    ours = positional[1] if len(positional) >= 3 else None
    before = _stamp(ours) if ours else None

    def fall_back(why: str, code: int) -> int:
        if before is None or _stamp(ours) != before:
            return code  # no files, or the driver wrote %A: its answer stands
        return 1 if git_fallback(argv, why) else code

    try:
        from click import ClickException

        from splice.cli import main as cli
        from splice.cli.driver import run  # noqa: F401  (fail here, before the command starts)
    except Exception as exc:  # a broken installation: never leave %A without markers
        return fall_back(f"splice cannot start ({type(exc).__name__}: {exc})", 1)
    try:
        cli.main(args=["driver", *argv], prog_name="splice", standalone_mode=False)
    except SystemExit as done:  # the driver's own exit status
        code = done.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except ClickException as exc:
        one_line = " ".join(exc.format_message().split())
        if fall_back(one_line, -1) == -1:
            print(f"splice driver: error: {one_line}", file=sys.stderr)
            return exc.exit_code
        return 1
    except Exception as exc:
        return fall_back(f"internal error ({type(exc).__name__}: {exc})", 1)
    # help or version printed: fine alone, but a call that names files must not end here
    return fall_back("the driver did not run", 0)


def main() -> None:
    """Run ``splice`` with ``sys.argv``."""
    if sys.argv[1:2] != ["driver"]:
        from splice.cli import main as cli

        cli()
        return
    # numpy (loaded by onnxruntime) starts OpenBLAS threads the driver never uses: about
    # 50 ms of start-up on a busy machine; onnxruntime has its own thread pool
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    code = _driver(sys.argv[2:])
    # the result file is written and closed: skip the interpreter's teardown (freeing
    # onnxruntime, numpy and every module one by one, about 30 ms on a busy machine)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
