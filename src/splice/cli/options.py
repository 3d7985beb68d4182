"""Options and checks shared by the git-facing commands (cheap to import)."""

from __future__ import annotations

import math

import click

from splice.cli.config import DEFAULT_MAX_SIZE, DEFAULT_RESOLVER, DEFAULT_TIMEOUT

STYLES = click.Choice(["merge", "diff3", "zdiff3"], case_sensitive=False)


def seconds(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A time limit: a finite number of seconds above 0 (0, inf and nan would disable it)."""
    if not math.isfinite(value) or value <= 0:
        raise click.BadParameter(f"{value:g} is not a positive number of seconds")
    return value


def positive(ctx: click.Context, param: click.Parameter, value: int) -> int:
    if value <= 0:
        raise click.BadParameter(f"{value} is not a positive number of bytes")
    return value


def confidence(value: float | None) -> float | None:
    if value is not None and not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be between 0 and 1", param_hint="--min-confidence")
    return value


def resolver_option(f):
    return click.option("--resolver", "resolver", default=DEFAULT_RESOLVER, show_default=True)(f)


def timeout_option(f):
    return click.option(
        "--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True, callback=seconds
    )(f)


def max_size_option(f):
    return click.option(
        "--max-size", type=int, default=DEFAULT_MAX_SIZE, show_default=True, callback=positive
    )(f)


def min_confidence_option(f):
    return click.option(
        "--min-confidence", type=float, help="Apply only resolutions at least this sure."
    )(f)


def allow_discard_option(f):
    """``--allow-discard``: answers that drop a side's edits are judged like the rest."""
    return click.option(
        "--allow-discard",
        is_flag=True,
        help="Also apply answers that drop one side's edits (git config splice.allowDiscard).",
    )(f)
