"""The git merge driver: merge three files the way git would, then resolve what Splice is sure of.

Contract (``merge.splice.driver = /abs/splice driver [-s %S -x %X -y %Y] -- %O %A %B %L %P``, plus
the shell fallback :mod:`splice.cli.install` writes): the result goes into %A only;
exit 0 when it is clean, 1 when conflict markers remain. Work is never lost: ``git merge-file -p``
(same style, marker size and labels) runs first; a clean merge is written as is, and on any
error, a time-out, text that is not UTF-8 or an input over the size limit its output is what
%A receives. Binary input (a NUL byte) leaves %A untouched, as git does. Where the resolver
applies nothing, %A gets git's output byte for byte.

``SPLICE_DRIVER_FAULT`` is for tests only: ``crash`` raises inside the resolver step and ``slow``
makes it sleep past the time-out, so the fallbacks can be checked in real merges.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass

import click

from splice.cli.config import (
    DEFAULT_MARKER_SIZE,
    DEFAULT_MAX_SIZE,
    DEFAULT_RESOLVER,
    DEFAULT_TIMEOUT,
    conflict_style,
)
from splice.cli.options import (
    STYLES,
    allow_discard_option,
    confidence,
    max_size_option,
    min_confidence_option,
    resolver_option,
    timeout_option,
)
from splice.data.files import write_atomic

#: Test-only fault injection (see the module docstring).
FAULT_ENV = "SPLICE_DRIVER_FAULT"
#: Seconds after the time-out at which a watchdog thread writes the fallback and exits, in case
#: the main thread is stuck where SIGALRM cannot interrupt it.
WATCHDOG_GRACE = 5.0
#: The environment variable that picks the model folder (part of a cached resolver's key).
MODEL_DIR_ENV = "SPLICE_MODEL_DIR"
#: Resolvers built in this process, by (name, options): building one loads an ONNX session.
_RESOLVERS: dict[tuple, object] = {}


@dataclass(frozen=True)
class MergeRequest:
    """Three files to merge and how; ``style`` None means the repository's conflict style."""

    base: str
    ours: str
    theirs: str
    path: str | None = None
    marker_size: int = DEFAULT_MARKER_SIZE
    style: str | None = None
    #: Labels for ours, base and theirs; None means "ours", "base", "theirs".
    labels: tuple[str | None, str | None, str | None] = (None, None, None)
    resolver: str = DEFAULT_RESOLVER
    timeout: float = DEFAULT_TIMEOUT
    min_confidence: float | None = None
    max_size: int = DEFAULT_MAX_SIZE
    #: Apply answers that drop a side's edits like the rest (``--allow-discard``; also the git
    #: configuration ``splice.allowDiscard``).
    allow_discard: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ValueError(f"timeout must be a positive number of seconds, not {self.timeout}")
        if self.max_size <= 0:
            raise ValueError(f"max_size must be a positive number of bytes, not {self.max_size}")


@dataclass
class MergeResult:
    """What to write (None: leave the output file untouched), the exit status and why."""

    data: bytes | None
    exit_code: int
    message: str
    conflicts: int = 0
    resolved: int = 0


class DriverTimeout(Exception):
    """The resolver ran past the driver's time limit."""


def effective_labels(req: MergeRequest) -> tuple[str, str, str]:
    """Labels for ours, base and theirs (git < 2.44 passes %S/%X/%Y through as literal text)."""
    defaults = ("ours", "base", "theirs")
    out = []
    for label, default in zip(req.labels, defaults, strict=True):
        if not label or label in ("%S", "%X", "%Y"):
            label = default
        out.append(label)
    return out[0], out[1], out[2]


def git_merge_file(req: MergeRequest, style: str | None) -> tuple[int, bytes] | None:
    """``git merge-file -p`` on the request's files: (number of conflicts, output), None on error.

    ``style`` None leaves the conflict style to git's configuration, as git itself would. A
    style is also passed as ``--diff3``/``--zdiff3``: outside a repository merge-file reads no
    configuration, ``-c`` included.
    """
    ours_l, base_l, theirs_l = effective_labels(req)
    cmd = ["git"]
    if style:
        cmd += ["-c", f"merge.conflictStyle={style}"]
    cmd += ["merge-file", "-p", f"--marker-size={req.marker_size}"]
    if style in ("diff3", "zdiff3"):
        cmd.append(f"--{style}")
    cmd += ["-L", ours_l, "-L", base_l, "-L", theirs_l, "--", req.ours, req.base, req.theirs]
    try:
        proc = subprocess.run(cmd, capture_output=True, check=False)
    except OSError:
        return None
    if proc.returncode < 0 or proc.returncode > 127:
        return None
    return proc.returncode, proc.stdout


def _read(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read()


def _maybe_fault(timeout: float) -> None:
    fault = os.environ.get(FAULT_ENV)
    if fault == "crash":
        raise RuntimeError(f"fault injected by {FAULT_ENV}")
    if fault == "slow":
        import time

        time.sleep(timeout + 3600)


def resolver_for(name: str):
    """The resolver registered as ``name``, built once per process and options (the model
    folder): a second merge reuses its ONNX session instead of loading another."""
    from splice.cli.config import load_resolver

    key = (name, os.environ.get(MODEL_DIR_ENV))
    if key not in _RESOLVERS:
        _RESOLVERS[key] = load_resolver(name)
    return _RESOLVERS[key]


def _resolve(req: MergeRequest, texts: tuple[str, str, str], style: str):
    """Run the pipeline (imported here, so clean merges never load it)."""
    from splice.data.git import config_bool
    from splice.resolver.pipeline import Labels, merge_file

    _maybe_fault(req.timeout)
    resolver = resolver_for(req.resolver)
    ours_l, base_l, theirs_l = effective_labels(req)
    base, ours, theirs = texts
    return merge_file(
        base,
        ours,
        theirs,
        resolver,
        path=req.path,
        style=style,
        marker_size=req.marker_size,
        labels=Labels(ours=ours_l, base=base_l, theirs=theirs_l),
        min_confidence=req.min_confidence,
        allow_discard=req.allow_discard or config_bool("splice.allowDiscard"),
    )


class _Alarm:
    """Raise DriverTimeout in the main thread after ``seconds`` (no-op off the main thread)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.active = seconds > 0 and threading.current_thread() is threading.main_thread()
        self.previous = None

    def _fire(self, signum, frame) -> None:
        raise DriverTimeout

    def __enter__(self) -> _Alarm:
        if self.active:
            self.previous = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, *exc) -> None:
        if self.active:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous or signal.SIG_DFL)


def merge(req: MergeRequest, on_fallback=None) -> MergeResult:
    """Merge the request's files and say what to write; never raises for bad input.

    ``on_fallback`` is called with git's result once it is known (the watchdog's safety net).
    """
    try:
        ours_b = _read(req.ours)
    except OSError as exc:
        return MergeResult(None, 129, f"cannot read ours ({exc.strerror})")
    try:
        base_b, theirs_b = _read(req.base), _read(req.theirs)
    except OSError as exc:
        return MergeResult(None, 1, f"cannot read an input ({exc.strerror}), kept ours")
    inputs = (base_b, ours_b, theirs_b)
    if any(b"\0" in data for data in inputs):
        return MergeResult(None, 1, "binary file, kept ours")

    git = git_merge_file(req, req.style)
    if git is None:
        return MergeResult(None, 1, "git merge-file failed, kept ours")
    git_conflicts, git_out = git
    if git_conflicts == 0:
        return MergeResult(git_out, 0, "merged cleanly")

    def fallback(why: str) -> MergeResult:
        n = git_conflicts
        return MergeResult(git_out, 1, f"{why}; {n} conflict{'s' * (n != 1)} left", conflicts=n)

    if on_fallback is not None:
        on_fallback(git_out)
    if any(len(data) > req.max_size for data in inputs):
        return fallback(f"over {req.max_size} bytes, left to git")
    try:
        texts = (base_b.decode("utf-8"), ours_b.decode("utf-8"), theirs_b.decode("utf-8"))
    except UnicodeDecodeError:
        return fallback("not UTF-8 text, left to git")
    try:
        with _Alarm(req.timeout):
            style = req.style or conflict_style()
            outcome = _resolve(req, texts, style)
    except DriverTimeout:
        return fallback(f"timed out after {req.timeout:g} s, left to git")
    except Exception as exc:  # never lose work: any failure falls back to git's merge
        return fallback(f"internal error ({type(exc).__name__}: {exc}), left to git")

    resolved = outcome.resolved
    if resolved == 0:
        return MergeResult(git_out, 1, summary(0, git_conflicts), conflicts=git_conflicts)
    data = outcome.text.encode("utf-8")
    left = outcome.conflicts_left
    code = 0 if outcome.clean else 1
    kept = sorted({h.kept.describe() for h in outcome.hunks if h.answer and h.kept})
    message = summary(resolved, left, kept)
    return MergeResult(data, code, message, conflicts=left, resolved=resolved)


def summary(resolved: int, left: int, kept: list[str] | None = None) -> str:
    """The stderr summary: conflicts Splice resolved, what the applied answers kept, and the
    marker regions left in the file (``2 of 3 conflicts resolved, both sides kept, 1 left``)."""
    total = resolved + left
    text = f"{resolved} of {total} conflict{'s' * (total != 1)} resolved"
    if kept:
        text += ", " + "; ".join(kept)
    return f"{text}, {left} left" if resolved and left else text


def run(req: MergeRequest, output: str, *, name: str | None = None) -> int:
    """Merge, write the result to ``output`` (unless it must stay untouched), report on stderr.

    Returns the exit status (0 clean, 1 conflicts left, 129 when nothing sensible was written).
    """
    lock = threading.Lock()
    done = threading.Event()
    watchdog: threading.Timer | None = None

    def arm(fallback: bytes) -> None:
        nonlocal watchdog

        def bail() -> None:
            with lock:
                if done.is_set():
                    return
                try:
                    write_atomic(output, fallback)
                    print(f"splice: {label}: stuck, left to git", file=sys.stderr, flush=True)
                except OSError as exc:
                    print(f"splice: {label}: stuck, cannot write ({exc})", file=sys.stderr)
                os._exit(1)

        watchdog = threading.Timer(req.timeout + WATCHDOG_GRACE, bail)
        watchdog.daemon = True
        watchdog.start()

    label = name or req.path or output
    try:
        result = merge(req, on_fallback=arm if req.timeout > 0 else None)
    finally:
        if watchdog is not None:
            watchdog.cancel()
    with lock:
        done.set()
        if result.data is not None:
            try:
                write_atomic(output, result.data)
            except OSError as exc:
                print(f"splice: {label}: cannot write ({exc.strerror})", file=sys.stderr)
                return 1
    print(f"splice: {label}: {result.message}", file=sys.stderr)
    log_outcome(label, result)
    return result.exit_code


def log_outcome(label: str, result: MergeResult) -> None:
    """Note a merge with conflicts for the post-merge hook (``splice.hooks.merge_log``: only where
    ``splice install --hooks`` made its folder); any failure is ignored."""
    if result.exit_code == 0 and not result.resolved:
        return
    try:
        from splice.hooks.merge_log import append

        append(label, result.exit_code, result.conflicts, result.resolved, result.message)
    except Exception:  # logging must never change a merge's result
        pass


# --------------------------------------------------------------------------- the command


@click.command("driver")
@click.argument("base", metavar="%O")
@click.argument("ours", metavar="%A")
@click.argument("theirs", metavar="%B")
@click.argument("marker_size", metavar="%L", type=int, required=False, default=7)
@click.argument("path", metavar="%P", required=False)
@click.option("-s", "base_label", metavar="%S", help="Label of the base version.")
@click.option("-x", "ours_label", metavar="%X", help="Label of our version.")
@click.option("-y", "theirs_label", metavar="%Y", help="Label of their version.")
@click.option("--style", type=STYLES, help="Conflict style [default: merge.conflictStyle].")
@resolver_option
@timeout_option
@min_confidence_option
@allow_discard_option
@max_size_option
def driver_command(
    base: str,
    ours: str,
    theirs: str,
    marker_size: int,
    path: str | None,
    base_label: str | None,
    ours_label: str | None,
    theirs_label: str | None,
    style: str | None,
    resolver: str,
    timeout: float,
    min_confidence: float | None,
    max_size: int,
    allow_discard: bool,
) -> None:
    """git merge driver: merge %O %A %B into %A (exit 0 clean, 1 conflicts left).

    Installed as ``splice driver [-s %S -x %X -y %Y] -- %O %A %B %L %P``: git's arguments come
    after ``--``, so a path that looks like an option is still a path.
    """
    req = MergeRequest(
        base=base,
        ours=ours,
        theirs=theirs,
        path=path,
        marker_size=marker_size if marker_size > 0 else 7,
        style=style.lower() if style else None,
        labels=(ours_label, base_label, theirs_label),
        resolver=resolver,
        timeout=timeout,
        min_confidence=confidence(min_confidence),
        max_size=max_size,
        allow_discard=allow_discard,
    )
    sys.exit(run(req, ours))
