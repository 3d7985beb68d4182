"""Measure how often ``splice.resolver.linemerge.merge_lines`` agrees with ``git merge-file``.

For every record of the merge data set (``/work/shared/data/merges/*.jsonl.xz``) both merges are
run and compared structurally: git's output is parsed at its conflict markers (fixed labels and a
marker size that no line of the inputs could be confused with) into stable text and hunks, and
compared with our chunks. The only rendering detail left out is the newline git appends to a
hunk side whose last line has none (the marker renderer's job). A file agrees when its clean
text and every hunk are identical; hunk agreement counts git's hunks that we reproduce exactly.

    python scripts/git_agreement.py --style diff3 [--limit N] [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import lzma
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from multiprocessing import Pool
from pathlib import Path

from splice.resolver.chunks import Chunk, Conflict, join, split_lines
from splice.resolver.linemerge import merge_lines

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges"
LABELS = ("OURS", "BASE", "THEIRS")

# A parsed merge: ("S", text) or ("C", base text or None, ours text, theirs text).
Segment = tuple


def marker_size(*texts: str) -> int:
    """A conflict marker size for which no line of ``texts`` can be mistaken for a marker."""
    taken = set()
    for text in texts:
        for line in text.splitlines():
            head = line.split(" ", 1)[0]
            if head and head[0] in "<|=>" and head == head[0] * len(head):
                taken.add(len(head))
    size = 53
    while size in taken:
        size += 1
    return size


def git_merge(base: str, ours: str, theirs: str, style: str) -> tuple[str, int, int]:
    """``git merge-file -p`` on the three texts (style merge, diff3 or zdiff3): the output,
    the number of conflicts (the exit status, at most 127) and the marker size used."""
    flags = {"merge": [], "diff3": ["--diff3"], "zdiff3": ["--zdiff3"]}[style]
    size = marker_size(base, ours, theirs)
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for name, text in (("ours", ours), ("base", base), ("theirs", theirs)):
            path = Path(tmp, name)
            path.write_bytes(text.encode())
            paths.append(str(path))
        cmd = ["git", "merge-file", "-p", "-q", f"--marker-size={size}", *flags]
        for label in LABELS:
            cmd += ["-L", label]
        proc = subprocess.run(cmd + paths, capture_output=True, env=env, cwd=tmp)
    if proc.returncode < 0 or proc.returncode > 127:
        raise RuntimeError(f"git merge-file failed: {proc.stderr.decode()}")
    return proc.stdout.decode(), proc.returncode, size


def parse_git(output: str, n_conflicts: int, size: int) -> list[Segment]:
    """Split git's output (made with marker ``size``) into stable text and conflict hunks at
    the markers; check that the parse found ``n_conflicts`` (git's exit status) hunks."""
    start, mid, sep, end = (
        "<" * size + " OURS",
        "|" * size + " BASE",
        "=" * size,
        ">" * size + " THEIRS",
    )
    segs: list[Segment] = []
    stable: list[str] = []
    parts: list[list[str]] = []
    state = "S"
    for line in split_lines(output):
        bare = line.rstrip("\n").removesuffix("\r")
        if state == "S":
            if bare == start:
                if stable:
                    segs.append(("S", "".join(stable)))
                stable, parts, state = [], [[]], "O"
            else:
                stable.append(line)
        elif state == "O" and bare == mid:
            parts.append([])
            state = "B"
        elif state in "OB" and bare == sep:
            parts.append([])
            state = "T"
        elif state == "T" and bare == end:
            texts = ["".join(p) for p in parts]
            if len(texts) == 3:
                segs.append(("C", texts[1], texts[0], texts[2]))
            else:
                segs.append(("C", None, texts[0], texts[1]))
            state = "S"
        else:
            parts[-1].append(line)
    if state != "S":
        raise ValueError("unterminated conflict in git output")
    if stable:
        segs.append(("S", "".join(stable)))
    found = sum(s[0] == "C" for s in segs)
    if min(found, 127) != n_conflicts:
        raise ValueError(f"parsed {found} conflicts, git reported {n_conflicts}")
    return segs


def segments(chunks: Sequence[Chunk], style: str) -> list[Segment]:
    """Our chunks in the parsed form (stable text merged, base dropped for style merge)."""
    segs: list[Segment] = []
    for c in chunks:
        if isinstance(c, Conflict):
            base = None if style == "merge" else join(c.base)
            segs.append(("C", base, join(c.ours), join(c.theirs)))
        elif c.units:
            if segs and segs[-1][0] == "S":
                segs[-1] = ("S", segs[-1][1] + join(c.units))
            else:
                segs.append(("S", join(c.units)))
    return segs


def _side_equal(ours: str | None, git: str | None) -> bool:
    """Equal, allowing the line ending git adds after a side's unterminated last line."""
    if ours == git:
        return True
    if ours is None or git is None or not ours or ours.endswith("\n"):
        return False
    return git in (ours + "\n", ours + "\r\n")


def segment_equal(a: Segment, g: Segment) -> bool:
    """Whether our segment ``a`` equals git's ``g``."""
    if a[0] != g[0]:
        return False
    if a[0] == "S":
        return a[1] == g[1]
    return all(_side_equal(x, y) for x, y in zip(a[1:], g[1:], strict=True))


def compare(base: str, ours: str, theirs: str, style: str) -> dict:
    """Run both merges on one file and compare them."""
    git = parse_git(*git_merge(base, ours, theirs, style))
    t0 = time.perf_counter()
    chunks = merge_lines(split_lines(base), split_lines(ours), split_lines(theirs), style)
    elapsed = time.perf_counter() - t0
    mine = segments(chunks, style)
    git_hunks = [s for s in git if s[0] == "C"]
    my_hunks = [s for s in mine if s[0] == "C"]
    same = len(git) == len(mine) and all(map(segment_equal, mine, git))
    matched = 0
    unused = list(my_hunks)
    for g in git_hunks:
        for k, m in enumerate(unused):
            if segment_equal(m, g):
                matched += 1
                del unused[k]
                break
    return {
        "same": same,
        "git_hunks": len(git_hunks),
        "our_hunks": len(my_hunks),
        "matched_hunks": matched,
        "seconds": elapsed,
        "lines": len(split_lines(base)) + len(split_lines(ours)) + len(split_lines(theirs)),
    }


def records(limit: int | None = None) -> Iterator[dict]:
    """All records of the data set, shard by shard in name order."""
    n = 0
    for shard in sorted(DATA.glob("*.jsonl.xz")):
        with lzma.open(shard, "rt", encoding="utf-8") as fh:
            for line in fh:
                if limit is not None and n >= limit:
                    return
                yield json.loads(line)
                n += 1


def _job(args: tuple[dict, str]) -> tuple[str, dict]:
    rec, style = args
    try:
        return rec["id"], compare(rec["base"], rec["ours"], rec["theirs"], style)
    except Exception as exc:  # report, never stop the run
        return rec["id"], {"error": repr(exc)}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--style", choices=("merge", "diff3", "zdiff3"), default="diff3")
    ap.add_argument("--limit", type=int, default=None, help="only the first N records")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--show", type=int, default=10, help="how many disagreeing ids to list")
    args = ap.parse_args(argv)

    t0 = time.time()
    totals: Counter[str] = Counter()
    bad: list[str] = []
    errors: list[str] = []
    times: list[tuple[float, int]] = []
    jobs = ((rec, args.style) for rec in records(args.limit))
    pool = Pool(args.workers) if args.workers > 1 else None
    results = pool.imap(_job, jobs, chunksize=8) if pool else map(_job, jobs)
    for rid, res in results:
        totals["files"] += 1
        if "error" in res:
            errors.append(f"{rid}: {res['error']}")
            continue
        totals["same"] += res["same"]
        totals["git_hunks"] += res["git_hunks"]
        totals["our_hunks"] += res["our_hunks"]
        totals["matched_hunks"] += res["matched_hunks"]
        times.append((res["seconds"], res["lines"]))
        if not res["same"]:
            bad.append(rid)
        if totals["files"] % 1000 == 0:
            print(f"... {totals['files']} files, {totals['same']} identical", flush=True)
    if pool:
        pool.close()

    files = totals["files"]
    print(f"style: {args.style}   files: {files}   wall time: {time.time() - t0:.0f} s")
    if files:
        print(f"identical files: {totals['same']} / {files} = {100 * totals['same'] / files:.3f}%")
    if totals["git_hunks"]:
        print(
            f"git hunks reproduced exactly: {totals['matched_hunks']} / {totals['git_hunks']}"
            f" = {100 * totals['matched_hunks'] / totals['git_hunks']:.3f}%"
            f"   (our hunks: {totals['our_hunks']})"
        )
    if times:
        secs = sorted(t for t, _ in times)
        print(
            f"merge_lines time per file: median {1000 * secs[len(secs) // 2]:.1f} ms,"
            f" p99 {1000 * secs[int(len(secs) * 0.99)]:.1f} ms, max {1000 * secs[-1]:.0f} ms"
        )
    print(f"errors: {len(errors)}")
    for e in errors[: args.show]:
        print("  " + e)
    print(f"disagreeing files: {len(bad)}")
    for rid in bad[: args.show]:
        print("  " + rid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
