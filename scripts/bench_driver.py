"""Benchmark ``splice driver`` against ``git merge-file`` on a seeded sample of real conflicts.

Each file is merged by a fresh process, as git does it (start-up included). Reports median and
p95 wall time per file and peak RSS per process, as a Markdown table. Peak RSS comes from
``/usr/bin/time -f %M`` (a small parent, so a fork of this big process is not counted; its
exec adds about a millisecond to both commands), or ``os.wait4`` where it is missing.

Python's bytecode cache is used as after ``pip install`` (compiled once, in a temporary
``PYTHONPYCACHEPREFIX``, even where ``PYTHONDONTWRITEBYTECODE`` is set);
``--no-bytecode-cache`` measures without it.

    python scripts/bench_driver.py --n 200 --seed 0
"""

from __future__ import annotations

import argparse
import glob
import json
import lzma
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = str(Path(__file__).resolve().parents[1].parent / "shared" / "data" / "merges")
#: Records read at most per shard (the sample is drawn among them).
PER_SHARD_WINDOW = 300


def sample_records(data_dir: str, n: int, seed: int) -> list[dict]:
    """``n`` records drawn with ``seed``: shards in random order, a few records from each."""
    rng = random.Random(seed)
    shards = sorted(glob.glob(os.path.join(data_dir, "*.jsonl.xz")))
    if not shards:
        raise SystemExit(f"no shards in {data_dir}")
    rng.shuffle(shards)
    per_shard = max(1, math.ceil(n / min(len(shards), max(1, n // 4))))
    out: list[dict] = []
    for shard in shards:
        window: list[dict] = []
        with lzma.open(shard, "rt", encoding="utf-8") as fh:
            for line in fh:
                rec = json.loads(line)
                window.append({k: rec[k] for k in ("id", "path", "base", "ours", "theirs")})
                if len(window) >= PER_SHARD_WINDOW:
                    break
        out += rng.sample(window, min(per_shard, len(window), n - len(out)))
        if len(out) >= n:
            break
    return out


TIME = "/usr/bin/time"


def timed(cmd: list[str], cwd: str, env: dict[str, str]) -> tuple[float, int, int, str]:
    """Wall seconds, exit status, peak RSS (KiB) and stderr of one process."""
    rss_file = os.path.join(cwd, "rss")
    use_time = os.access(TIME, os.X_OK)
    if use_time:
        cmd = [TIME, "-f", "%M", "-o", rss_file, *cmd]
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    rss = usage.ru_maxrss
    if use_time:
        lines = Path(rss_file).read_text().split()
        rss = int(lines[-1]) if lines and lines[-1].isdigit() else rss
    return wall, os.waitstatus_to_exitcode(status), rss, err


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[k]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100, help="files to merge")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", default=DATA)
    ap.add_argument("--splice", default=None, help="the splice executable")
    ap.add_argument("--driver-args", default="", help="extra options for `splice driver`")
    ap.add_argument("--no-bytecode-cache", action="store_true", help="compile on every start")
    args = ap.parse_args()

    splice = args.splice or shutil.which("splice") or str(Path(sys.executable).parent / "splice")
    records = sample_records(args.data_dir, args.n, args.seed)
    rows: dict[str, dict[str, list]] = {
        "splice driver": {"wall": [], "rss": []},
        "git merge-file": {"wall": [], "rss": []},
    }
    clean = resolved = hunks = fallbacks = 0
    with tempfile.TemporaryDirectory(prefix="splice-bench-") as tmp:
        env = dict(os.environ)
        if not args.no_bytecode_cache:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = os.path.join(tmp, "pycache")
        warm = [splice, "driver", "--help"]
        subprocess.run(warm, env=env, capture_output=True, check=False)
        for i, rec in enumerate(records):
            o, a, b = (os.path.join(tmp, f"{i}.{s}") for s in ("o", "a", "b"))
            for name, key in ((o, "base"), (a, "ours"), (b, "theirs")):
                Path(name).write_bytes(rec[key].encode("utf-8"))
            git_cmd = ["git", "merge-file", "-p", a, o, b]
            if i == 0:  # warm the bytecode cache and the page cache
                timed([splice, "driver", o, a, b, "7", rec["path"]], tmp, env)
                Path(a).write_bytes(rec["ours"].encode("utf-8"))
            wall, _, rss, _ = timed(git_cmd, tmp, env)
            rows["git merge-file"]["wall"].append(wall)
            rows["git merge-file"]["rss"].append(rss)
            drv_cmd = [splice, "driver", o, a, b, "7", rec["path"], *args.driver_args.split()]
            wall, code, rss, err = timed(drv_cmd, tmp, env)
            rows["splice driver"]["wall"].append(wall)
            rows["splice driver"]["rss"].append(rss)
            clean += code == 0
            m = re.search(r"(\d+) of (\d+) conflicts? resolved", err)
            if m:
                resolved += int(m.group(1))
                hunks += int(m.group(2))
            elif "left to git" in err:
                fallbacks += 1

    cache = "cold" if args.no_bytecode_cache else "warm"
    print(f"{len(records)} files (seed {args.seed}); process start-up included; {cache} bytecode\n")
    print("| command | median ms | p95 ms | max ms | median peak RSS MiB | max peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        wall = [w * 1000 for w in row["wall"]]
        rss = [r / 1024 for r in row["rss"]]
        print(
            f"| {name} | {statistics.median(wall):.1f} | {percentile(wall, 0.95):.1f} | "
            f"{max(wall):.1f} | {statistics.median(rss):.1f} | {max(rss):.1f} |"
        )
    print(
        f"\ndriver: {clean} files clean, {resolved} of {hunks} hunks resolved, "
        f"{fallbacks} fell back to git"
    )


if __name__ == "__main__":
    main()
