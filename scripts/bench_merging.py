"""Benchmark ``splice merge-weights`` against mergekit: wall time and peak RSS.

Builds a base and two fine-tunes of a Llama-shaped model (random safetensors, no transformers
needed; ~322M parameters by default), then for each method and dtype runs both tools on the same
YAML, alternating (splice, mergekit, splice, ...; ``--repeat`` rounds, medians reported), page
cache warmed by a first read. mergekit runs from its own virtual environment (see
``scripts/compare_mergekit.py``). The load average is recorded around every row (the machine
may be shared); ``--check`` compares the two outputs tensor by tensor (bit-identical or not).

Usage::

    python scripts/bench_merging.py [--layers 20] [--methods linear,ties,dare_ties,slerp]
        [--dtypes float32,bfloat16] [--repeat 1] [--check] [--venv /tmp/mk-venv]
        [--work /tmp/splice-bench] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml
from splice.models.merging.io import write_tensors


def build(root: Path, layers: int, dtype: torch.dtype, hidden: int = 1024) -> list[Path]:
    """Base + two fine-tunes of a Llama-shaped model with ``layers`` layers."""
    name = str(dtype).removeprefix("torch.")
    paths = [root / f"{name}-{tag}" for tag in ("base", "ft0", "ft1")]
    if all((p / "config.json").exists() for p in paths):
        return paths
    inter, vocab = int(hidden * 2.75), 32000
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,),
              "lm_head.weight": (vocab, hidden)}  # fmt: skip
    for i in range(layers):
        p = f"model.layers.{i}."
        for proj in ("q", "k", "v", "o"):
            shapes[f"{p}self_attn.{proj}_proj.weight"] = (hidden, hidden)
        shapes[f"{p}mlp.gate_proj.weight"] = (inter, hidden)
        shapes[f"{p}mlp.up_proj.weight"] = (inter, hidden)
        shapes[f"{p}mlp.down_proj.weight"] = (hidden, inter)
        shapes[f"{p}input_layernorm.weight"] = (hidden,)
        shapes[f"{p}post_attention_layernorm.weight"] = (hidden,)
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": hidden, "intermediate_size": inter, "num_hidden_layers": layers,
              "num_attention_heads": 16, "num_key_value_heads": 16, "vocab_size": vocab,
              "max_position_embeddings": 2048, "rms_norm_eps": 1e-5,
              "tie_word_embeddings": False, "dtype": name}  # fmt: skip
    for k, path in enumerate(paths):
        gen = torch.Generator().manual_seed(0)
        noise = torch.Generator().manual_seed(k)

        def tensors(gen: torch.Generator = gen, noise: torch.Generator = noise, k: int = k):
            for key, shape in shapes.items():
                t = torch.randn(shape, generator=gen) * 0.02
                if k:
                    t += torch.randn(shape, generator=noise) * 0.002
                yield key, t.to(dtype)

        write_tensors(path, tensors(), shard_size=2 * 10**9)
        (path / "config.json").write_text(json.dumps(config, indent=2))
    return paths


_PEAK = (
    "import resource, subprocess, sys; "
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (GiB) of a command.

    A small Python wrapper starts the command and reports its children's ``ru_maxrss``: a child
    forked from this (large) process would inherit its resident set in that figure.
    """
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/env", "-u", "PYTHONPATH", sys.executable, "-S", "-c", _PEAK, *cmd],
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {proc.stderr[-2000:]}")
    return wall, int(proc.stdout.split()[-1]) / 2**20


def compare_outputs(a: Path, b: Path) -> str:
    """``identical`` or how the two merged models differ (tensors, entries, max |diff|)."""
    from safetensors import safe_open

    def index(root: Path) -> dict[str, Path]:
        out = {}
        for file in sorted(root.glob("*.safetensors")):
            with safe_open(str(file), "pt") as handle:
                out.update(dict.fromkeys(handle.keys(), file))
        return out

    ia, ib = index(a), index(b)
    if set(ia) != set(ib):
        return f"different tensor names ({len(set(ia) ^ set(ib))} differ)"
    tensors = entries = 0
    worst = 0.0
    for name in ia:
        with safe_open(str(ia[name]), "pt") as fa, safe_open(str(ib[name]), "pt") as fb:
            x, y = fa.get_tensor(name), fb.get_tensor(name)
        if x.dtype != y.dtype or x.shape != y.shape:
            return f"{name}: {x.dtype} {tuple(x.shape)} vs {y.dtype} {tuple(y.shape)}"
        bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[x.element_size()]
        differ = x.view(bits) != y.view(bits)
        count = int(differ.sum())
        if count:
            tensors += 1
            entries += count
            worst = max(worst, float((x.double() - y.double()).abs().max()))
    if not tensors:
        return "identical"
    return f"{entries} entries in {tensors} tensors differ, max |diff| {worst:.3g}"


def configs(paths: list[Path], dtype: str) -> dict[str, dict]:
    b, f0, f1 = (str(p) for p in paths)
    two = [{"model": f0, "parameters": {"weight": 0.6, "density": 0.5}},
           {"model": f1, "parameters": {"weight": 0.4, "density": 0.5}}]  # fmt: skip
    return {
        "linear": {"merge_method": "linear", "dtype": dtype, "models": [
            {"model": b, "parameters": {"weight": 0.2}}, *two]},
        "ties": {"merge_method": "ties", "base_model": b, "dtype": dtype, "models": two},
        "dare_ties": {"merge_method": "dare_ties", "base_model": b, "dtype": dtype,
                      "models": two},
        "slerp": {"merge_method": "slerp", "base_model": b, "dtype": dtype,
                  "parameters": {"t": 0.4}, "models": [{"model": b}, {"model": f0}]},
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--methods", default="linear,ties,dare_ties,slerp")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--venv", type=Path, default=Path("/tmp/mk-venv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/splice-bench"))
    parser.add_argument("--json", type=Path)
    parser.add_argument("--repeat", type=int, default=1, help="rounds per method (medians)")
    parser.add_argument("--check", action="store_true", help="compare the two outputs")
    args = parser.parse_args()
    mergekit = args.venv / "bin" / "mergekit-yaml"
    splice = [sys.executable, "-m", "splice", "merge-weights"]
    rows = []
    for dtype in args.dtypes.split(","):
        paths = build(args.work / "models", args.layers, getattr(torch, dtype))
        params = sum(
            t.numel() for t in __import__("safetensors.torch").torch.load_file(
                next(paths[0].glob("*.safetensors"))).values()
        )  # fmt: skip
        for path in paths:  # warm the page cache
            for file in path.glob("*.safetensors"):
                with open(file, "rb") as handle:
                    while handle.read(1 << 24):
                        pass
        for method in args.methods.split(","):
            cfg = args.work / f"{method}-{dtype}.yaml"
            cfg.write_text(yaml.safe_dump(configs(paths, dtype)[method]))
            outs = {"splice": args.work / "out-splice", "mergekit": args.work / "out-mergekit"}
            cmds = {
                "splice": [*splice, str(cfg), str(outs["splice"]), "--no-progress"],
                "mergekit": [str(mergekit), str(cfg), str(outs["mergekit"]), "--quiet",
                             "--random-seed", "0"],
            }  # fmt: skip
            times: dict[str, list[float]] = {"splice": [], "mergekit": []}
            peaks: dict[str, list[float]] = {"splice": [], "mergekit": []}
            load_before = os.getloadavg()
            for _ in range(args.repeat):
                for tool in ("splice", "mergekit"):
                    shutil.rmtree(outs[tool], ignore_errors=True)
                    wall, peak = run(cmds[tool])
                    times[tool].append(wall)
                    peaks[tool].append(peak)
                    print(f"{dtype} {method} {tool}: {wall:.1f}s {peak:.2f} GiB "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)  # fmt: skip
            load_after = os.getloadavg()
            check = compare_outputs(outs["splice"], outs["mergekit"]) if args.check else None
            if check is not None:
                print(f"{dtype} {method} outputs: {check}", flush=True)
            ts, tm = statistics.median(times["splice"]), statistics.median(times["mergekit"])
            rs, rm = statistics.median(peaks["splice"]), statistics.median(peaks["mergekit"])
            rows.append(
                {
                    "dtype": dtype,
                    "method": method,
                    "params": params,
                    "splice_s": ts,
                    "splice_gib": rs,
                    "mergekit_s": tm,
                    "mergekit_gib": rm,
                    "speedup": tm / ts,
                    "rss_ratio": rs / rm,
                    "splice_runs_s": times["splice"],
                    "mergekit_runs_s": times["mergekit"],
                    "load_before": load_before,
                    "load_after": load_after,
                    "check": check,
                }
            )
    print(
        "| dtype | method | Splice s | mergekit s | speed-up | Splice peak RSS GiB "
        "| mergekit peak RSS GiB | RSS ratio | load (1 min) | outputs |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dtype']} | {r['method']} | {r['splice_s']:.1f} | {r['mergekit_s']:.1f} | "
              f"{r['speedup']:.2f}x | {r['splice_gib']:.2f} | {r['mergekit_gib']:.2f} | "
              f"{r['rss_ratio']:.2f} | {r['load_before'][0]:.1f}-{r['load_after'][0]:.1f} | "
              f"{r['check'] or '-'} |")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
