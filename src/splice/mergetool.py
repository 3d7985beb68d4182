"""``git mergetool --tool=splice``: merge $BASE $LOCAL $REMOTE into $MERGED like the driver does.

Configured with ``mergetool.splice.cmd = /abs/splice mergetool -- "$BASE" "$LOCAL" "$REMOTE"
"$MERGED"`` (git's paths after ``--``) and ``trustExitCode = true``: exit 0 only when $MERGED is
left without conflicts. git restores its own version of $MERGED when the tool fails, so a partial
resolution is only kept on success. The conflict style and marker size come from the repository,
the labels from the markers git already wrote into $MERGED.
"""

from __future__ import annotations

from splice.config import DEFAULT_RESOLVER, DEFAULT_TIMEOUT, marker_size_for
from splice.driver import MergeRequest, run


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
    )
    return 0 if run(req, merged) == 0 else 1
