"""The ``splice`` command line: a click group; every command imports its work lazily.

git starts ``splice driver`` once per conflicting file, so importing this module must stay cheap:
only click and the package version here; the pipeline, rich and the rest load inside commands.
"""

from __future__ import annotations

import math
import sys

import click

from splice import __version__

_DEFAULT_RESOLVER = "auto"
_DEFAULT_TIMEOUT = 10.0
_DEFAULT_MAX_SIZE = 2 * 1024 * 1024
_STYLES = click.Choice(["merge", "diff3", "zdiff3"], case_sensitive=False)

#: Commands defined in other modules, as "module:attribute", imported only when they are run
#: (or listed by --help), so that ``splice driver`` never pays for them. Add new ones here, or
#: attach an already imported command with ``main.add_command(cmd)`` at the end of this file.
LAZY_COMMANDS: dict[str, str] = {
    "eval": "splice.eval_command:eval_command",
    "demo": "splice.demo:demo_command",
    "train": "splice.train_command:train_command",
    "export-onnx": "splice.export_command:export_command",
    "calibrate": "splice.calibrate_command:calibrate_command",
    "lsp": "splice.lsp_command:lsp_command",
    "merge-weights": "splice.merge_command:merge_weights_command",
    "merge-adapters": "splice.merge_command:merge_adapters_command",
    "ci": "splice.ci:ci_command",
    "mine": "splice.mine:mine_command",
}


class LazyGroup(click.Group):
    """A click group that imports the commands of :data:`LAZY_COMMANDS` on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in LAZY_COMMANDS:
            import importlib

            module, attr = LAZY_COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="splice")
def main() -> None:
    """Splice: resolve git merge conflicts."""


def _seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A time limit: a finite number of seconds above 0 (0, inf and nan would disable it)."""
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{value:g} is not a positive number of seconds")
    return value


def _positive(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value <= 0:
        raise click.BadParameter(f"{value} is not a positive number of bytes")
    return value


def _confidence(value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1", param_hint="--min-confidence")
    return value


@main.command()
@click.argument("base", metavar="%O")
@click.argument("ours", metavar="%A")
@click.argument("theirs", metavar="%B")
@click.argument("marker_size", metavar="%L", type=int, required=False, default=7)
@click.argument("path", metavar="%P", required=False)
@click.option("-s", "base_label", metavar="%S", help="Label of the base version.")
@click.option("-x", "ours_label", metavar="%X", help="Label of our version.")
@click.option("-y", "theirs_label", metavar="%Y", help="Label of their version.")
@click.option("--style", type=_STYLES, help="Conflict style [default: merge.conflictStyle].")
@click.option("--resolver", "resolver", default=_DEFAULT_RESOLVER, show_default=True)
@click.option(
    "--timeout", type=float, default=_DEFAULT_TIMEOUT, show_default=True, callback=_seconds
)
@click.option("--min-confidence", type=float, help="Apply only resolutions at least this sure.")
@click.option(
    "--max-size", type=int, default=_DEFAULT_MAX_SIZE, show_default=True, callback=_positive
)
def driver(
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
) -> None:
    """git merge driver: merge %O %A %B into %A (exit 0 clean, 1 conflicts left).

    Installed as ``splice driver [-s %S -x %X -y %Y] -- %O %A %B %L %P``: git's arguments come
    after ``--``, so a path that looks like an option is still a path.
    """
    from splice.driver import MergeRequest, run

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
        min_confidence=_confidence(min_confidence),
        max_size=max_size,
    )
    sys.exit(run(req, ours))


@main.command()
@click.argument("base", metavar="BASE")
@click.argument("local", metavar="LOCAL")
@click.argument("remote", metavar="REMOTE")
@click.argument("merged", metavar="MERGED")
@click.option("--resolver", "resolver", default=_DEFAULT_RESOLVER, show_default=True)
@click.option(
    "--timeout", type=float, default=_DEFAULT_TIMEOUT, show_default=True, callback=_seconds
)
@click.option("--min-confidence", type=float, help="Apply only resolutions at least this sure.")
def mergetool(
    base: str,
    local: str,
    remote: str,
    merged: str,
    resolver: str,
    timeout: float,
    min_confidence: float | None,
) -> None:
    """git mergetool: write the merge of BASE LOCAL REMOTE to MERGED (exit 0 only when clean).

    Installed as ``splice mergetool -- "$BASE" "$LOCAL" "$REMOTE" "$MERGED"``.
    """
    from splice.mergetool import run_mergetool

    sys.exit(
        run_mergetool(
            base,
            local,
            remote,
            merged,
            resolver=resolver,
            timeout=timeout,
            min_confidence=_confidence(min_confidence),
        )
    )


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Print a unified diff; write nothing.")
@click.option("--no-backup", is_flag=True, help="Do not keep PATH.orig.")
@click.option("--resolver", "resolver", default=_DEFAULT_RESOLVER, show_default=True)
@click.option("--min-confidence", type=float, help="Apply only resolutions at least this sure.")
@click.option(
    "--explain", is_flag=True, help="Print each conflict's outcome and top-3 suggestions."
)
@click.option(
    "--follow-links",
    is_flag=True,
    help="Resolve the file a symbolic link PATH points to (default: refuse links).",
)
def resolve(
    paths: tuple[str, ...],
    dry_run: bool,
    no_backup: bool,
    resolver: str,
    min_confidence: float | None,
    explain: bool,
    follow_links: bool,
) -> None:
    """Resolve conflict markers already in files (default: the repository's unmerged files).

    PATH.orig keeps each changed file's bytes from before the run; an existing PATH.orig is
    never overwritten (PATH.orig.1, .2... are used). Exit status: 0 no conflict marker left;
    1 markers left (unresolved or malformed conflicts, said as PATH:LINE) or a file skipped
    (binary, not UTF-8); 2 bad input (a missing path, a directory, a symbolic link without
    --follow-links, a file that cannot be read or written).
    """
    from splice.resolve_files import run_resolve

    sys.exit(
        run_resolve(
            list(paths),
            dry_run=dry_run,
            backup=not no_backup,
            resolver=resolver,
            min_confidence=_confidence(min_confidence),
            explain_to=explain,
            follow_links=follow_links,
        )
    )


@main.command()
@click.option("--global", "global_", is_flag=True, help="Install for the user, not the repo.")
@click.option("--languages", help="Comma-separated languages or extensions (e.g. py,java).")
@click.option("--hooks", is_flag=True, help="Also install the pre-commit and post-merge hooks.")
def install(global_: bool, languages: str | None, hooks: bool) -> None:
    """Register the merge driver and mergetool, and route the languages' files to it."""
    from splice.install import install as do_install

    sys.exit(do_install(global_=global_, languages=languages, hooks=hooks))


@main.command()
@click.option("--global", "global_", is_flag=True, help="Uninstall the user-wide setup.")
def uninstall(global_: bool) -> None:
    """Remove exactly what ``splice install`` added."""
    from splice.install import uninstall as do_uninstall

    sys.exit(do_uninstall(global_=global_))


@main.command()
@click.option("--global", "global_", is_flag=True, help="Check only the user-wide setup.")
def doctor(global_: bool) -> None:
    """Check that git can run the configured driver from a clean shell (exit 0 healthy, 1 not)."""
    from splice.doctor import run_doctor

    sys.exit(run_doctor(global_only=global_))


# Commands from other modules: prefer LAZY_COMMANDS above; ``main.add_command(...)`` goes here.
