"""``splice languages``: the languages Splice knows, their extensions and grammars.

The table lists each language with its extensions, its tree-sitter grammar package and whether
that package is installed here (with its version); ``--gitattributes`` prints the lines that route
the languages' files to the merge driver, ready to paste into ``.gitattributes``.
"""

from __future__ import annotations

import sys

import click

from splice.cli.config import TOOL_NAME


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def table_rows(languages: list[str]) -> list[tuple[str, str, str, str]]:
    """(language, extensions, grammar package, installed) for each language."""
    from splice.resolver.languages import GRAMMARS, extensions_of, grammar_installed

    rows = []
    for lang in languages:
        source = GRAMMARS.get(lang)
        if source is None:
            package, state = "-", "no grammar (generic lexer)"
        elif not grammar_installed(lang):
            package, state = source.package, "missing"
        else:
            package, found = source.package, _version(source.package)
            state = f"yes ({found})" if found else "yes"
        rows.append((lang, " ".join(extensions_of(lang)), package, state))
    return rows


def _chosen_languages(spec: str | None) -> list[str]:
    """The languages whose extensions ``spec`` names (all of them without ``spec``)."""
    from splice.resolver.languages import EXTENSIONS, known_languages, select_extensions

    known = known_languages()
    if not spec:
        return known
    picked = {EXTENSIONS[ext] for ext in select_extensions(spec)}
    return [lang for lang in known if lang in picked]


@click.command("languages")
@click.option(
    "--gitattributes",
    is_flag=True,
    help=f"Print `*.EXT merge={TOOL_NAME}` lines for .gitattributes instead of the table.",
)
@click.option(
    "--languages",
    "spec",
    metavar="LIST",
    help="Only these comma-separated languages or extensions (e.g. rust,py) [default: all].",
)
def languages_command(gitattributes: bool, spec: str | None) -> None:
    """List the languages Splice knows: extensions, grammar package, whether it is installed."""
    from splice.resolver.languages import UnknownLanguage, select_extensions

    try:
        if gitattributes:
            for ext in select_extensions(spec or "all"):
                click.echo(f"*{ext} merge={TOOL_NAME}")
            return
        rows = [("language", "extensions", "grammar package", "installed")]
        rows += table_rows(_chosen_languages(spec))
    except UnknownLanguage as exc:
        click.echo(f"splice: error: {exc}", err=True)
        sys.exit(2)
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[3]]).rstrip())
