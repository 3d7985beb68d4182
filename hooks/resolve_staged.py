"""``splice-resolve``: resolve the conflicts Splice is sure of in the given (staged) files.

Files with conflict markers are resolved in place by the one pipeline
(:func:`splice.resolver.pipeline.merge_marked`, as ``splice resolve`` does); conflicts the decision
rule does not apply keep their markers. Exit 1 when a file was changed (stage it again) or
conflicts remain, as pre-commit's fixers do; 0 when there was nothing to do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def resolve_files(
    paths: Sequence[str],
    *,
    resolver: str = "auto",
    min_confidence: float | None = None,
    allow_discard: bool = False,
) -> int:
    from splice.models.serving import load_resolver
    from splice.resolver.markers import markers_left
    from splice.resolver.pipeline import merge_marked

    from splice.data.files import write_atomic
    from splice.data.git import index_stages

    engine = None
    status = 0
    for path in paths:
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
            text = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        if not markers_left(text):
            continue
        if engine is None:
            engine = load_resolver(resolver)
        outcome = merge_marked(
            text,
            engine,
            path=path,
            min_confidence=min_confidence,
            allow_discard=allow_discard,
            stages=index_stages(path),
        )
        if outcome.hunks:
            print(f"{path}: {outcome.summary()}")
        for report in outcome.hunks:
            if report.answer is None:
                print(f"{path}: conflict {report.index + 1}: left for a human: {report.outcome}")
        if outcome.resolved:
            write_atomic(path, outcome.text.encode("utf-8"))
        stray = markers_left(outcome.text, text).stray
        for line, marker in stray:
            print(f"{path}:{line}: malformed conflict marker left: {marker!r}")
        if outcome.resolved or not outcome.clean or stray:
            status = 1
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="splice-resolve", description=__doc__)
    parser.add_argument("files", nargs="*")
    parser.add_argument("--resolver", default="auto")
    parser.add_argument("--min-confidence", type=float)
    parser.add_argument("--allow-discard", action="store_true")
    args = parser.parse_args(argv)
    return resolve_files(
        args.files,
        resolver=args.resolver,
        min_confidence=args.min_confidence,
        allow_discard=args.allow_discard,
    )


if __name__ == "__main__":
    sys.exit(main())
