"""``git mergetool --tool=splice``: merge $BASE $LOCAL $REMOTE into $MERGED like the driver does.

Configured with ``mergetool.splice.cmd = /abs/splice mergetool -- "$BASE" "$LOCAL" "$REMOTE"
"$MERGED"`` (git's paths after ``--``) and ``trustExitCode = true``: exit 0 only when $MERGED is
left without conflicts. git restores its own version of $MERGED when the tool fails, so a partial
resolution is only kept on success. The conflict style and marker size come from the repository,
the labels from the markers git already wrote into $MERGED.
"""

from __future__ import annotations

import sys

import click

from splice.cli.config import DEFAULT_RESOLVER, DEFAULT_TIMEOUT, marker_size_for
from splice.cli.driver import MergeRequest, run
from splice.cli.options import (
    allow_discard_option,
    confidence,
    min_confidence_option,
    resolver_option,
    timeout_option,
)


def labels_from_markers(path: str, marker_size: int) -> tuple[str | None, str | None, str | None]:
    """The ours, base and theirs labels of the first conflict in ``path`` (None where absent)."""
    found: dict[str, str | None] = {}
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                head = line[:marker_size]
                if len(set(head)) != 1 or head[0] not in "<|>" or len(head) < marker_size:
                    continue
                rest = line[marker_size:].rstrip("\r\n")
                if rest and not rest.startswith(" "):
                    continue
                found.setdefault(head[0], rest[1:] or None)
                if head[0] == ">":
                    break
    except OSError:
        pass
    return found.get("<"), found.get("|"), found.get(">")


def run_mergetool(
    base: str,
    local: str,
    remote: str,
    merged: str,
    *,
    resolver: str = DEFAULT_RESOLVER,
    timeout: float = DEFAULT_TIMEOUT,
    min_confidence: float | None = None,
    allow_discard: bool = False,
) -> int:
    """Merge into ``merged``; the exit status git's trustExitCode expects (0 only when clean)."""
    marker_size = marker_size_for(merged)
    req = MergeRequest(
        base=base,
        ours=local,
        theirs=remote,
        path=merged,
        marker_size=marker_size,
        labels=labels_from_markers(merged, marker_size),
        resolver=resolver,
        timeout=timeout,
        min_confidence=min_confidence,
        allow_discard=allow_discard,
    )
    return 0 if run(req, merged) == 0 else 1


# --------------------------------------------------------------------------- the command


@click.command("mergetool")
@click.argument("base", metavar="BASE")
@click.argument("local", metavar="LOCAL")
@click.argument("remote", metavar="REMOTE")
@click.argument("merged", metavar="MERGED")
@resolver_option
@timeout_option
@min_confidence_option
@allow_discard_option
def mergetool_command(
    base: str,
    local: str,
    remote: str,
    merged: str,
    resolver: str,
    timeout: float,
    min_confidence: float | None,
    allow_discard: bool,
) -> None:
    """git mergetool: write the merge of BASE LOCAL REMOTE to MERGED (exit 0 only when clean).

    Installed as ``splice mergetool -- "$BASE" "$LOCAL" "$REMOTE" "$MERGED"``.
    """
    sys.exit(
        run_mergetool(
            base,
            local,
            remote,
            merged,
            resolver=resolver,
            timeout=timeout,
            min_confidence=confidence(min_confidence),
            allow_discard=allow_discard,
        )
    )
