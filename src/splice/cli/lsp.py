"""``splice lsp``: start the Splice language server (see :mod:`splice.lsp`)."""

from __future__ import annotations

import click


@click.command("lsp")
@click.option("--stdio", is_flag=True, help="Talk over stdin/stdout (the default and only mode).")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False),
    help="Write the server's debug log to this file (stderr gets warnings only).",
)
def lsp_command(stdio: bool, log_file: str | None) -> None:
    """Serve the language server over stdio (diagnostics, actions and lenses on conflicts)."""
    import logging

    if log_file:
        logging.basicConfig(filename=log_file, level=logging.DEBUG)
    from splice.lsp.server import main

    main()
